"""Validation during Stage I: prompts rendered to an image grid, and a fixed-noise loss.

Rendering is plain SDXL text-to-image with the UNet under training and the base model's other
parts: unit-variance starting noise, the DDIM (eta 0) or DDPM sampler of
:mod:`authface_core.pipeline.sampling` on "leading" timesteps, classifier-free guidance against
the negative prompt when ``guidance`` > 1, SDXL time ids [S, S, 0, 0, S, S], VAE decode.

The fixed-set loss is the training objective on the first few training images with noise and
timesteps drawn once from a fixed seed: unlike the training loss (random timesteps each step) it
moves only when the model does, so it shows whether the model fits the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from authface_core.pipeline.sampling import initial_noise, make_generator, make_scheduler

from .text import collate_text

FIXED_TIMESTEPS = 5


def unet_eps(unet: Any, latents: Tensor, timesteps: Tensor, embeds: Tensor, pooled: Tensor,
             time_ids: Tensor, mask: Tensor | None) -> Tensor:
    """The UNet's prediction for a batch (any wrapper of a diffusers UNet2DConditionModel)."""
    return unet(
        latents,
        timesteps,
        encoder_hidden_states=embeds,
        encoder_attention_mask=mask,
        added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids},
    ).sample


def image_grid(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """[N, H, W, 3] uint8 images tiled row by row into one image (``columns`` default:
    ceil(sqrt(N))); empty cells are black."""
    count, height, width, channels = images.shape
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    grid = np.zeros((rows * height, columns * width, channels), dtype=images.dtype)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = image
    return grid


@torch.no_grad()
def render(
    unet: Any,
    vae: Any,
    prompts: Sequence[tuple[Tensor, Tensor]],
    negative: tuple[Tensor, Tensor] | None,
    schedule: dict[str, Any],
    sampler: str,
    steps: int,
    guidance: float,
    size: int,
    seed: int,
    device: torch.device,
) -> np.ndarray:
    """Images [P, size, size, 3] uint8 for P encoded prompts (each (embeds [L, D], pooled [P]),
    see :class:`~training.stage1.text.TextEncoder`); prompt ``i`` starts from the noise of seed
    ``seed + i``. ``negative`` is required when ``guidance`` > 1."""
    guided = guidance > 1.0
    if guided and negative is None:
        raise ValueError("guidance > 1 needs an encoded negative prompt")
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    channels = vae.config.latent_channels
    time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32, device=device)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    images = []
    for index, (embeds, pooled) in enumerate(prompts):
        rows = [(negative[0], negative[1], False), (embeds, pooled, False)] if guided else [(embeds, pooled, False)]
        text = collate_text([(e.to(device), p.to(device), cut) for e, p, cut in rows])
        scheduler = make_scheduler(sampler, schedule, steps)
        generator = make_generator(seed + index)
        latents = initial_noise(generator, (1, channels, size // factor, size // factor)).to(device)
        latents = latents * scheduler.init_noise_sigma
        step_kwargs = {"generator": generator} if sampler == "ddpm" else {"eta": 0.0}
        for timestep in scheduler.timesteps:
            batch = latents.repeat(len(rows), 1, 1, 1)
            model_input = scheduler.scale_model_input(batch, timestep)
            eps = unet_eps(unet, model_input, timestep.to(device).expand(len(rows)), text.embeds, text.pooled,
                           time_ids.expand(len(rows), -1), text.mask).float()
            if guided:
                uncond, cond = eps.chunk(2)
                eps = uncond + guidance * (cond - uncond)
            latents = scheduler.step(eps.cpu(), timestep, latents.cpu(), **step_kwargs, return_dict=False)[0]
            latents = latents.to(device)
        decoded = vae.decode((latents / vae.config.scaling_factor + shift).to(vae.dtype)).sample.float()
        image = ((decoded[0].permute(1, 2, 0) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
        images.append(image.cpu().numpy())
    return np.stack(images)


@dataclass
class FixedSet:
    """Inputs of the fixed-set loss: for each of K images, :data:`FIXED_TIMESTEPS` timesteps
    with their noise. ``latents`` [K, C, h, w] (VAE means, scaled), ``noise`` [K, T, C, h, w],
    ``timesteps`` [T] (long), ``text`` per image (embeds [L, D], pooled [P]), ``time_ids``
    [K, 6]; all on the CPU."""

    latents: Tensor
    noise: Tensor
    timesteps: Tensor
    text: list[tuple[Tensor, Tensor]]
    time_ids: Tensor


def make_fixed_set(latents: Tensor, text: list[tuple[Tensor, Tensor]], time_ids: Tensor, seed: int,
                   num_train_timesteps: int) -> FixedSet:
    """A :class:`FixedSet` with noise from ``seed`` and timesteps evenly spread over the
    schedule (the centres of :data:`FIXED_TIMESTEPS` equal bins)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((latents.shape[0], FIXED_TIMESTEPS, *latents.shape[1:]), generator=generator)
    bins = (torch.arange(FIXED_TIMESTEPS, dtype=torch.float64) + 0.5) * num_train_timesteps / FIXED_TIMESTEPS
    return FixedSet(latents.cpu(), noise, bins.long(), text, time_ids.cpu())


@torch.no_grad()
def fixed_set_loss(unet: Any, fixed: FixedSet, noise_scheduler: Any, device: torch.device) -> float:
    """Mean squared error of the UNet's prediction against the training target over the fixed
    set (one UNet pass per image, its timesteps batched)."""
    total, count = 0.0, 0
    prediction = noise_scheduler.config.prediction_type
    steps = fixed.timesteps
    for index, (embeds, pooled) in enumerate(fixed.text):
        latents = fixed.latents[index:index + 1].expand(len(steps), -1, -1, -1)
        noise = fixed.noise[index]
        noisy = noise_scheduler.add_noise(latents, noise, steps)
        target = noise if prediction == "epsilon" else noise_scheduler.get_velocity(latents, noise, steps)
        eps = unet_eps(
            unet, noisy.to(device), steps.to(device), embeds.to(device).expand(len(steps), -1, -1),
            pooled.to(device).expand(len(steps), -1), fixed.time_ids[index:index + 1].to(device).expand(len(steps), -1),
            None,
        ).float()
        total += float(torch.nn.functional.mse_loss(eps.cpu(), target.float(), reduction="sum"))
        count += target.numel()
    return total / count
