"""Colour fixes of authface_core.colorfix on real photos (scikit-image's astronaut, coffee)."""

from __future__ import annotations

import cv2
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from authface_core.colorfix import (
    adain_color_fix,
    binomial_kernel,
    color_fix,
    gray_world_fix,
    wavelet_color_fix,
    wavelet_low_frequency,
)


def _photo(name: str) -> torch.Tensor:
    """A scikit-image photo as a (1, 3, H, W) float32 tensor in [0, 1]."""
    return torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255.0


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """OpenCV's Gaussian blur of a (1, C, H, W) tensor."""
    blurred = cv2.GaussianBlur(image[0].permute(1, 2, 0).numpy(), (0, 0), sigma)
    return torch.from_numpy(blurred).permute(2, 0, 1)[None]


def _colour_cast(
    image: torch.Tensor, gain: tuple[float, float, float], offset: tuple[float, float, float]
) -> torch.Tensor:
    g = torch.tensor(gain).view(1, 3, 1, 1)
    o = torch.tensor(offset).view(1, 3, 1, 1)
    return (image * g + o).clamp(0.0, 1.0)


def _laplacian_variance(image: torch.Tensor) -> float:
    lap = (
        image[..., :-2, 1:-1] + image[..., 2:, 1:-1] + image[..., 1:-1, :-2]
        + image[..., 1:-1, 2:] - 4 * image[..., 1:-1, 1:-1]
    )  # fmt: skip
    return float(lap.var())


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return _photo("astronaut")


@pytest.fixture(scope="module")
def degraded(astronaut: torch.Tensor) -> torch.Tensor:
    """The astronaut with a warm colour cast and a strong blur: a stand-in for an LQ input."""
    return _gaussian_blur(_colour_cast(astronaut, (1.1, 0.85, 0.7), (0.03, 0.02, 0.06)), 3.0)


def test_binomial_kernel_is_the_normalised_outer_product_of_1_2_1() -> None:
    kernel = binomial_kernel(torch.float64)
    assert kernel.shape == (3, 3)
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(kernel[1, 1]) == pytest.approx(4 / 16)
    assert float(kernel[0, 1]) == pytest.approx(2 / 16)
    assert float(kernel[0, 0]) == pytest.approx(1 / 16)
    assert torch.equal(kernel, kernel.T)


@pytest.mark.parametrize("size", [(64, 48), (7, 5), (1, 1)])
def test_low_frequency_of_a_constant_image_is_that_constant(size: tuple[int, int]) -> None:
    levels = torch.tensor([0.0, 0.37, 1.0]).view(1, 3, 1, 1)
    constant = levels.expand(2, 3, *size).clone()
    assert torch.allclose(wavelet_low_frequency(constant), constant, atol=1e-6)


def test_low_frequency_spreads_an_impulse_over_the_sum_of_the_dilations() -> None:
    # Dilations 1 + 2 + 4 + 8 + 16 = 31: an impulse far from the border spreads to exactly
    # +-31 pixels and keeps its mass.
    impulse = torch.zeros(1, 1, 101, 101, dtype=torch.float64)
    impulse[0, 0, 50, 50] = 1.0
    low = wavelet_low_frequency(impulse)[0, 0]
    assert float(low.sum()) == pytest.approx(1.0, abs=1e-12)
    rows = torch.nonzero(low.abs().sum(dim=1) > 0).flatten()
    cols = torch.nonzero(low.abs().sum(dim=0) > 0).flatten()
    assert (int(rows.min()), int(rows.max())) == (50 - 31, 50 + 31)
    assert (int(cols.min()), int(cols.max())) == (50 - 31, 50 + 31)
    assert float(low[50, 50]) == float(low.max())


def test_wavelet_fix_against_itself_returns_the_image(astronaut: torch.Tensor) -> None:
    fixed = wavelet_color_fix(astronaut, astronaut)
    assert torch.allclose(fixed, astronaut, atol=1e-6)


