"""GFPGAN-style degradation on a real photo (scikit-image's astronaut at 512x512)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from skimage import data

from authface_core.degradation import DegradationConfig, degrade, gaussian_kernel, jpeg_compress

OFF = {"blur_prob": 0.0, "downsample_prob": 0.0, "noise_prob": 0.0, "jpeg_prob": 0.0}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rgb = cv2.resize(data.astronaut(), (512, 512), interpolation=cv2.INTER_AREA)
    return rgb.astype(np.float32) / 255.0


def _only(**stage: object) -> DegradationConfig:
    return dataclasses.replace(DegradationConfig(), **{**OFF, **stage})


def _laplacian_var(img: np.ndarray) -> float:
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


def test_defaults_are_gfpgan_ranges() -> None:
    cfg = DegradationConfig()
    assert cfg.kernel_size == 41 and cfg.iso_prob == 0.5
    assert cfg.blur_sigma == (0.1, 10.0) and cfg.downsample_range == (0.8, 8.0)
    assert cfg.noise_range == (0.0, 20.0) and cfg.jpeg_range == (60, 100)


def test_range_shape_and_determinism(photo: np.ndarray) -> None:
    cfg = DegradationConfig()
    outs = [degrade(photo, cfg, np.random.default_rng(seed)) for seed in range(6)]
    for out in outs:
        assert out.shape == photo.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert not np.array_equal(out, photo)
        # quantised to 8-bit levels
        np.testing.assert_array_equal(out * 255.0, np.rint(out * 255.0))
    again = degrade(photo, cfg, np.random.default_rng(3))
    np.testing.assert_array_equal(again, outs[3])
    assert not np.array_equal(outs[3], outs[4])
    # Non-square input keeps its shape; the input array is left untouched.
    rect = photo[:300, :200].copy()
    before = rect.copy()
    assert degrade(rect, cfg, np.random.default_rng(0)).shape == (300, 200, 3)
    np.testing.assert_array_equal(rect, before)


def test_all_stages_off_is_identity(photo: np.ndarray) -> None:
    out = degrade(photo, _only(), np.random.default_rng(0))
    # Only 8-bit rounding remains; the photo came from uint8, so it is exact.
    np.testing.assert_allclose(out, photo, atol=1e-6)


def test_blur_only_lowers_detail(photo: np.ndarray) -> None:
    strong = degrade(photo, _only(blur_prob=1.0, blur_sigma=(3.0, 10.0)), np.random.default_rng(0))
    assert _laplacian_var(strong) < 0.2 * _laplacian_var(photo)
    # At sigma 0.1 the 41x41 kernel is a delta (neighbour weight exp(-50)): no change.
    tiny = degrade(photo, _only(blur_prob=1.0, blur_sigma=(0.1, 0.1)), np.random.default_rng(0))
    np.testing.assert_allclose(tiny, photo, atol=1e-6)


def test_gaussian_kernel_shape_and_moments() -> None:
    k = gaussian_kernel(41, 2.0, 2.0)
    assert k.shape == (41, 41) and abs(float(k.sum()) - 1.0) < 1e-5
    np.testing.assert_allclose(k, k.T, atol=1e-9)
    ax = np.arange(41) - 20.0
    aniso = gaussian_kernel(41, 4.0, 1.5, theta=0.0).astype(np.float64)
    # Second moments are the variances (truncation at +-20 px is >4 sigma, negligible).
    var_x = float((aniso.sum(axis=0) * ax**2).sum())
    var_y = float((aniso.sum(axis=1) * ax**2).sum())
    assert abs(var_x - 16.0) < 0.05 and abs(var_y - 2.25) < 0.05
    # Rotating by 90 degrees swaps the axes.
    rotated = gaussian_kernel(41, 4.0, 1.5, theta=np.pi / 2)
    np.testing.assert_allclose(rotated, aniso.T, atol=1e-7)
    # At any angle the covariance is R diag(sx^2, sy^2) R^T (x = column, y = row).
    theta = 0.6
    k = gaussian_kernel(41, 4.0, 1.5, theta=theta).astype(np.float64)
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    cov = np.array([[(k * xx * xx).sum(), (k * xx * yy).sum()], [(k * xx * yy).sum(), (k * yy * yy).sum()]])
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    np.testing.assert_allclose(cov, rot @ np.diag([16.0, 2.25]) @ rot.T, atol=0.05)


def test_downsample_only(photo: np.ndarray) -> None:
    down = degrade(photo, _only(downsample_prob=1.0, downsample_range=(4.0, 4.0)), np.random.default_rng(0))
    assert down.shape == photo.shape
    assert _laplacian_var(down) < 0.5 * _laplacian_var(photo)
    same = degrade(photo, _only(downsample_prob=1.0, downsample_range=(1.0, 1.0)), np.random.default_rng(0))
    np.testing.assert_allclose(same, photo, atol=1e-6)


def test_noise_only_has_the_drawn_sigma(photo: np.ndarray) -> None:
    cfg = _only(noise_prob=1.0, noise_range=(10.0, 10.0), quantize=False)
    out = degrade(photo, cfg, np.random.default_rng(0))
    diff = out.astype(np.float64) - photo
    inside = (photo > 0.15) & (photo < 0.85)  # away from clipping at 0 and 1
    assert abs(float(diff[inside].std()) - 10.0 / 255.0) < 0.05 * 10.0 / 255.0
    # ~4e5 samples: the mean's standard error is sigma / 630; allow 0.02 sigma.
    assert abs(float(diff[inside].mean())) < 0.02 * 10.0 / 255.0
    # Noise touches pixels independently: structure is not smoothed.
    assert _laplacian_var(out) > _laplacian_var(photo)


def test_jpeg_only_quality_matters(photo: np.ndarray) -> None:
    q60 = degrade(photo, _only(jpeg_prob=1.0, jpeg_range=(60, 60)), np.random.default_rng(0))
    q100 = degrade(photo, _only(jpeg_prob=1.0, jpeg_range=(100, 100)), np.random.default_rng(0))
    assert not np.array_equal(q60, q100)
    assert _mse(q60, photo) > 2.0 * _mse(q100, photo) > 0.0
    np.testing.assert_array_equal(q60, jpeg_compress(photo, 60))


def test_jpeg_treats_the_image_as_rgb(photo: np.ndarray) -> None:
    # Pillow's encoder takes RGB natively; at the same quality and 4:2:0 chroma subsampling
    # (OpenCV's default) both run libjpeg, so an RGB-correct round trip matches it to within
    # DCT rounding. Feeding RGB to OpenCV as if it were BGR puts the chroma error elsewhere.
    import io

    from PIL import Image

    u8 = np.rint(photo * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=60, subsampling=2)
    reference = np.asarray(Image.open(buf)).astype(np.float32) / 255.0
    ours = jpeg_compress(photo, 60)
    ok, enc = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, 60])
    swapped = cv2.imdecode(enc, cv2.IMREAD_COLOR).astype(np.float32) / 255.0
    err_ours = float(np.abs(ours - reference).mean())
    err_swapped = float(np.abs(swapped - reference).mean())
    assert ok and err_ours < 0.2 / 255.0 < err_swapped


def test_stage_probability_gates_the_stage(photo: np.ndarray) -> None:
    cfg = _only(noise_prob=0.5, noise_range=(5.0, 5.0), quantize=False)
    touched = [not np.array_equal(degrade(photo, cfg, np.random.default_rng(s)), photo) for s in range(40)]
    # Binomial(40, 0.5): outside [8, 32] has probability < 1e-4 for a correct gate.
    assert 8 <= sum(touched) <= 32
    always = _only(noise_prob=1.0, noise_range=(5.0, 5.0), quantize=False)
    assert all(not np.array_equal(degrade(photo, always, np.random.default_rng(s)), photo) for s in range(5))


def test_bad_inputs_raise(photo: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        degrade(photo[..., 0], DegradationConfig(), rng)
    with pytest.raises(ValueError, match="uint8"):
        degrade((photo * 255).astype(np.uint8), DegradationConfig(), rng)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        degrade(photo * 2.0, DegradationConfig(), rng)
    with pytest.raises(ValueError, match="odd"):
        DegradationConfig(kernel_size=40)
    with pytest.raises(ValueError, match="probability"):
        DegradationConfig(noise_prob=1.5)
    with pytest.raises(ValueError, match="jpeg_range"):
        DegradationConfig(jpeg_range=(60, 101))
    with pytest.raises(ValueError, match="downsample_range"):
        DegradationConfig(downsample_range=(8.0, 0.8))
