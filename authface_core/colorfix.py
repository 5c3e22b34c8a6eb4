"""Colour correction of restored faces against the low-quality input (docs/method.md).

Layout: every function takes and returns float tensors of shape (B, C, H, W) with values in
[0, 1] (BCHW, torch's convention). ComfyUI IMAGE tensors are (B, H, W, C): pass
``channels_last=True`` and inputs and output are BHWC instead. Outputs keep the dtype and
device of ``restored``; half-precision inputs are computed in float32. A reference is moved to
``restored``'s device, resized to its size if needed, and must have the same channel count and
either the same batch size or batch size 1 (one reference for every restored image).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

ColorFixMethod = Literal["wavelet", "adain", "gray_world", "none"]
COLOR_FIX_METHODS: tuple[str, ...] = ("wavelet", "adain", "gray_world", "none")

WAVELET_LEVELS = 5

# AdaIN variance floor: keeps flat (constant) channels finite.
_ADAIN_EPS = 1e-5
# Gray-world denominator floor, as in the AuthFace release's gray_world_color_fix.
_GRAY_WORLD_EPS = 1e-6


def binomial_kernel(
    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """The 3x3 binomial blur kernel, outer product of [1, 2, 1] / 4 (sums to 1), shape (3, 3)."""
    taps = torch.tensor([1.0, 2.0, 1.0], dtype=dtype, device=device) / 4.0
    return torch.outer(taps, taps)


def _to_bchw(image: Tensor, name: str, channels_last: bool) -> Tensor:
    if not isinstance(image, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if image.ndim != 4:
        layout = "(B, H, W, C)" if channels_last else "(B, C, H, W)"
        raise ValueError(
            f"{name} must be a 4-D {layout} tensor, got shape {tuple(image.shape)}; add a batch "
            "dimension with .unsqueeze(0) for a single image"
        )
    if not image.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor in [0, 1], got dtype {image.dtype}; for 8-bit data "
            "use image.float() / 255"
        )
    return image.permute(0, 3, 1, 2) if channels_last else image


def _from_bchw(image: Tensor, channels_last: bool) -> Tensor:
    return image.permute(0, 2, 3, 1) if channels_last else image


def _working(image: Tensor) -> Tensor:
    """``image`` in the dtype the maths runs in: float32 for half precision, else its own."""
    return image.float() if image.dtype in (torch.float16, torch.bfloat16) else image


def _matched_reference(restored: Tensor, reference: Tensor) -> Tensor:
    """``reference`` (BCHW) checked against ``restored`` (BCHW), on its device and in its
    working dtype, resized to its size with antialiased bicubic interpolation (clamped to
    [0, 1], since bicubic overshoots), batch broadcast when it is 1."""
    if reference.shape[1] != restored.shape[1]:
        raise ValueError(
            f"reference has {reference.shape[1]} channels but restored has "
            f"{restored.shape[1]}; pass images with the same channels (e.g. both RGB)"
        )
    if reference.shape[0] not in (1, restored.shape[0]):
        raise ValueError(
            f"reference batch size {reference.shape[0]} does not match restored batch size "
            f"{restored.shape[0]}; pass one reference per restored image, or a single one"
        )
    matched = reference.to(device=restored.device, dtype=restored.dtype)
    if matched.shape[-2:] != restored.shape[-2:]:
        matched = F.interpolate(
            matched, size=restored.shape[-2:], mode="bicubic", align_corners=False, antialias=True
        ).clamp(0.0, 1.0)
    return matched.expand(restored.shape[0], -1, -1, -1)


def _wavelet_low_frequency_bchw(image: Tensor, levels: int) -> Tensor:
    channels = image.shape[1]
    kernel = binomial_kernel(image.dtype, image.device).expand(channels, 1, 3, 3)
    low = image
    for level in range(levels):
        # Dilation 2**level widens the blur a-trous style; replicate padding keeps the
        # border mean (a constant image stays constant).
        dilation = 2**level
        padded = F.pad(low, (dilation, dilation, dilation, dilation), mode="replicate")
        low = F.conv2d(padded, kernel, dilation=dilation, groups=channels)
    return low


def wavelet_low_frequency(
    image: Tensor, levels: int = WAVELET_LEVELS, *, channels_last: bool = False
) -> Tensor:
    """L_levels(image): ``levels`` passes of the 3x3 binomial blur with dilations 1, 2, 4, ...
    and replicate padding; same shape, dtype and device as ``image``. ``levels=5`` is the L5
    of :func:`wavelet_color_fix`."""
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    bchw = _to_bchw(image, "image", channels_last)
    low = _wavelet_low_frequency_bchw(_working(bchw), levels).to(bchw.dtype)
    return _from_bchw(low, channels_last)


def _wavelet_fix_bchw(restored: Tensor, reference: Tensor) -> Tensor:
    high = restored - _wavelet_low_frequency_bchw(restored, WAVELET_LEVELS)
    return (high + _wavelet_low_frequency_bchw(reference, WAVELET_LEVELS)).clamp(0.0, 1.0)


def _adain_fix_bchw(restored: Tensor, reference: Tensor) -> Tensor:
    var_u, mean_u = torch.var_mean(restored, dim=(2, 3), keepdim=True, correction=0)
    var_v, mean_v = torch.var_mean(reference, dim=(2, 3), keepdim=True, correction=0)
    scale = torch.sqrt(var_v + _ADAIN_EPS) / torch.sqrt(var_u + _ADAIN_EPS)
    return ((restored - mean_u) * scale + mean_v).clamp(0.0, 1.0)


def _gray_world_bchw(restored: Tensor) -> Tensor:
    channel_means = restored.mean(dim=(2, 3), keepdim=True)
    gray = channel_means.mean(dim=1, keepdim=True)
    return (restored * (gray / (channel_means + _GRAY_WORLD_EPS))).clamp(0.0, 1.0)


def _check_strength(strength: float) -> float:
    value = float(strength)
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"strength must be in [0, 1] (0 = unchanged, 1 = full fix), got {strength}"
        )
    return value


def wavelet_color_fix(
    restored: Tensor, reference: Tensor, *, channels_last: bool = False
) -> Tensor:
    """Low frequencies (colour, shading) from ``reference``, detail from ``restored``:
    y = clamp(u - L5(u) + L5(v), 0, 1), u = restored, v = reference, resized to u's size
    when it differs (antialiased bicubic, clamped to [0, 1]); L5 is
    :func:`wavelet_low_frequency`.

    The idea of StableSR's / DiffBIR's ``wavelet_color_fix``, written here from the formula.
    """
    u = _to_bchw(restored, "restored", channels_last)
    v = _to_bchw(reference, "reference", channels_last)
    work = _working(u)
    fixed = _wavelet_fix_bchw(work, _matched_reference(work, v))
    return _from_bchw(fixed.to(u.dtype), channels_last)


def adain_color_fix(
    restored: Tensor, reference: Tensor, *, channels_last: bool = False
) -> Tensor:
    """Per image and channel, shift and scale ``restored`` so its mean and (population)
    standard deviation over H, W match the resized ``reference``'s; clamped to [0, 1]."""
    u = _to_bchw(restored, "restored", channels_last)
    v = _to_bchw(reference, "reference", channels_last)
    work = _working(u)
    fixed = _adain_fix_bchw(work, _matched_reference(work, v))
    return _from_bchw(fixed.to(u.dtype), channels_last)