def test_wavelet_fix_takes_colour_from_reference_and_detail_from_restored(
    astronaut: torch.Tensor, degraded: torch.Tensor
) -> None:
    before = (astronaut.mean(dim=(2, 3)) - degraded.mean(dim=(2, 3))).abs()
    assert float(before.max()) > 0.05

    fixed = wavelet_color_fix(astronaut, degraded)

    colour_error = (fixed.mean(dim=(2, 3)) - degraded.mean(dim=(2, 3))).abs()
    assert float(colour_error.max()) < 0.005
    unclamped = (fixed > 0) & (fixed < 1)
    assert float(unclamped.float().mean()) > 0.9
    detail_in = astronaut - wavelet_low_frequency(astronaut)
    detail_out = fixed - wavelet_low_frequency(degraded)
    assert torch.allclose(detail_out[unclamped], detail_in[unclamped], atol=1e-6)
    assert _laplacian_variance(fixed) > 10 * _laplacian_variance(degraded)


def test_wavelet_fix_resizes_a_smaller_reference(
    astronaut: torch.Tensor, degraded: torch.Tensor
) -> None:
    small = F.interpolate(degraded, size=(128, 96), mode="area")
    fixed = wavelet_color_fix(astronaut, small)
    assert fixed.shape == astronaut.shape
    colour_error = (fixed.mean(dim=(2, 3)) - degraded.mean(dim=(2, 3))).abs()
    assert float(colour_error.max()) < 0.01


def test_output_stays_in_range_when_the_fix_overshoots(astronaut: torch.Tensor) -> None:
    inverted = 1.0 - astronaut
    raw = astronaut - wavelet_low_frequency(astronaut) + wavelet_low_frequency(inverted)
    assert float(raw.min()) < 0.0 and float(raw.max()) > 1.0
    for method in ("wavelet", "adain"):
        fixed = color_fix(astronaut, inverted, method)
        assert float(fixed.min()) >= 0.0 and float(fixed.max()) <= 1.0


def test_batch_is_processed_image_by_image(astronaut: torch.Tensor, degraded: torch.Tensor) -> None:
    coffee = F.interpolate(_photo("coffee"), size=astronaut.shape[-2:], mode="area")
    restored = torch.cat([astronaut, coffee])
    reference = torch.cat([degraded, _colour_cast(coffee, (0.7, 0.9, 1.2), (0.0, 0.05, 0.0))])
    for method in ("wavelet", "adain"):
        batched = color_fix(restored, reference, method)
        for i in range(2):
            single = color_fix(restored[i : i + 1], reference[i : i + 1], method)
            assert torch.allclose(batched[i : i + 1], single, atol=1e-6)
    broadcast = wavelet_color_fix(restored, degraded)
    assert torch.allclose(broadcast[1:], wavelet_color_fix(coffee, degraded), atol=1e-6)


def test_channels_last_matches_channels_first(
    astronaut: torch.Tensor, degraded: torch.Tensor
) -> None:
    bhwc_u = astronaut.permute(0, 2, 3, 1)
    bhwc_v = degraded.permute(0, 2, 3, 1)
    for method in ("wavelet", "adain", "gray_world"):
        expected = color_fix(astronaut, degraded, method, 0.8).permute(0, 2, 3, 1)
        got = color_fix(bhwc_u, bhwc_v, method, 0.8, channels_last=True)
        assert got.shape == bhwc_u.shape
        assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_is_preserved(
    astronaut: torch.Tensor, degraded: torch.Tensor, dtype: torch.dtype
) -> None:
    reference = wavelet_color_fix(astronaut, degraded)
    fixed = wavelet_color_fix(astronaut.to(dtype), degraded.to(dtype))
    assert fixed.dtype == dtype
    tolerance = 1e-6 if dtype == torch.float64 else 2e-2
    assert torch.allclose(fixed.float(), reference, atol=tolerance)


