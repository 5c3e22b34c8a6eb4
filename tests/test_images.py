"""authface_core.images: every accepted layout and dtype to HxWx3 float32 RGB, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from authface_core.images import split_alpha, to_rgb_float, to_uint8_rgb


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.astronaut()[100:164, 150:230]  # 64x80x3 uint8, a real photo patch


def _check_layout(out: np.ndarray, height: int, width: int) -> None:
    assert out.shape == (height, width, 3)
    assert out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_uint8_rgb_is_divided_by_255(photo: np.ndarray) -> None:
    out = to_rgb_float(photo)
    _check_layout(out, 64, 80)
    np.testing.assert_allclose(out * 255.0, photo, atol=1e-4)


def test_grey_and_single_channel_are_repeated(photo: np.ndarray) -> None:
    grey = photo[:, :, 1]
    for image in (grey, grey[:, :, None]):
        out = to_rgb_float(image)
        _check_layout(out, 64, 80)
        for channel in range(3):
            np.testing.assert_allclose(out[:, :, channel] * 255.0, grey, atol=1e-4)


def test_rgba_alpha_is_dropped_and_split_alpha_keeps_it(photo: np.ndarray) -> None:
    alpha = np.linspace(0, 255, 64 * 80).reshape(64, 80).astype(np.uint8)
    rgba = np.dstack([photo, alpha])
    out = to_rgb_float(rgba)
    _check_layout(out, 64, 80)
    np.testing.assert_array_equal(out, to_rgb_float(photo))
    rgb, split = split_alpha(rgba)
    np.testing.assert_array_equal(rgb, out)
    assert split is not None and split.shape == (64, 80) and split.dtype == np.float32
    np.testing.assert_allclose(split * 255.0, alpha, atol=1e-4)
    assert split_alpha(photo)[1] is None


def test_uint16_is_divided_by_65535(photo: np.ndarray) -> None:
    wide = photo.astype(np.uint16) * 257  # the 16-bit value of each 8-bit level
    np.testing.assert_allclose(to_rgb_float(wide), to_rgb_float(photo), atol=1e-6)
    extremes = np.array([[0, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(to_rgb_float(extremes)[0, :, 0], [0.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_in_unit_range_is_kept(photo: np.ndarray, dtype: type) -> None:
    source = (photo / 255.0).astype(dtype)
    out = to_rgb_float(source)
    _check_layout(out, 64, 80)
    np.testing.assert_allclose(out, source.astype(np.float32), atol=1e-7)
    out[0, 0, 0] = 0.123
    assert source[0, 0, 0] != np.asarray(0.123, dtype=dtype), "output must be a new array"


def test_float_overshoot_is_clipped_but_0_255_floats_are_refused(photo: np.ndarray) -> None:
    near = np.array([[[-0.01, 0.5, 1.02]]], dtype=np.float32)
    np.testing.assert_allclose(to_rgb_float(near)[0, 0], [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="divide 0-255 data by 255"):
        to_rgb_float(photo.astype(np.float32))
    with pytest.raises(ValueError, match="NaN"):
        to_rgb_float(np.full((4, 4, 3), np.nan, dtype=np.float32))


@pytest.mark.parametrize("shape", [(64, 80, 2), (64, 80, 5), (64,), (2, 64, 80, 3), (0, 5, 3)])
def test_bad_shapes_are_named(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"shape") as info:
        to_rgb_float(np.zeros(shape, dtype=np.uint8))
    assert str(shape) in str(info.value)


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.int8])
def test_bad_dtypes_are_named(dtype: type) -> None:
    with pytest.raises(ValueError, match="unsupported image dtype"):
        to_rgb_float(np.zeros((4, 4, 3), dtype=dtype))


def test_to_uint8_rounds_and_round_trips(photo: np.ndarray) -> None:
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(to_uint8_rgb(to_rgb_float(levels))[:, :, 0], levels)
    # 2.6 and 2.4 levels round to 3 and 2, not truncate to 2 and 2.
    values = np.array([[[2.6 / 255, 2.4 / 255, 254.5001 / 255]]], dtype=np.float32)
    np.testing.assert_array_equal(to_uint8_rgb(values)[0, 0], [3, 2, 255])
    bgr_view = photo[:, :, ::-1]
    out = to_uint8_rgb(bgr_view)
    assert out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, bgr_view)
    np.testing.assert_array_equal(to_uint8_rgb(photo.astype(np.uint16) * 257), photo)
