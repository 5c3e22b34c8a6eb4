"""Glue between the core's plain arrays and ComfyUI's tensors, progress bar and interrupt."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

import comfy.model_management
import comfy.utils
import numpy as np
import torch

T = TypeVar("T")


def images_to_numpy(images: torch.Tensor) -> list[np.ndarray]:
    """ComfyUI IMAGE (B, H, W, C) float in [0, 1] -> list of (H, W, C) float32 arrays."""
    if images.ndim != 4:
        raise ValueError(f"expected an IMAGE batch of shape (B, H, W, C), got {tuple(images.shape)}")
    return [img for img in images.detach().float().cpu().numpy()]


def numpy_to_images(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """Non-empty list of (H, W, C) float arrays of one size -> ComfyUI IMAGE (B, H, W, C)."""
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays).astype(np.float32)))


def placeholder_images(size: int) -> torch.Tensor:
    """One mid-grey ``size`` x ``size`` IMAGE standing in for the crops of a batch without faces.

    ComfyUI's image nodes (previews, VAE encode, samplers) fail on an empty batch, and a branch
    cannot be skipped without also skipping the photo's save; the FaceSet (no aligned faces) tells
    Paste Faces to ignore it."""
    return torch.full((1, size, size, 3), 0.5, dtype=torch.float32)


def with_progress(items: Sequence[T]) -> Iterator[T]:
    """Yield ``items`` while advancing ComfyUI's progress bar and honouring its interrupt."""
    bar = comfy.utils.ProgressBar(max(len(items), 1))
    for item in items:
        comfy.model_management.throw_exception_if_processing_interrupted()
        yield item
        bar.update(1)
