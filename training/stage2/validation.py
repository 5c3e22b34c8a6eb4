"""Validation during Stage II: restore held-out degraded faces with the standalone pipeline.

The pipeline (:class:`authface_core.pipeline.AuthFacePipeline`) is built from the models already
in memory: the frozen UNet, VAE and text encoders and the ControlNet being trained, so nothing is
reloaded from disk. It samples as the release does (DDPM, CFG with the release prompts, colour
fix) unless told otherwise, so the figures are those a user of the current weights would get.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from authface_core.pipeline import AuthFacePipeline
from authface_core.pipeline.loading import ReleaseModels
from training.sdxl_parts import SDXLParts

from .metrics import psnr, ssim

GRID_GAP = 4  # px of white between grid cells


@dataclass
class ValidationResult:
    """``restored`` (n, 3, R, R) float32 in [0, 1]; ``psnr``/``ssim`` (n,) float64 against the
    HQ faces; ``grid`` (H, W, 3) uint8: one row per face, columns LQ | restored | HQ."""

    restored: Tensor
    psnr: Tensor
    ssim: Tensor
    grid: np.ndarray


def validation_pipeline(parts: SDXLParts, controlnet: Any, device: torch.device | str) -> AuthFacePipeline:
    """A restore pipeline over the in-memory models (the text encoders must still be loaded)."""
    if parts.text_encoder is None or parts.text_encoder_2 is None:
        raise ValueError("validation needs the text encoders; they were released after encoding the empty prompt")
    models = ReleaseModels(unet=parts.unet, controlnet=controlnet, vae=parts.vae, text_encoder=parts.text_encoder,
                           text_encoder_2=parts.text_encoder_2, tokenizer=parts.tokenizer,
                           tokenizer_2=parts.tokenizer_2)
    return AuthFacePipeline(models, parts.schedule, device)


def image_grid(columns: list[Tensor]) -> np.ndarray:
    """Columns of equally sized (n, 3, H, W) [0, 1] tensors side by side, image ``i`` of every
    column in row ``i``, as (H', W', 3) uint8."""
    count, _, height, width = columns[0].shape
    grid = np.full((count * height + (count - 1) * GRID_GAP, len(columns) * width + (len(columns) - 1) * GRID_GAP, 3),
                   255, np.uint8)
    for c, images in enumerate(columns):
        cells = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for r in range(count):
            top, left = r * (height + GRID_GAP), c * (width + GRID_GAP)
            grid[top:top + height, left:left + width] = cells[r]
    return grid


def validate(pipeline: AuthFacePipeline, hq: Tensor, lq: Tensor, steps: int, cfg: float, seed: int,
             batch_size: int) -> ValidationResult:
    """Restore ``lq`` (n, 3, R, R) in [0, 1] and score it against ``hq``; the sampling noise comes
    from ``seed`` only, so successive validations differ by the weights alone."""
    restored = pipeline.restore(lq, steps=steps, cfg=cfg, seed=seed, batch_size=batch_size).cpu()
    hq, lq = hq.cpu(), lq.cpu()
    return ValidationResult(restored=restored, psnr=psnr(restored, hq), ssim=ssim(restored, hq),
                            grid=image_grid([lq, restored, hq]))
