"""``python -m training.stage2``: Stage II training from flags and/or a ``--config`` file.

Launch with ``accelerate launch --config_file training/configs/stage2_<setup>.yaml -m
training.stage2 ...`` or ``torchrun --nproc_per_node N -m training.stage2 ...``; a plain
``python -m`` runs one process.
"""

from __future__ import annotations

import sys

from authface_core.errors import AuthFaceError

from .config import parse_config


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from .loop import train

    try:
        result = train(config)
    except (AuthFaceError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if result.export is not None:
        print(f"step {result.step}: exported {result.export.folder} and {result.export.single_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
