"""The device flag `make run` starts ComfyUI with: its GPU when PyTorch finds one, else ``--cpu``.

Run with the Python that runs ComfyUI: ``python tools/comfyui_device.py [COMFYUI_ARGS...]``.
Prints the flags to add to ``main.py`` (``--cpu`` or nothing) on stdout and one line saying which
device was chosen, and why, on stderr (the `make run` log). ``--cpu`` among the given arguments
(``COMFYUI_ARGS=--cpu make run``) means the user chose CPU already: nothing is added.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def choose_device(args: Sequence[str], cuda_device: str | None, mps: bool) -> tuple[list[str], str]:
    """``(flags to add, what was chosen)`` for ComfyUI started with ``args``.

    ``cuda_device`` is the name of the first CUDA (or ROCm) device PyTorch finds, None without one;
    ``mps`` tells whether Apple's Metal backend is available. ComfyUI itself uses such a device
    unless started with ``--cpu``, so ``--cpu`` is added only when there is none."""
    if "--cpu" in args:
        return [], "CPU (asked for with --cpu)"
    if cuda_device is not None:
        return [], f"GPU {cuda_device} (CUDA)"
    if mps:
        return [], "Apple GPU (MPS)"
    return ["--cpu"], "CPU (PyTorch finds no CUDA or MPS device)"


def _found_devices() -> tuple[str | None, bool]:
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return cuda, mps


def main(argv: Sequence[str]) -> int:
    flags, chosen = choose_device(argv, *_found_devices())
    print(f"AuthFace: starting ComfyUI on {chosen}", file=sys.stderr)
    print(" ".join(flags))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
