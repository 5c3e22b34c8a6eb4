"""Time-aware latent facial feature loss: x0 prediction, Gram, crops, gradient routing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from authface_core.losses.discriminator import ComponentDiscriminator
from authface_core.losses.facial import (
    DEFAULT_OUTPUT_SIZES,
    FacialComponentLoss,
    crop_components,
    discriminator_loss,
    gram_matrix,
    predict_x0,
)
from authface_core.losses.time_weight import TimeWeighting, logit_normal_weight


def _sdxl_scheduler():
    from diffusers import DDPMScheduler

    # SDXL's training schedule (its scheduler_config.json): scaled_linear 0.00085 .. 0.012.
    return DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )


def _image_box(row0: int, col0: int, rows: int, cols: int) -> list[float]:
    """Image-pixel box in component_boxes' corner convention (pixel i covers [i, i + 1))
    covering exactly the latent cells [row0, row0 + rows) x [col0, col0 + cols): cell j holds
    image pixels 8j .. 8j + 7, i.e. corner coordinates [8j, 8j + 8)."""
    return [8.0 * col0, 8.0 * row0, 8.0 * (col0 + cols), 8.0 * (row0 + rows)]


def _face_boxes(batch: int) -> torch.Tensor:
    """Plausible 512x512 face boxes: eyes ~9 latent px wide, mouth ~14 (docs/method.md)."""
    one = [
        _image_box(26, 14, 7, 10),
        _image_box(26, 39, 7, 10),
        _image_box(42, 25, 9, 14),
    ]
    return torch.tensor([one] * batch, dtype=torch.float32)


def _discriminators(seed: int = 0) -> dict[str, ComponentDiscriminator]:
    torch.manual_seed(seed)
    return {"eyes": ComponentDiscriminator(), "mouth": ComponentDiscriminator()}


# ---------------------------------------------------------------- predict_x0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_predict_x0_inverts_ddpm_add_noise(dtype: torch.dtype) -> None:
    scheduler = _sdxl_scheduler()
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(6, 4, 16, 16, generator=gen, dtype=dtype)
    noise = torch.randn(6, 4, 16, 16, generator=gen, dtype=dtype)
    timesteps = torch.tensor([0, 1, 250, 500, 900, 999])
    z_t = scheduler.add_noise(z0, noise, timesteps)
    assert not torch.allclose(z_t, z0, atol=1e-3)
    z0_pred = predict_x0(z_t, noise, scheduler.alphas_cumprod[timesteps])
    assert z0_pred.dtype == dtype
    torch.testing.assert_close(z0_pred, z0, atol=1e-5, rtol=0)
    # A wrong noise estimate must not give z0 back.
    wrong = predict_x0(z_t, torch.zeros_like(noise), scheduler.alphas_cumprod[timesteps])
    assert (wrong - z0).abs().max() > 0.1


def test_predict_x0_keeps_gradient_and_checks_inputs() -> None:
    eps = torch.randn(2, 4, 8, 8, requires_grad=True)
    z_t = torch.randn(2, 4, 8, 8)
    abar = torch.tensor([0.9, 0.1])
    predict_x0(z_t, eps, abar).sum().backward()
    # d z0 / d eps = -sqrt(1 - abar) / sqrt(abar), per sample.
    expected = -torch.sqrt(1 - abar) / torch.sqrt(abar)
    torch.testing.assert_close(eps.grad[:, 0, 0, 0], expected)
    with pytest.raises(ValueError, match="same shape"):
        predict_x0(z_t, eps[:1], abar)
    with pytest.raises(ValueError, match="one per sample"):
        predict_x0(z_t, eps, torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        predict_x0(z_t, eps, torch.tensor([0.0, 0.5]))


# ---------------------------------------------------------------- Gram


def test_gram_of_ones_is_one_over_c() -> None:
    # Every entry of F F^T is sum_{hw} 1 * 1 = H W; divided by C H W gives 1 / C.
    c, h, w = 8, 5, 3
    g = gram_matrix(torch.ones(2, c, h, w))
    assert g.shape == (2, c, c)
    torch.testing.assert_close(g, torch.full((2, c, c), 1.0 / c))


def test_gram_matches_explicit_sum() -> None:
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    g = gram_matrix(x)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                expected = (x[b, i] * x[b, j]).sum() / (3 * 4 * 5)
                assert abs(float(g[b, i, j] - expected)) < 1e-12
    torch.testing.assert_close(g, g.transpose(1, 2))


# ---------------------------------------------------------------- crops


def test_crop_returns_the_pattern_under_each_box() -> None:
    gen = torch.Generator().manual_seed(1)
    latents = torch.zeros(2, 4, 64, 64)
    cells = {  # sample -> (row0, col0, size) of left eye, right eye, mouth
        0: [(20, 10, 8), (20, 40, 8), (40, 26, 12)],
        1: [(18, 12, 8), (19, 43, 8), (44, 20, 12)],
    }
    patterns: dict[tuple[int, int], torch.Tensor] = {}
    boxes = torch.zeros(2, 3, 4)
    for b, parts in cells.items():
        for k, (r, c, n) in enumerate(parts):
            pattern = torch.randn(4, n, n, generator=gen)
            latents[b, :, r : r + n, c : c + n] = pattern
            patterns[(b, k)] = pattern
            boxes[b, k] = torch.tensor(_image_box(r, c, n, n))
    sizes = {"eyes": 8, "mouth": 12}

    plain = crop_components(latents, boxes, output_sizes=sizes, flip_right_eye=False)
    assert plain["eyes"].shape == (4, 4, 8, 8) and plain["mouth"].shape == (2, 4, 12, 12)
    for b in range(2):
        torch.testing.assert_close(plain["eyes"][2 * b], patterns[(b, 0)])
        torch.testing.assert_close(plain["eyes"][2 * b + 1], patterns[(b, 1)])
        torch.testing.assert_close(plain["mouth"][b], patterns[(b, 2)])

    flipped = crop_components(latents, boxes, output_sizes=sizes, flip_right_eye=True)
    for b in range(2):
        torch.testing.assert_close(flipped["eyes"][2 * b], patterns[(b, 0)])
        torch.testing.assert_close(flipped["eyes"][2 * b + 1], patterns[(b, 1)].flip(-1))

    # Half a cell off (4 image px) the crop is no longer the pattern: the box is honoured
    # at sub-latent precision, not rounded to cells.
    shifted = crop_components(latents, boxes + torch.tensor([4.0, 0.0, 4.0, 0.0]), output_sizes=sizes)
    assert not torch.allclose(shifted["mouth"][0], patterns[(0, 2)], atol=1e-3)


def test_crops_of_component_boxes_centre_on_the_landmarks() -> None:
    # Chain landmarks -> faces.masks.component_boxes -> crop_components on a latent whose
    # channels hold the image x and y (pixel-centre convention) of each cell's centre:
    # cell j spans image pixels 8j .. 8j + 7, centre 8j + 3.5. Bilinear sampling is exact on
    # a linear ramp, so a crop's mean is the image position of its box centre, which
    # component_boxes puts at the centre of the landmark group's bounding box. Any
    # half-pixel convention mismatch between the two modules shows up as a 0.5 px offset.
    from authface_core.faces.masks import component_boxes
    from authface_core.faces.types import LEFT_EYE_68, MOUTH_68, RIGHT_EYE_68

    rng = np.random.default_rng(5)
    lm = rng.uniform([150, 150], [360, 420], size=(68, 2))  # jaw, brows, nose: anywhere on the face
    groups = [
        (LEFT_EYE_68, (190.3, 231.7), (22, 8)),
        (RIGHT_EYE_68, (322.9, 229.1), (22, 8)),
        (MOUTH_68, (257.6, 371.2), (50, 18)),
    ]
    for idx, centre, spread in groups:
        low, high = np.subtract(centre, spread), np.add(centre, spread)
        lm[list(idx)] = rng.uniform(low, high, size=(len(idx), 2))
    shifts = np.array([[0.0, 0.0], [8.25, -4.5]])  # second sample: the face moved
    boxes = torch.from_numpy(component_boxes(np.stack([lm + shift for shift in shifts])))

    cells = torch.arange(64, dtype=torch.float32) * 8 + 3.5
    latents = torch.zeros(2, 4, 64, 64)
    latents[:, 0] = cells[None, :]  # x varies along columns
    latents[:, 1] = cells[:, None]  # y along rows
    crops = crop_components(latents, boxes)
    for b in range(2):
        for k, (idx, _, _) in enumerate(groups):
            pts = lm[list(idx)] + shifts[b]
            expected = (pts.min(axis=0) + pts.max(axis=0)) / 2
            patch = crops["eyes"][2 * b + k] if k < 2 else crops["mouth"][b]
            assert abs(float(patch[0].mean()) - expected[0]) < 1e-3
            assert abs(float(patch[1].mean()) - expected[1]) < 1e-3


def test_crop_default_sizes_resample_a_constant_region_to_a_constant() -> None:
    latents = torch.zeros(1, 4, 64, 64)
    latents[0, :, 20:36, 10:26] = torch.arange(1.0, 5.0)[:, None, None]  # 16x16 block per channel
    box = torch.tensor(_image_box(22, 12, 9, 9))  # inside the block
    boxes = torch.stack([box, box, box])[None]
    crops = crop_components(latents, boxes)
    assert crops["eyes"].shape == (2, 4, DEFAULT_OUTPUT_SIZES["eyes"], DEFAULT_OUTPUT_SIZES["eyes"])
    assert crops["mouth"].shape == (1, 4, DEFAULT_OUTPUT_SIZES["mouth"], DEFAULT_OUTPUT_SIZES["mouth"])
    for ch in range(4):
        torch.testing.assert_close(crops["mouth"][0, ch], torch.full((24, 24), ch + 1.0))


def test_crop_rejects_bad_boxes() -> None:
    latents = torch.zeros(2, 4, 64, 64)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        crop_components(latents, torch.zeros(2, 2, 4))
    boxes = _face_boxes(2)
    boxes[1, 2, 2] = boxes[1, 2, 0]
    with pytest.raises(ValueError, match="empty box"):
        crop_components(latents, boxes)
    boxes = _face_boxes(2)
    boxes[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        crop_components(latents, boxes)


# ---------------------------------------------------------------- discriminator


def test_discriminator_shapes() -> None:
    disc = ComponentDiscriminator(in_channels=4, base=32)
    for size in (16, 24):
        logits, (f1, f2) = disc(torch.randn(3, 4, size, size))
        assert logits.shape == (3, 1, size // 4, size // 4)
        assert f1.shape == (3, 64, size // 2, size // 2)
        assert f2.shape == (3, 128, size // 4, size // 4)
    with pytest.raises(ValueError, match="4, H, W"):
        disc(torch.randn(1, 3, 16, 16))


# ---------------------------------------------------------------- loss terms and weighting


def test_loss_terms_follow_their_definitions() -> None:
    discs = _discriminators()
    z0 = torch.randn(2, 4, 64, 64)
    boxes = _face_boxes(2)
    t = torch.tensor([0.3, 0.6])
    loss = FacialComponentLoss(TimeWeighting("constant"))
    same = loss(discs, z0.clone(), z0, boxes, t)
    # Identical patches: identical features, so the Gram (style) terms vanish exactly.
    assert float(same["eyes_style"]) == 0.0 and float(same["mouth_style"]) == 0.0
    # The adversarial term is BCE against "real" on every patch logit (GFPGAN's vanilla GAN).
    crops = crop_components(z0, boxes)
    for name in ("eyes", "mouth"):
        logits, _ = discs[name](crops[name])
        expected = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        torch.testing.assert_close(same[f"{name}_adv"], expected)
    other = loss(discs, z0 + 0.5 * torch.randn_like(z0), z0, boxes, t)
    assert float(other["eyes_style"]) > 0 and float(other["mouth_style"]) > 0
    parts = sum(other[f"{n}_{k}"] for n in ("eyes", "mouth") for k in ("adv", "style"))
    torch.testing.assert_close(other["total"], parts)  # constant weight 1


def test_time_weight_is_applied_per_sample() -> None:
    discs = _discriminators()
    gen = torch.Generator().manual_seed(3)
    z0 = torch.randn(2, 4, 64, 64, generator=gen)
    z0_pred = z0 + torch.randn(2, 4, 64, 64, generator=gen)
    boxes = _face_boxes(2)
    t = torch.tensor([0.05, 0.3])
    weighted = FacialComponentLoss(TimeWeighting("logit_normal"))(discs, z0_pred, z0, boxes, t)
    constant = FacialComponentLoss(TimeWeighting("constant"))
    single = [
        constant(discs, z0_pred[i : i + 1], z0[i : i + 1], boxes[i : i + 1], t[i : i + 1])["total"]
        for i in range(2)
    ]
    w = logit_normal_weight(t)
    assert float(w[1]) > 2 * float(w[0])  # the two samples really get different weights
    torch.testing.assert_close(weighted["total"], (w[0] * single[0] + w[1] * single[1]) / 2)
    torch.testing.assert_close(weighted["weight"], w.mean())


def test_none_weighting_skips_the_discriminators() -> None:
    discs = _discriminators()
    calls = []
    for disc in discs.values():
        disc.register_forward_hook(lambda *_: calls.append(1))
    z0 = torch.randn(1, 4, 64, 64)
    z0_pred = torch.randn(1, 4, 64, 64, requires_grad=True)
    out = FacialComponentLoss(TimeWeighting("none"))(discs, z0_pred, z0, _face_boxes(1), torch.tensor([0.3]))
    assert float(out["total"]) == 0.0 and not calls
    FacialComponentLoss(TimeWeighting("constant"))(discs, z0_pred, z0, _face_boxes(1), torch.tensor([0.3]))
    assert calls  # the hook does fire when the loss is on


# ---------------------------------------------------------------- gradient routing


class _TinyDenoiser(nn.Module):
    """Frozen 'UNet' plus trainable 'ControlNet' residual: the Stage II split in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.unet = nn.Conv2d(4, 4, 3, padding=1)
        self.controlnet = nn.Conv2d(7, 4, 3, padding=1)
        self.unet.requires_grad_(False)

    def forward(self, z_t: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
        return self.unet(z_t) + self.controlnet(torch.cat([z_t, hint], dim=1))


def test_gradient_routing_between_generator_and_discriminators() -> None:
    torch.manual_seed(0)
    scheduler = _sdxl_scheduler()
    model = _TinyDenoiser()
    discs = _discriminators(1)
    opt_g = torch.optim.AdamW(model.controlnet.parameters(), lr=1e-3)
    opt_d = {n: torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.9, 0.99)) for n, d in discs.items()}
    loss_fn = FacialComponentLoss()

    z0 = torch.randn(2, 4, 64, 64)
    hint = torch.rand(2, 3, 64, 64)
    boxes = _face_boxes(2)
    timesteps = torch.tensor([280, 500])
    noise = torch.randn_like(z0)
    z_t = scheduler.add_noise(z0, noise, timesteps)

    # Generator step.
    d_before = {n: [p.detach().clone() for p in d.parameters()] for n, d in discs.items()}
    eps = model(z_t, hint)
    z0_pred = predict_x0(z_t, eps, scheduler.alphas_cumprod[timesteps])
    out = loss_fn(discs, z0_pred, z0, boxes, timesteps / 1000)
    (F.mse_loss(eps, noise) + out["total"]).backward()
    assert model.controlnet.weight.grad is not None and model.controlnet.weight.grad.abs().sum() > 0
    assert model.unet.weight.grad is None
    for d in discs.values():
        assert all(p.grad is None for p in d.parameters())
        assert all(p.requires_grad for p in d.parameters())  # left as found
    # The facial term alone reaches the ControlNet too, not only through the noise loss.
    g_facial = torch.autograd.grad(
        loss_fn(discs, predict_x0(z_t, model(z_t, hint), scheduler.alphas_cumprod[timesteps]),
                z0, boxes, timesteps / 1000)["total"],
        model.controlnet.weight,
    )[0]
    assert g_facial.abs().sum() > 0
    c_before = model.controlnet.weight.detach().clone()
    opt_g.step()
    assert not torch.equal(model.controlnet.weight, c_before)
    for n, d in discs.items():
        assert all(torch.equal(p, q) for p, q in zip(d.parameters(), d_before[n]))

    # Discriminator step on the same (now stale, detached inside) fakes.
    opt_g.zero_grad(set_to_none=True)
    real = loss_fn.crop(z0, boxes)
    fake = loss_fn.crop(z0_pred, boxes)
    assert fake["eyes"].requires_grad  # the fakes still hang on the generator's graph
    l_d = sum(discriminator_loss(discs[n], real[n], fake[n]) for n in discs)
    l_d.backward()
    assert model.controlnet.weight.grad is None
    for n, d in discs.items():
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
        opt_d[n].step()
        assert not all(torch.equal(p, q) for p, q in zip(d.parameters(), d_before[n]))


def test_discriminator_loss_is_the_bce_of_real_and_fake() -> None:
    disc = ComponentDiscriminator()
    real = torch.randn(3, 4, 16, 16)
    fake = torch.randn(3, 4, 16, 16)
    rl, _ = disc(real)
    fl, _ = disc(fake)
    expected = F.binary_cross_entropy_with_logits(rl, torch.ones_like(rl))
    expected = expected + F.binary_cross_entropy_with_logits(fl, torch.zeros_like(fl))
    torch.testing.assert_close(discriminator_loss(disc, real, fake), expected)
