"""Full-reference image metrics of the validation: PSNR and SSIM on RGB images in [0, 1].

SSIM is Wang et al. 2004 ("Image quality assessment: from error visibility to structural
similarity"): an 11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1,
population (not sample) statistics, averaged over the positions where the window fits inside
the image ("valid", as their reference implementation) and over the RGB channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"expected two (N, C, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB of (N, C, H, W) images in [0, 1], shape (N,) float64 (inf where
    the images are equal)."""
    _check_pair(a, b)
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_window(device: torch.device) -> Tensor:
    ax = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-0.5 * (ax / SSIM_SIGMA) ** 2)
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Per-image SSIM (module docstring) of (N, C, H, W) images in [0, 1], H and W >= 11;
    shape (N,) float64."""
    _check_pair(a, b)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(a.shape[-2:])}")
    channels = a.shape[1]
    window = _gaussian_window(a.device).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)
    x, y = a.double(), b.double()

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(dim=1)
