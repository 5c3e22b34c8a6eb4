"""Exported tensors and hard-linked copies of training outputs (atomic writes: authface_core.files)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from authface_core.files import temp_path


def link_or_copy(source: Path, target: Path) -> Path:
    """``target`` as the same file as ``source``: a hard link where the file system allows one
    (no second copy of a multi-GB file), else a copy; replaced atomically. Returns ``target``."""
    temp = temp_path(target)
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
