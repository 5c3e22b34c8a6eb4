"""``python -m training.stage1``: Stage I training from a config file and/or flags.

Launch with ``accelerate launch`` (one GPU, several, several machines; see
``training/configs/``) or ``torchrun``; a plain ``python -m`` runs one process.
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
    except AuthFaceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if result.unet_dir is not None:
        print(f"step {result.step}: exported {result.unet_dir} and {result.single_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
