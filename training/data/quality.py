"""No-reference image quality estimates used to filter training photos (paper, App. A: HQ
images must be neither blurry nor noisy nor carry pepper noise).

Every function takes an image as a NumPy array (or anything ``np.asarray`` turns into one,
e.g. a PIL image) of shape (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA (alpha is
ignored), dtype uint8 (0-255), uint16 (0-65535) or float in [0, 1]. H and W must be at
least 3. Bad input raises ``ValueError`` naming the problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# ITU-R BT.601 luma weights, the ones OpenCV and PIL use for RGB -> grey.
_LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Immerkaer's noise mask: the difference of two Laplacian approximations, which cancels
# image structure up to second order and leaves 36 * sigma^2 of white noise variance
# (J. Immerkaer, "Fast Noise Variance Estimation", CVIU 64(2), 1996, eq. 6-9).
_IMMERKAER_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)

# A value within half an 8-bit step of 0 or 1 counts as "extreme" (impulse-noise candidate).
_EXTREME_TOLERANCE = 0.5 / 255.0
# How far an extreme value must stand from its 3x3 median to count as an impulse.
IMPULSE_MIN_DIFFERENCE = 0.2


def _as_float_image(image: object) -> np.ndarray:
    """The image as float32 (H, W, C) in [0, 1], C in {1, 3}; alpha dropped."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got "
            f"{array.shape}"
        )
    if array.shape[0] < 3 or array.shape[1] < 3:
        raise ValueError(
            f"image must be at least 3x3 pixels, got {array.shape[1]}x{array.shape[0]}"
        )
    if array.shape[2] == 4:
        array = array[:, :, :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(array.min()), float(array.max())
        if not (np.isfinite(low) and np.isfinite(high)) or low < -1e-3 or high > 1.0 + 1e-3:
            raise ValueError(
                f"float images must hold finite values in [0, 1], got range [{low}, {high}]; "
                "divide 8-bit data by 255"
            )
        return np.clip(array, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unsupported image dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")


def _grey(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 luma of a (H, W, C) float image (C = 1 is returned as is)."""
    if image.shape[2] == 1:
        return image[:, :, 0]
    return image @ _LUMA_RGB


def sharpness(image: object, working_size: int | None = 512) -> float:
    """Variance of the Laplacian of the grey image, in 8-bit grey levels squared.

    The image is first rescaled (Lanczos) so that its shorter side is ``working_size``
    pixels: the figure then describes the image as seen at that size and does not depend on
    its pixel count, so one threshold serves a folder of mixed resolutions. An image smaller
    than ``working_size`` is enlarged and measures as less sharp, as it would be at that size.
    ``working_size=None`` measures at the native size. The 4-neighbour Laplacian is taken on
    interior pixels only (no border padding). The unit makes the usual rule of thumb apply
    (below ~100 is blurry). Noise raises the figure too, so read it together with
    :func:`noise_sigma`.
    """
    grey = _grey(_as_float_image(image))
    if working_size is not None:
        if working_size < 3:
            raise ValueError(f"working_size must be at least 3 pixels or None, got {working_size}")
        height, width = grey.shape
        scale = working_size / min(height, width)
        if scale != 1.0:
            size = (max(3, round(width * scale)), max(3, round(height * scale)))
            # Pillow's Lanczos widens its kernel with the shrink factor (antialiasing), so
            # one photo saved at two sizes above working_size measures nearly the same;
            # OpenCV's INTER_AREA varies with the factor by tens of percent.
            resized = Image.fromarray(np.ascontiguousarray(grey)).resize(
                size, Image.Resampling.LANCZOS
            )
            grey = np.asarray(resized)
    grey = grey.astype(np.float64) * 255.0
    laplacian = (
        grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    )
    return float(laplacian.var())


def _impulse_mask(channel: np.ndarray, min_difference: float) -> tuple[np.ndarray, np.ndarray]:
    """(impulses, median): pixels at 0 or 1 that differ from their 3x3 median by more than
    ``min_difference``, and that median (OpenCV's, replicated border)."""
    median = cv2.medianBlur(channel, 3)
    extreme = (channel <= _EXTREME_TOLERANCE) | (channel >= 1.0 - _EXTREME_TOLERANCE)
    return extreme & (np.abs(channel - median) > min_difference), median


def salt_pepper_fraction(image: object, min_difference: float = IMPULSE_MIN_DIFFERENCE) -> float:
    """Estimated fraction of pixel values hit by salt-and-pepper (impulse) noise, in [0, 1].

    Per channel, an impulse is a value at 0 or 1 (within half an 8-bit step) that differs
    from its 3x3 median by more than ``min_difference``. Salt on an already white area, or
    pepper on a black one, cannot be seen, so the detected fraction is divided by the share
    of pixels where an impulse would be visible (equal odds of salt and pepper assumed:
    visibility = mean of [median < 1 - min_difference] and [median > min_difference]).
    Channels are averaged, so noise that hits all channels of a pixel and noise that hits
    channels independently give the same figure.
    """
    if not 0.0 < min_difference < 1.0:
        raise ValueError(f"min_difference must be in (0, 1), got {min_difference}")
    data = _as_float_image(image)
    fractions = []
    for c in range(data.shape[2]):
        channel = np.ascontiguousarray(data[:, :, c])
        impulses, median = _impulse_mask(channel, min_difference)
        visible = 0.5 * (
            float(np.mean(median < 1.0 - min_difference)) + float(np.mean(median > min_difference))
        )
        detected = float(np.mean(impulses))
        fractions.append(min(1.0, detected / visible) if visible > 0.0 else detected)
    return float(np.mean(fractions))


def noise_sigma(image: object, exclude_impulses: bool = True) -> float:
    """Estimated standard deviation of additive white Gaussian noise, in [0, 1] units.

    Immerkaer's fast estimator per channel (J. Immerkaer, "Fast Noise Variance Estimation",
    1996): sigma = sqrt(pi / 2) * mean(|I * N|) / 6 over interior pixels, N the 3x3 mask
    [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]; channels averaged, so it estimates the per-channel
    sigma whether the noise is independent per channel or the same in all. Fine texture
    reads as noise: a clean, detailed photo gives about 2-3/255. With ``exclude_impulses``
    the 3x3 neighbourhoods of salt-and-pepper impulses (see :func:`salt_pepper_fraction`)
    are left out, so impulse noise is not reported as Gaussian noise.
    """
    data = _as_float_image(image)
    sigmas = []
    for c in range(data.shape[2]):
        channel = np.ascontiguousarray(data[:, :, c])
        response = np.abs(cv2.filter2D(channel, cv2.CV_32F, _IMMERKAER_MASK))[1:-1, 1:-1]
        if exclude_impulses:
            impulses, _ = _impulse_mask(channel, IMPULSE_MIN_DIFFERENCE)
            near_impulse = cv2.dilate(impulses.astype(np.uint8), np.ones((3, 3), np.uint8))
            keep = near_impulse[1:-1, 1:-1] == 0
            if keep.any():
                response = response[keep]
        sigmas.append(np.sqrt(np.pi / 2.0) * float(np.mean(response, dtype=np.float64)) / 6.0)
    return float(np.mean(sigmas))


@dataclass(frozen=True)
class QualityThresholds:
    """Limits an HQ training photo must meet; ``None`` switches a check off.

    The defaults keep clean, detailed photos: ``min_sharpness`` in the unit of
    :func:`sharpness` at its default working size, ``max_noise_sigma`` in [0, 1] units
    (5/255: visible grain in flat areas), ``max_salt_pepper_fraction`` a fraction of pixels.
    """

    min_sharpness: float | None = 100.0
    max_noise_sigma: float | None = 5.0 / 255.0
    max_salt_pepper_fraction: float | None = 0.002
    sharpness_working_size: int | None = 512


@dataclass(frozen=True)
class QualityReport:
    """Outcome of :func:`assess`: the measured values, and one reason per failed check.

    Each reason starts with "blurry", "noisy" or "salt-and-pepper" followed by the figures.
    """

    passed: bool
    reasons: list[str]
    sharpness: float
    noise_sigma: float
    salt_pepper_fraction: float


def assess(image: object, thresholds: QualityThresholds | None = None) -> QualityReport:
    """Measure sharpness, Gaussian noise and impulse noise and check them against
    ``thresholds`` (defaults when None). All three values are always measured."""
    limits = thresholds if thresholds is not None else QualityThresholds()
    data = _as_float_image(image)
    measured_sharpness = sharpness(data, limits.sharpness_working_size)
    measured_noise = noise_sigma(data)
    measured_impulses = salt_pepper_fraction(data)
    reasons = []
    if limits.min_sharpness is not None and measured_sharpness < limits.min_sharpness:
        reasons.append(
            f"blurry: sharpness {measured_sharpness:.1f} < min_sharpness {limits.min_sharpness:g}"
        )
    if limits.max_noise_sigma is not None and measured_noise > limits.max_noise_sigma:
        reasons.append(
            f"noisy: noise sigma {measured_noise * 255:.2f}/255 > max_noise_sigma "
            f"{limits.max_noise_sigma * 255:.2f}/255"
        )
    if (
        limits.max_salt_pepper_fraction is not None
        and measured_impulses > limits.max_salt_pepper_fraction
    ):
        reasons.append(
            f"salt-and-pepper: impulse fraction {measured_impulses:.4f} > "
            f"max_salt_pepper_fraction {limits.max_salt_pepper_fraction:g}"
        )
    return QualityReport(
        passed=not reasons,
        reasons=reasons,
        sharpness=measured_sharpness,
        noise_sigma=measured_noise,
        salt_pepper_fraction=measured_impulses,
    )
