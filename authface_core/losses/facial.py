"""Time-aware latent facial feature loss of AuthFace Stage II (paper Sec. 3.2, eqs. 2-4).

Per component P in {eyes, mouth}, with ``p`` cropped from the clean latent ``z0`` and
``p_pred`` from the predicted clean latent ``z0_pred``:

    L_P = w(t) * (lambda_adv * adv(D_P(p_pred)) + lambda_style * style(psi(p_pred), psi(p)))

summed over the components and averaged over the batch. As in GFPGAN (Wang et al. 2021, whose
component losses the paper adopts; weights from its ``options/train_gfpgan_v1.yml``):
``adv`` is the non-saturating BCE ``-log sigmoid(D(p_pred))`` (``gan_type: vanilla``,
``loss_weight: 1``), and ``style`` is ``0.5 * L1(Gram(level 1)) + L1(Gram(level 2))`` of the
discriminator's features with ``comp_style_weight: 200``. The paper writes the adversarial
term as the saturating ``log(1 - D)``; the non-saturating form is what GFPGAN trains with.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from authface_core.losses.time_weight import TimeWeighting

COMPONENTS: tuple[str, ...] = ("eyes", "mouth")

# Crop sizes in latent px. At 512x512 input, faces.masks.component_boxes gives square eye
# boxes of 7.7-10.7 latent px (median 9.3) and mouth boxes of 14.0-19.9 (median 16.5). Crops
# larger than every box mean roi_align only upsamples (bilinear, no latent pixel skipped); the
# 2:3 eye:mouth ratio is GFPGAN's (80 and 120 px crops of 512 px faces); and after the
# discriminator's two stride-2 stages the level-2 features keep 4x4 (eyes) and 6x6 (mouth)
# positions for the Gram matrix.
DEFAULT_OUTPUT_SIZES: dict[str, int] = {"eyes": 16, "mouth": 24}
LATENT_SCALE = 1.0 / 8.0  # SDXL VAE downsampling factor
DEFAULT_LAMBDA_ADV = 1.0  # GFPGAN gan_component_opt.loss_weight
DEFAULT_LAMBDA_STYLE = 200.0  # GFPGAN comp_style_weight
# GFPGAN's _comp_style: level-1 Gram difference weighted 0.5, level 2 weighted 1.
STYLE_LEVEL_WEIGHTS: tuple[float, float] = (0.5, 1.0)


def predict_x0(
    z_t: torch.Tensor, eps_pred: torch.Tensor, alphas_cumprod_t: torch.Tensor
) -> torch.Tensor:
    """Clean latent from a noise prediction: ``(z_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``.

    Paper eq. 2 (the DDIM closed form; its ``beta_prod`` is ``1 - alpha_prod``).

    Args:
        z_t: noisy latents (B, ...) as made by ``DDPMScheduler.add_noise``.
        eps_pred: predicted noise, same shape as ``z_t``.
        alphas_cumprod_t: ``abar`` at each sample's timestep, shape (B,), (B, 1, 1, 1) or a
            single value, values in (0, 1] (``scheduler.alphas_cumprod[timesteps]``).

    Returns:
        ``z0_pred``, same shape as ``z_t``, in float32 (float64 if an input is float64):
        ``1 / sqrt(abar)`` reaches ~14.6 at t = 999 for SDXL's schedule and would amplify
        half-precision rounding. Differentiable in ``z_t`` and ``eps_pred``.

    Raises:
        ValueError: shapes disagree or ``abar`` is outside (0, 1].
    """
    if z_t.shape != eps_pred.shape:
        raise ValueError(
            f"z_t and eps_pred must have the same shape, got {tuple(z_t.shape)} and "
            f"{tuple(eps_pred.shape)}"
        )
    batch = z_t.shape[0]
    abar = torch.as_tensor(alphas_cumprod_t)
    if abar.numel() not in (1, batch):
        raise ValueError(
            f"alphas_cumprod_t needs 1 or {batch} values (one per sample), got shape "
            f"{tuple(abar.shape)}"
        )
    if bool((abar <= 0).any()) or bool((abar > 1).any()):
        raise ValueError("alphas_cumprod_t must lie in (0, 1]; index scheduler.alphas_cumprod")
    dtype = torch.promote_types(torch.promote_types(z_t.dtype, eps_pred.dtype), torch.float32)
    if abar.is_floating_point():
        dtype = torch.promote_types(dtype, abar.dtype)
    abar = abar.to(device=z_t.device, dtype=dtype).reshape(-1, *([1] * (z_t.ndim - 1)))
    return (z_t.to(dtype) - torch.sqrt(1.0 - abar) * eps_pred.to(dtype)) / torch.sqrt(abar)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix ``F F^T / (C H W)`` per sample (Gatys et al. 2016; GFPGAN's normalisation).

    Args:
        features: (B, C, H, W).

    Returns:
        (B, C, C), dtype of ``features``.
    """
    if features.ndim != 4:
        raise ValueError(f"expected features of shape (B, C, H, W), got {tuple(features.shape)}")
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def _size_pair(size: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or min(pair) < 4:
        raise ValueError(f"output size of {name!r} must be an int or (h, w) pair >= 4, got {size}")
    return (int(pair[0]), int(pair[1]))


def crop_components(
    latents: torch.Tensor,
    boxes: torch.Tensor | np.ndarray,
    spatial_scale: float = LATENT_SCALE,
    output_sizes: Mapping[str, int | tuple[int, int]] = DEFAULT_OUTPUT_SIZES,
    flip_right_eye: bool = True,
) -> dict[str, torch.Tensor]:
    """Eye and mouth patches of a latent batch, by ``torchvision.ops.roi_align``.

    Args:
        latents: (B, C, h, w) latents of images of size (h / spatial_scale, w / spatial_scale).
        boxes: (B, 3, 4) tensor or array, per sample: image-left eye, image-right eye, mouth, each
            (x0, y0, x1, y1) in IMAGE pixels, exactly as ``faces.masks.component_boxes``
            returns them with its default ``scale=1``: pixel-CORNER coordinates (image pixel i
            covers [i, i + 1); landmarks + 0.5), the convention of ``roi_align(aligned=True)``.
            Latent cell j then covers image corner coordinates [8j, 8j + 8).
        spatial_scale: latent px per image px (1/8 for SDXL).
        output_sizes: crop size per component, int or (h, w); keys ``"eyes"`` and ``"mouth"``.
        flip_right_eye: mirror the image-right eye horizontally, so both eyes reach the single
            shared eye discriminator with the same orientation (GFPGAN instead trains one
            discriminator per eye). The VAE is not flip-equivariant, so the mirrored patch is
            not the latent of a mirrored eye; real and predicted patches are mirrored alike, so
            the comparison stays fair.

    Returns:
        ``{"eyes": (2B, C, He, We), "mouth": (B, C, Hm, Wm)}``, dtype of ``latents``; row
        ``2b`` of ``"eyes"`` is sample ``b``'s image-left eye, row ``2b + 1`` its right eye.
        Differentiable in ``latents``. Parts of a box outside the latent read as 0.

    Raises:
        ValueError: wrong shapes, non-finite or empty boxes (x1 <= x0 or y1 <= y0), missing
            output sizes.
    """
    from torchvision.ops import roi_align

    if latents.ndim != 4:
        raise ValueError(f"expected latents of shape (B, C, h, w), got {tuple(latents.shape)}")
    batch = latents.shape[0]
    boxes = torch.as_tensor(boxes)
    if tuple(boxes.shape) != (batch, 3, 4):
        raise ValueError(
            f"boxes must have shape ({batch}, 3, 4) (left eye, right eye, mouth as x0, y0, x1, "
            f"y1 per sample), got {tuple(boxes.shape)}"
        )
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError("boxes contain NaN or inf: a face without landmarks cannot be cropped")
    empty = (boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1])
    if bool(empty.any()):
        raise ValueError("every box needs x1 > x0 and y1 > y0; got an empty box")
    missing = [name for name in COMPONENTS if name not in output_sizes]
    if missing:
        raise ValueError(f"output_sizes lacks {missing}; give sizes for {list(COMPONENTS)}")

    boxes = boxes.to(device=latents.device, dtype=latents.dtype)
    index = torch.arange(batch, device=latents.device, dtype=latents.dtype)

    def rois(parts: slice) -> torch.Tensor:
        sel = boxes[:, parts]  # (B, k, 4)
        idx = index[:, None, None].expand(batch, sel.shape[1], 1)
        return torch.cat([idx, sel], dim=-1).reshape(-1, 5)

    eyes = roi_align(
        latents,
        rois(slice(0, 2)),
        output_size=_size_pair(output_sizes["eyes"], "eyes"),
        spatial_scale=spatial_scale,
        aligned=True,
    )
    if flip_right_eye:
        eyes = torch.cat([eyes[0::2, None], eyes[1::2, None].flip(-1)], dim=1).flatten(0, 1)
    mouth = roi_align(
        latents,
        rois(slice(2, 3)),
        output_size=_size_pair(output_sizes["mouth"], "mouth"),
        spatial_scale=spatial_scale,
        aligned=True,
    )
    return {"eyes": eyes, "mouth": mouth}


def _detached_call(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    # Parameters enter as detached leaves: gradients reach x but never the module's .grad.
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, (x,))


def _per_sample(values: torch.Tensor, batch: int) -> torch.Tensor:
    """Mean of per-patch values (N,) over the patches of each sample -> (batch,)."""
    return values.reshape(batch, -1).mean(dim=1)


def style_loss(fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]) -> torch.Tensor:
    """Per-patch ``0.5 * mean|Gram(f1) - Gram(r1)| + mean|Gram(f2) - Gram(r2)|``, shape (N,).

    ``fake_feats``/``real_feats``: the two feature levels of ``ComponentDiscriminator``.
    """
    if len(fake_feats) != len(STYLE_LEVEL_WEIGHTS) or len(real_feats) != len(STYLE_LEVEL_WEIGHTS):
        raise ValueError(f"expected {len(STYLE_LEVEL_WEIGHTS)} feature levels per patch")
    total = torch.zeros((), device=fake_feats[0].device, dtype=fake_feats[0].dtype)
    for weight, fake, real in zip(STYLE_LEVEL_WEIGHTS, fake_feats, real_feats):
        diff = (gram_matrix(fake) - gram_matrix(real)).abs()
        total = total + weight * diff.flatten(1).mean(dim=1)
    return total


