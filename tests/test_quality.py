"""Image quality estimates of training.data.quality on real photos and known degradations."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.util import random_noise

from training.data.quality import (
    QualityThresholds,
    assess,
    noise_sigma,
    salt_pepper_fraction,
    sharpness,
)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def noisy(clean: np.ndarray) -> np.ndarray:
    """The astronaut with white Gaussian noise of sigma 10/255 per channel, saved as 8-bit."""
    rng = np.random.default_rng(1234)
    noise = rng.normal(0.0, 10.0, clean.shape)
    return np.clip(np.round(clean + noise), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def blurred(clean: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(clean, (0, 0), 2.0)


@pytest.fixture(scope="module")
def salt_and_pepper(clean: np.ndarray) -> np.ndarray:
    """2% of the values set to 0 or 1, channels hit independently (scikit-image's "s&p")."""
    return random_noise(clean, mode="s&p", amount=0.02, rng=7)


def test_blurring_lowers_sharpness(clean: np.ndarray, blurred: np.ndarray) -> None:
    slight = cv2.GaussianBlur(clean, (0, 0), 0.8)
    assert sharpness(clean) > sharpness(slight) > sharpness(blurred)
    assert sharpness(blurred) < 0.1 * sharpness(clean)


def test_sharpness_does_not_depend_on_pixel_count(t1_photo: Path) -> None:
    photo = np.asarray(Image.open(t1_photo).convert("RGB"))
    height, width = photo.shape[:2]
    # Still larger than the working size (512) on its shorter side: 886 -> 664 pixels.
    smaller = np.asarray(
        Image.fromarray(photo).resize((width * 3 // 4, height * 3 // 4), Image.Resampling.LANCZOS)
    )
    assert sharpness(smaller) == pytest.approx(sharpness(photo), rel=0.05)
    # Measured at native size the two differ by far more than that.
    assert sharpness(smaller, working_size=None) > 1.2 * sharpness(photo, working_size=None)


def test_sharpness_accepts_grey_float_and_rgba(clean: np.ndarray) -> None:
    grey = cv2.cvtColor(clean, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([clean, np.full(clean.shape[:2], 255, np.uint8)])
    value = sharpness(clean)
    assert sharpness(rgba) == pytest.approx(value, rel=1e-6)
    assert sharpness(clean.astype(np.float32) / 255.0) == pytest.approx(value, rel=1e-4)
    assert sharpness(grey) == pytest.approx(value, rel=0.05)


def test_noise_estimate_of_gaussian_noise(clean: np.ndarray, noisy: np.ndarray) -> None:
    sigma = 10.0 / 255.0
    assert noise_sigma(noisy) == pytest.approx(sigma, rel=0.25)
    assert noise_sigma(clean) < 0.35 * sigma


def test_noise_estimate_grows_with_the_noise(clean: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    base = clean.astype(np.float64) / 255.0
    estimates = [
        noise_sigma(np.clip(base + rng.normal(0.0, s / 255.0, base.shape), 0.0, 1.0))
        for s in (5.0, 10.0, 20.0)
    ]
    assert estimates[0] < estimates[1] < estimates[2]
    assert estimates[2] == pytest.approx(20.0 / 255.0, rel=0.25)


def test_noise_estimate_ignores_impulses_unless_asked(salt_and_pepper: np.ndarray) -> None:
    assert noise_sigma(salt_and_pepper) < 4.0 / 255.0
    assert noise_sigma(salt_and_pepper, exclude_impulses=False) > 8.0 / 255.0


def test_salt_and_pepper_fraction(
    clean: np.ndarray, noisy: np.ndarray, salt_and_pepper: np.ndarray
) -> None:
    assert salt_pepper_fraction(salt_and_pepper) == pytest.approx(0.02, rel=0.15)
    assert salt_pepper_fraction(clean) < 0.0005
    assert salt_pepper_fraction(noisy) < 0.0005


def test_salt_and_pepper_on_whole_pixels_gives_the_same_fraction(clean: np.ndarray) -> None:
    rng = np.random.default_rng(11)
    hit = rng.random(clean.shape[:2]) < 0.02
    image = clean.copy()
    image[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255)[:, None].astype(np.uint8)
    assert salt_pepper_fraction(image) == pytest.approx(0.02, rel=0.15)


def test_assess_passes_the_clean_photo(clean: np.ndarray) -> None:
    report = assess(clean, QualityThresholds())
    assert report.passed, report.reasons
    assert report.reasons == []
    assert report.sharpness == pytest.approx(sharpness(clean))
    assert report.noise_sigma == pytest.approx(noise_sigma(clean))
    assert report.salt_pepper_fraction == pytest.approx(salt_pepper_fraction(clean))


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [("blurred", "blurry"), ("noisy", "noisy"), ("salt_and_pepper", "salt-and-pepper")],
)
def test_assess_flags_each_degradation_with_its_reason(
    request: pytest.FixtureRequest, fixture: str, reason: str
) -> None:
    report = assess(request.getfixturevalue(fixture))
    assert not report.passed
    assert [text.split(":")[0] for text in report.reasons] == [reason]


def test_assess_checks_can_be_switched_off(noisy: np.ndarray) -> None:
    report = assess(noisy, QualityThresholds(max_noise_sigma=None))
    assert report.passed
    assert report.noise_sigma > 5.0 / 255.0


def test_bad_images_raise_a_clear_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        sharpness(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match="at least 3x3"):
        noise_sigma(np.zeros((2, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        salt_pepper_fraction(np.full((8, 8, 3), 200.0))
    with pytest.raises(ValueError, match="dtype"):
        assess(np.zeros((8, 8), np.int32))
