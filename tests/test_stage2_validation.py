"""Validation figures of Stage II: PSNR and SSIM against scikit-image's reference implementations
on a real photo and its GFPGAN-style degradations, and the LQ | restored | HQ grid layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.data import astronaut
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from authface_core.degradation import DegradationConfig, degrade
from training.stage2.metrics import psnr, ssim
from training.stage2.validation import GRID_GAP, image_grid


@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    """Astronaut at 128 px and three degradations of it, (4, 128, 128, 3) float32 each."""
    clean = astronaut()[::4, ::4].astype(np.float32) / 255.0
    degraded = [degrade(clean, DegradationConfig(), np.random.default_rng(seed)) for seed in range(3)]
    return np.stack([clean] * 4), np.stack([clean, *degraded])


def to_nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def test_psnr_matches_scikit_image(pairs: tuple[np.ndarray, np.ndarray]) -> None:
    clean, degraded = pairs
    ours = psnr(to_nchw(degraded), to_nchw(clean))
    assert ours[0] == float("inf")
    for i in range(1, 4):
        reference = peak_signal_noise_ratio(clean[i].astype(np.float64), degraded[i].astype(np.float64), data_range=1.0)
        assert float(ours[i]) == pytest.approx(reference, abs=1e-6)
    assert len(set(ours[1:].tolist())) == 3


def test_ssim_matches_scikit_image(pairs: tuple[np.ndarray, np.ndarray]) -> None:
    """Wang et al.'s settings as scikit-image spells them: Gaussian 11x11 window, sigma 1.5,
    population statistics, the mean over the window positions inside the image."""
    clean, degraded = pairs
    ours = ssim(to_nchw(degraded), to_nchw(clean))
    assert float(ours[0]) == pytest.approx(1.0, abs=1e-12)
    for i in range(1, 4):
        reference = structural_similarity(clean[i].astype(np.float64), degraded[i].astype(np.float64), data_range=1.0,
                                          channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False)
        assert float(ours[i]) == pytest.approx(reference, abs=1e-4)
        assert float(ours[i]) < 0.99


def test_metrics_refuse_mismatched_or_tiny_images() -> None:
    with pytest.raises(ValueError, match="one shape"):
        psnr(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_grid_puts_each_face_in_a_row_of_lq_restored_hq() -> None:
    columns = [torch.full((2, 3, 8, 8), value) for value in (0.0, 0.5, 1.0)]
    columns[1][1] = 0.25
    grid = image_grid(columns)
    assert grid.shape == (2 * 8 + GRID_GAP, 3 * 8 + 2 * GRID_GAP, 3) and grid.dtype == np.uint8
    step = 8 + GRID_GAP
    assert grid[0, 0, 0] == 0 and grid[0, step, 0] == 128 and grid[0, 2 * step, 0] == 255
    assert grid[step, step, 0] == 64
    assert grid[8, 0, 0] == 255, "the gap between rows is white"