def gray_world_fix(restored: Tensor, strength: float, *, channels_last: bool = False) -> Tensor:
    """The AuthFace release's "minor colour fix": gray-world white balance blended in.

    Per image, each channel is scaled by (mean of the channel means) / (its mean), clamped
    to [0, 1], and mixed as (1 - strength) * restored + strength * corrected; strength in
    [0, 1], 0 returns ``restored`` unchanged (a copy), 1 equalises the channel means (up to
    the clamping).
    """
    value = _check_strength(strength)
    u = _to_bchw(restored, "restored", channels_last)
    work = _working(u)
    fixed = torch.lerp(work, _gray_world_bchw(work), value)
    return _from_bchw(fixed.to(u.dtype), channels_last)


def color_fix(
    restored: Tensor,
    reference: Tensor | None,
    method: ColorFixMethod,
    strength: float = 1.0,
    *,
    channels_last: bool = False,
) -> Tensor:
    """Apply one colour fix, blended with ``restored`` by ``strength`` in [0, 1]:
    (1 - strength) * restored + strength * fixed.

    ``method``: "wavelet" (:func:`wavelet_color_fix`), "adain" (:func:`adain_color_fix`),
    "gray_world" (:func:`gray_world_fix`; ``reference`` is not used and may be None) or
    "none" (returns ``restored`` itself). "wavelet" and "adain" need a ``reference``.
    """
    if method not in COLOR_FIX_METHODS:
        raise ValueError(f"unknown colour fix method {method!r}; use one of {COLOR_FIX_METHODS}")
    value = _check_strength(strength)
    if method == "none":
        return restored
    if method == "gray_world":
        return gray_world_fix(restored, value, channels_last=channels_last)
    if reference is None:
        raise ValueError(f"colour fix {method!r} needs the low-quality input as reference")
    u = _to_bchw(restored, "restored", channels_last)
    v = _to_bchw(reference, "reference", channels_last)
    work = _working(u)
    matched = _matched_reference(work, v)
    fix = _wavelet_fix_bchw if method == "wavelet" else _adain_fix_bchw
    fixed = fix(work, matched)
    return _from_bchw(torch.lerp(work, fixed, value).to(u.dtype), channels_last)
