"""GFPGAN-style synthetic degradation for Stage II training pairs (paper Sec. 4.1).

Pipeline and ranges of GFPGAN (Wang et al. 2021; ``options/train_gfpgan_v1.yml`` and
``gfpgan/data/ffhq_degradation_dataset.py``): blur with a 41x41 isotropic or anisotropic
Gaussian kernel (equal odds, sigma U[0.1, 10], anisotropic kernels rotated by U[-pi, pi]),
bilinear downsampling by a factor U[0.8, 8], Gaussian noise of sigma U[0, 20] / 255, JPEG at
quality U[60, 100], bilinear resize back to the input size, 8-bit rounding. GFPGAN's colour
jitter and grey conversion are not part of the paper's stated degradation and are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


def _check_range(name: str, bounds: tuple[float, float], low: float, high: float) -> None:
    if len(bounds) != 2 or not (low <= bounds[0] <= bounds[1] <= high):
        raise ValueError(f"{name} must be a (min, max) pair with {low} <= min <= max <= {high}, got {bounds}")


@dataclass(frozen=True)
class DegradationConfig:
    """Ranges (uniformly sampled) and stage probabilities of ``degrade``.

    Each ``*_prob`` is the chance that a stage runs (GFPGAN runs every stage: 1.0); set one to
    0 to switch a stage off. ``noise_range`` is in 8-bit levels (sigma / 255 on [0, 1]
    images). ``jpeg_range`` is inclusive: integer qualities are drawn uniformly from it.
    ``quantize`` rounds the result to 8-bit levels, as GFPGAN does before training.
    """

    blur_prob: float = 1.0
    kernel_size: int = 41
    iso_prob: float = 0.5  # GFPGAN kernel_list ['iso', 'aniso'], kernel_prob [0.5, 0.5]
    blur_sigma: tuple[float, float] = (0.1, 10.0)
    downsample_prob: float = 1.0
    downsample_range: tuple[float, float] = (0.8, 8.0)
    noise_prob: float = 1.0
    noise_range: tuple[float, float] = (0.0, 20.0)
    jpeg_prob: float = 1.0
    jpeg_range: tuple[int, int] = (60, 100)
    quantize: bool = True

    def __post_init__(self) -> None:
        for name in ("blur_prob", "iso_prob", "downsample_prob", "noise_prob", "jpeg_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability and must be in [0, 1], got {value}")
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {self.kernel_size}")
        _check_range("blur_sigma", self.blur_sigma, 1e-3, math.inf)
        _check_range("downsample_range", self.downsample_range, 1e-3, math.inf)
        _check_range("noise_range", self.noise_range, 0.0, 255.0)
        _check_range("jpeg_range", self.jpeg_range, 1, 100)
        if any(int(q) != q for q in self.jpeg_range):
            raise ValueError(f"jpeg_range must hold integer qualities, got {self.jpeg_range}")


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float = 0.0) -> np.ndarray:
    """Normalised 2-D Gaussian kernel, (size, size) float32 summing to 1.

    Covariance ``R diag(sigma_x^2, sigma_y^2) R^T`` with ``R`` the rotation by ``theta``
    (radians) in (x = column, y = row) coordinates; isotropic when ``sigma_x == sigma_y``.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"kernel sigmas must be > 0, got {sigma_x}, {sigma_y}")
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xx, yy = np.meshgrid(ax, ax)
    c, s = math.cos(theta), math.sin(theta)
    u = c * xx + s * yy  # coordinates along the kernel's principal axes
    v = -s * xx + c * yy
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip through ``cv2.imencode`` at ``quality`` (1-100) of an RGB float image
    in [0, 1]; returns float32 in [0, 1] (multiples of 1/255)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    # OpenCV's encoder expects BGR: its YCbCr conversion and chroma subsampling depend on it.
    bgr = cv2.cvtColor(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode the image as JPEG")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an RGB image array of shape (H, W, 3), got shape {shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected a float image in [0, 1], got dtype {image.dtype}; divide uint8 by 255")
    if not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0:
        raise ValueError("image values must be finite and in [0, 1]")
    return image.astype(np.float32, copy=False)


def degrade(
    image: np.ndarray,
    config: DegradationConfig,
    rng: np.random.Generator,
    record: dict[str, float | int | str] | None = None,
) -> np.ndarray:
    """Degrade a clean RGB image: blur -> downsample -> noise -> JPEG -> resize back.

    Args:
        image: (H, W, 3) float in [0, 1] (not modified).
        config: ranges and stage probabilities.
        rng: source of every random choice; the same generator state gives the same output.
        record: when given, filled with the drawn parameters of the stages that ran:
            ``blur`` ("iso"/"aniso"), ``blur_sigma_x``, ``blur_sigma_y``, ``blur_theta``
            (radians), ``downsample`` (factor), ``noise_sigma`` (8-bit levels),
            ``jpeg_quality``.

    Returns:
        (H, W, 3) float32 in [0, 1].

    Raises:
        ValueError: ``image`` is not (H, W, 3) float in [0, 1].
    """
    img = _check_image(image)
    h, w = img.shape[:2]
    drawn: dict[str, float | int | str] = {} if record is None else record
    if rng.random() < config.blur_prob:
        if rng.random() < config.iso_prob:
            sigma_x = sigma_y = rng.uniform(*config.blur_sigma)
            kind, theta = "iso", 0.0
        else:
            sigma_x, sigma_y = rng.uniform(*config.blur_sigma, size=2)
            kind, theta = "aniso", rng.uniform(-math.pi, math.pi)
        kernel = gaussian_kernel(config.kernel_size, sigma_x, sigma_y, theta)
        drawn.update(blur=kind, blur_sigma_x=float(sigma_x), blur_sigma_y=float(sigma_y), blur_theta=float(theta))
        img = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    if rng.random() < config.downsample_prob:
        scale = rng.uniform(*config.downsample_range)
        drawn["downsample"] = float(scale)
        size = (max(1, int(w / scale)), max(1, int(h / scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    if rng.random() < config.noise_prob:
        sigma = rng.uniform(*config.noise_range) / 255.0
        drawn["noise_sigma"] = float(sigma * 255.0)
        noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
        img = np.clip(img + noise, 0.0, 1.0)
    if rng.random() < config.jpeg_prob:
        quality = int(rng.integers(config.jpeg_range[0], config.jpeg_range[1] + 1))
        drawn["jpeg_quality"] = quality
        img = jpeg_compress(img, quality)
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    if config.quantize:
        img = np.rint(img * 255.0) / 255.0
    return np.clip(img, 0.0, 1.0).astype(np.float32)