def test_adain_undoes_a_per_channel_affine_colour_change(astronaut: torch.Tensor) -> None:
    # Gains and offsets chosen so that nothing clips: the reference is exactly an affine
    # function of the restored image per channel, which AdaIN maps onto it.
    reference = _colour_cast(astronaut, (0.8, 0.9, 0.6), (0.1, 0.05, 0.2))
    assert float((reference - astronaut).abs().mean()) > 0.05
    fixed = adain_color_fix(astronaut, reference)
    assert torch.allclose(fixed, reference, atol=1e-3)


def test_adain_matches_mean_and_std_per_channel(astronaut: torch.Tensor) -> None:
    coffee = _photo("coffee")
    fixed = adain_color_fix(astronaut, coffee)
    resized = F.interpolate(coffee, size=astronaut.shape[-2:], mode="bicubic", antialias=True)
    target_std, target_mean = torch.std_mean(resized.clamp(0, 1), dim=(2, 3), correction=0)
    std, mean = torch.std_mean(fixed, dim=(2, 3), correction=0)
    before_std, before_mean = torch.std_mean(astronaut, dim=(2, 3), correction=0)
    assert float((before_mean - target_mean).abs().max()) > 0.05
    assert float((before_std - target_std).abs().max()) > 0.02
    # Not exact: the shifted astronaut's dark background clips at 0 in the blue channel.
    assert float((mean - target_mean).abs().max()) < 0.02
    assert float((std - target_std).abs().max()) < 0.02


def test_gray_world_strength_zero_is_identity_and_one_equalises_channel_means(
    astronaut: torch.Tensor,
) -> None:
    assert torch.equal(gray_world_fix(astronaut, 0.0), astronaut)
    means = astronaut.mean(dim=(2, 3))
    assert float(means.max() - means.min()) > 0.1
    full = gray_world_fix(astronaut, 1.0)
    full_means = full.mean(dim=(2, 3))
    assert float(full_means.max() - full_means.min()) < 0.01
    half = gray_world_fix(astronaut, 0.5)
    assert torch.allclose(half, 0.5 * (astronaut + full), atol=1e-6)


def test_gray_world_balances_each_image_of_a_batch(astronaut: torch.Tensor) -> None:
    batch = torch.cat([astronaut, _colour_cast(astronaut, (0.6, 1.0, 1.1), (0.0, 0.0, 0.05))])
    fixed = gray_world_fix(batch, 1.0)
    spread = fixed.mean(dim=(2, 3)).amax(dim=1) - fixed.mean(dim=(2, 3)).amin(dim=1)
    assert float(spread.max()) < 0.01
    assert torch.allclose(fixed[:1], gray_world_fix(astronaut, 1.0), atol=1e-6)


def test_color_fix_blends_by_strength(astronaut: torch.Tensor, degraded: torch.Tensor) -> None:
    full = color_fix(astronaut, degraded, "wavelet", 1.0)
    assert torch.equal(full, wavelet_color_fix(astronaut, degraded))
    blended = color_fix(astronaut, degraded, "wavelet", 0.25)
    assert torch.allclose(blended, 0.75 * astronaut + 0.25 * full, atol=1e-6)
    assert color_fix(astronaut, degraded, "none") is astronaut
    gray = color_fix(astronaut, None, "gray_world", 0.6)
    assert torch.equal(gray, gray_world_fix(astronaut, 0.6))


def test_bad_input_raises_a_clear_error(astronaut: torch.Tensor) -> None:
    pair = torch.cat([astronaut, astronaut])
    with pytest.raises(ValueError, match="batch size"):
        wavelet_color_fix(pair, torch.cat([astronaut] * 3))
    with pytest.raises(ValueError, match="channels"):
        wavelet_color_fix(astronaut, astronaut[:, :1])
    with pytest.raises(ValueError, match="4-D"):
        wavelet_color_fix(astronaut[0], astronaut[0])
    with pytest.raises(ValueError, match="float"):
        adain_color_fix((astronaut * 255).to(torch.uint8), astronaut)
    with pytest.raises(ValueError, match="unknown colour fix method"):
        color_fix(astronaut, astronaut, "histogram")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strength"):
        gray_world_fix(astronaut, 1.5)
    with pytest.raises(ValueError, match="reference"):
        color_fix(astronaut, None, "adain")
