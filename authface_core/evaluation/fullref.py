"""PSNR and SSIM with the convention of face restoration tables.

Convention (BasicSR's ``calculate_psnr`` / ``calculate_ssim`` with ``test_y_channel=True`` and
``crop_border=0``, what GFPGAN-era BFR tables, and pyiqa's "psnr"/"ssim" on Y, report): both
images as 8-bit levels, converted to the luma Y of ITU-R BT.601 YCbCr as MATLAB's ``rgb2ycbcr``
computes it (Y = 16 + 65.481 R + 128.553 G + 24.966 B for R, G, B in [0, 1], so Y in [16, 235]),
no border cropped, peak 255. SSIM is Wang et al. 2004 (IEEE TIP 13(4)): 11 x 11 Gaussian window
with sigma 1.5, K1 = 0.01, K2 = 0.03, averaged over the positions where the window lies inside
the image.

``channel="rgb"`` is the other convention BFR papers use (BFRffusion-style scripts, scikit-image
with ``channel_axis``): the same 8-bit levels on R, G and B, PSNR over all three channels and
SSIM as the mean of the per-channel SSIMs.
"""

from __future__ import annotations

import cv2
import numpy as np

# MATLAB rgb2ycbcr's Y row (BT.601, studio swing) for inputs in [0, 1].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
_Y_OFFSET = 16.0
_PEAK = 255.0
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_C1 = (0.01 * _PEAK) ** 2
_C2 = (0.03 * _PEAK) ** 2
CHANNELS = ("y", "rgb")
# What each channel choice means, for the report (summary.json and table.md).
CHANNEL_CONVENTIONS = {
    "y": "BT.601 Y (MATLAB rgb2ycbcr), 8-bit levels, no border crop (BasicSR test_y_channel)",
    "rgb": "RGB, 8-bit levels, no border crop; SSIM the mean over R, G, B (scikit-image channel_axis)",
}


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 Y (MATLAB rgb2ycbcr, [16, 235]) of an HxWx3 RGB float image in [0, 1] rounded to
    8-bit levels first, as float64."""
    levels = np.rint(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0) / 255.0
    return levels @ _Y_WEIGHTS + _Y_OFFSET


def _planes(a: np.ndarray, b: np.ndarray, channel: str) -> tuple[np.ndarray, np.ndarray]:
    """Both images as 8-bit-level planes of ``channel``: HxW Y in [16, 235] or HxWx3 RGB in [0, 255]."""
    if a.shape != b.shape:
        raise ValueError(f"images of different sizes: {a.shape[:2]} and {b.shape[:2]}")
    if channel == "y":
        return luma(a), luma(b)
    if channel == "rgb":
        return tuple(np.rint(np.clip(np.asarray(im, dtype=np.float64), 0.0, 1.0) * 255.0) for im in (a, b))
    raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")


def psnr(restored: np.ndarray, reference: np.ndarray, channel: str = "y") -> float:
    """PSNR in dB on ``channel`` (see the module docstring); inf for identical images."""
    x, y = _planes(restored, reference, channel)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * np.log10(_PEAK**2 / mse)


def ssim(restored: np.ndarray, reference: np.ndarray, channel: str = "y") -> float:
    """Mean SSIM on ``channel`` (see the module docstring; RGB: mean over R, G, B), in [-1, 1]."""
    x, y = _planes(restored, reference, channel)
    if x.ndim == 3:
        return float(np.mean([_ssim_plane(x[..., c], y[..., c]) for c in range(x.shape[2])]))
    return _ssim_plane(x, y)


def _ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    kernel = cv2.getGaussianKernel(_SSIM_WINDOW, _SSIM_SIGMA)
    window = kernel @ kernel.T

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.filter2D(image, -1, window, borderType=cv2.BORDER_REFLECT_101)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
    pad = _SSIM_WINDOW // 2
    return float(ssim_map[pad:-pad, pad:-pad].mean())