def generator_adversarial_loss(logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-log sigmoid(logits)`` averaged per patch, shape (N,)."""
    return F.softplus(-logits).flatten(1).mean(dim=1)


class FacialComponentLoss:
    """Generator-side time-aware latent facial feature loss (paper eq. 4).

    Args:
        weighting: per-sample time weight (``TimeWeighting("none")`` switches the loss off).
        lambda_adv: weight of the adversarial term (GFPGAN: 1).
        lambda_style: weight of the Gram style term (GFPGAN: 200).
        output_sizes, flip_right_eye, spatial_scale: passed to ``crop_components``.

    Call with ``(discriminators, z0_pred, z0, boxes, t)``:
        discriminators: ``{"eyes": D_eyes, "mouth": D_mouth}``, modules returning
            ``(logits, [level1, level2])`` like ``ComponentDiscriminator``. Pass the bare
            modules, not DDP wrappers: they run with detached parameters here, so this loss
            never writes gradients into them, whatever their ``requires_grad``.
        z0_pred: (B, C, h, w) predicted clean latents (``predict_x0``); gradients flow to it.
        z0: (B, C, h, w) clean latents of the ground truth (treated as data, no gradient).
        boxes: (B, 3, 4) ``faces.masks.component_boxes`` of the ground-truth landmarks, in
            image pixels (corner convention), see ``crop_components``.
        t: (B,) normalised times ``timestep / 1000`` in [0, 1].

    Returns a dict of 0-dim tensors: ``"total"`` = batch mean of
    ``w(t_b) * sum_P (lambda_adv * adv_Pb + lambda_style * style_Pb)`` (differentiable in
    ``z0_pred``); for logging, ``"<P>_adv"`` and ``"<P>_style"`` = batch means of the
    lambda-scaled terms before time weighting, and ``"weight"`` = mean ``w(t)``. With
    weighting ``"none"`` every entry is 0 and no discriminator runs.
    """

    def __init__(
        self,
        weighting: TimeWeighting = TimeWeighting(),
        lambda_adv: float = DEFAULT_LAMBDA_ADV,
        lambda_style: float = DEFAULT_LAMBDA_STYLE,
        output_sizes: Mapping[str, int | tuple[int, int]] = DEFAULT_OUTPUT_SIZES,
        flip_right_eye: bool = True,
        spatial_scale: float = LATENT_SCALE,
    ) -> None:
        if lambda_adv < 0 or lambda_style < 0:
            raise ValueError(
                f"lambda_adv and lambda_style must be >= 0, got {lambda_adv}, {lambda_style}"
            )
        self.weighting = weighting
        self.lambda_adv = float(lambda_adv)
        self.lambda_style = float(lambda_style)
        self.output_sizes = dict(output_sizes)
        self.flip_right_eye = flip_right_eye
        self.spatial_scale = spatial_scale

    def crop(self, latents: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        """``crop_components`` with this loss's settings (use it for the discriminator step)."""
        return crop_components(
            latents, boxes, self.spatial_scale, self.output_sizes, self.flip_right_eye
        )

    def __call__(
        self,
        discriminators: Mapping[str, nn.Module],
        z0_pred: torch.Tensor,
        z0: torch.Tensor,
        boxes: torch.Tensor,
        t: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        if z0_pred.shape != z0.shape:
            raise ValueError(
                f"z0_pred and z0 must have the same shape, got {tuple(z0_pred.shape)} and "
                f"{tuple(z0.shape)}"
            )
        batch = z0_pred.shape[0]
        if tuple(t.shape) != (batch,):
            raise ValueError(
                f"t must have shape ({batch},), one time per sample, got {tuple(t.shape)}"
            )
        zero = z0_pred.new_zeros((), dtype=torch.promote_types(z0_pred.dtype, torch.float32))
        out: dict[str, torch.Tensor] = {}
        if not self.weighting.enabled:
            for name in COMPONENTS:
                out[f"{name}_adv"] = zero
                out[f"{name}_style"] = zero
            out["weight"] = zero
            out["total"] = zero
            return out
        missing = [name for name in COMPONENTS if name not in discriminators]
        if missing:
            raise ValueError(
                f"discriminators lacks {missing}; pass one per component {list(COMPONENTS)}"
            )

        weight = self.weighting(t.to(device=z0_pred.device))
        fake = self.crop(z0_pred, boxes)
        with torch.no_grad():
            real = self.crop(z0.detach(), boxes)
        per_sample = torch.zeros(batch, device=z0_pred.device, dtype=zero.dtype)
        for name in COMPONENTS:
            disc = discriminators[name]
            logits, fake_feats = _detached_call(disc, fake[name])
            with torch.no_grad():
                _, real_feats = disc(real[name])
            adv = self.lambda_adv * _per_sample(generator_adversarial_loss(logits), batch)
            style = self.lambda_style * _per_sample(style_loss(fake_feats, real_feats), batch)
            out[f"{name}_adv"] = adv.detach().mean()
            out[f"{name}_style"] = style.detach().mean()
            per_sample = per_sample + adv + style
        out["weight"] = weight.detach().mean().to(zero.dtype)
        out["total"] = (weight.to(per_sample.dtype) * per_sample).mean()
        return out


def discriminator_loss(
    discriminator: nn.Module, real_patches: torch.Tensor, fake_patches: torch.Tensor
) -> torch.Tensor:
    """Discriminator-step BCE: ``-log sigmoid(D(real)) - log(1 - sigmoid(D(fake)))``, means.

    GFPGAN's component discriminator loss (``cri_component`` real + fake). ``fake_patches``
    is detached here, so this loss gives no gradient to the generator; ``real_patches``
    should be crops of the clean latents. Returns a 0-dim tensor.
    """
    if real_patches.shape[1:] != fake_patches.shape[1:]:
        raise ValueError(
            f"real and fake patches must share (C, H, W), got {tuple(real_patches.shape)} and "
            f"{tuple(fake_patches.shape)}"
        )
    real_logits, _ = discriminator(real_patches)
    fake_logits, _ = discriminator(fake_patches.detach())
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
