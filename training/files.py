"""Writing training outputs so that a file is whole or absent, and exported tensors."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import torch


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Create ``path`` through ``write(temporary path)``, fsync it, then rename it into place: a
    kill at any moment leaves the old file (or none), never half of the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(temp)
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)


def link_or_copy(source: Path, target: Path) -> Path:
    """``target`` as the same file as ``source``: a hard link where the file system allows one
    (no second copy of a multi-GB file), else a copy; replaced atomically. Returns ``target``."""
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        os.link(source, temp)
    except OSError:
        shutil.copyfile(source, temp)
    os.replace(temp, target)
    return target


def cast_state(state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A state dict ready to save: floating-point tensors cast to ``dtype``, all detached,
    contiguous and on the CPU."""
    return {key: (value.to(dtype) if value.is_floating_point() else value).detach().to("cpu").contiguous()
            for key, value in state.items()}
