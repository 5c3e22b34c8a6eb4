"""One Stage II iteration: the ControlNet update on L_noise + L_facial, then the discriminator update.

Paper Sec. 3.2, eqs. 1-4; docs/method.md. Per micro-batch of HQ faces ``x``, LQ hints ``c``
and eye/mouth boxes:

    z0 = VAE(x) * scaling, t ~ U{0..T-1}, eps ~ N(0, I), z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps
    eps_pred = UNet(z_t, t, [""], residuals = ControlNet(z_t, t, [""], c))
    L_noise = mean (eps - eps_pred)^2
    z0_pred = (z_t - sqrt(1 - abar_t) eps_pred) / sqrt(abar_t)
    L_facial = FacialComponentLoss(D, z0_pred, z0, boxes, t / T)    (0 with time weighting "none")

The ControlNet step back-propagates L_noise + L_facial into the ControlNet only: the UNet is
frozen (no parameter requires grad; gradients pass through its activations to the residuals) and
the discriminators run with detached parameters inside ``FacialComponentLoss``. The discriminator
step then trains D_eyes and D_mouth on crops of ``z0`` (real) and of the detached ``z0_pred``
(fake) with GFPGAN's BCE, after the ControlNet step, every iteration.

The discriminators are never wrapped by accelerate: they are tiny, must run with detached
parameters in the ControlNet step, and under DDP or FSDP alike their gradients are averaged over
processes here (:func:`average_gradients`) before their optimizer steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from authface_core.losses.facial import COMPONENTS, FacialComponentLoss, discriminator_loss, predict_x0
from authface_core.losses.time_weight import timesteps_to_t


@dataclass
class StepInputs:
    """One micro-batch on the device, ready for both updates (no tensor requires grad).

    ``z0``/``noise``/``z_t``: (B, 4, R/8, R/8) float32; ``timesteps``: (B,) int64 in [0, T);
    ``t``: (B,) float32 ``timesteps / T``; ``hint``: (B, 3, R, R) LQ in [0, 1];
    ``boxes``: (B, 3, 4) image-pixel component boxes."""

    z0: Tensor
    noise: Tensor
    timesteps: Tensor
    t: Tensor
    z_t: Tensor
    hint: Tensor
    boxes: Tensor


@dataclass
class GeneratorOutput:
    """The ControlNet step's loss ``total`` = ``noise`` + ``facial`` (all three differentiable),
    its detached terms for logging and the predicted clean latents (detached, for the
    discriminator step)."""

    total: Tensor
    noise: Tensor
    facial: Tensor
    terms: dict[str, Tensor]
    z0_pred: Tensor


class Stage2Objective:
    """Losses of both updates for fixed frozen parts and conditioning.

    Args:
        unet: frozen SDXL ``UNet2DConditionModel`` (any dtype; its outputs are used in float32).
        vae: frozen ``AutoencoderKL`` (float32).
        controlnet: the trained ``ControlNetModel`` (possibly wrapped by accelerate).
        discriminators: ``{"eyes": D, "mouth": D}`` bare modules (see the module docstring).
        alphas_cumprod: (T,) float32 ``abar`` of the noise schedule.
        prompt_embeds: (1, 77, C) encoded empty prompt; ``pooled``: (1, P) its pooled vector.
        resolution: training side in pixels (sets the SDXL time ids [R, R, 0, 0, R, R]).
        facial: the generator-side facial loss; its ``weighting`` switches L_facial off ("none").
    """

    def __init__(self, unet: Any, vae: Any, controlnet: nn.Module, discriminators: Mapping[str, nn.Module],
                 alphas_cumprod: Tensor, prompt_embeds: Tensor, pooled: Tensor, resolution: int,
                 facial: FacialComponentLoss) -> None:
        missing = [name for name in COMPONENTS if name not in discriminators]
        if missing:
            raise ValueError(f"discriminators lacks {missing}; pass one per component {list(COMPONENTS)}")
        self.unet = unet
        self.vae = vae
        self.controlnet = controlnet
        self.discriminators = discriminators
        self.alphas_cumprod = alphas_cumprod.float().to(prompt_embeds.device)
        self.prompt_embeds = prompt_embeds
        self.pooled = pooled
        self.time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], dtype=torch.float32,
                                     device=prompt_embeds.device)
        self.facial = facial
        self.num_train_timesteps = int(alphas_cumprod.shape[0])

    @property
    def device(self) -> torch.device:
        return self.prompt_embeds.device

    @torch.no_grad()
    def prepare(self, batch: Mapping[str, Tensor], generator: torch.Generator) -> StepInputs:
        """Encode the HQ faces and draw ``t``, ``eps`` (and the VAE's posterior sample) from
        ``generator`` (on :attr:`device`), so that a micro-batch's randomness depends only on the
        generator's seed. ``batch``: the dataset's ``hq``, ``lq``, ``boxes``."""
        device = self.device
        hq = batch["hq"].to(device, torch.float32)
        posterior = self.vae.encode(hq * 2.0 - 1.0).latent_dist
        z0 = posterior.sample(generator=generator) * self.vae.config.scaling_factor
        count = z0.shape[0]
        timesteps = torch.randint(0, self.num_train_timesteps, (count,), generator=generator, device=device)
        noise = torch.randn(z0.shape, generator=generator, device=device, dtype=z0.dtype)
        abar = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        z_t = abar.sqrt() * z0 + (1.0 - abar).sqrt() * noise
        return StepInputs(z0=z0, noise=noise, timesteps=timesteps,
                          t=timesteps_to_t(timesteps, self.num_train_timesteps), z_t=z_t,
                          hint=batch["lq"].to(device, torch.float32), boxes=batch["boxes"].to(device, torch.float32))

    def predict_noise(self, inputs: StepInputs) -> Tensor:
        """eps_pred (B, 4, h, w) float32 of the UNet with the ControlNet's residuals."""
        count = inputs.z_t.shape[0]
        embeds = self.prompt_embeds.expand(count, -1, -1)
        added = {"text_embeds": self.pooled.expand(count, -1), "time_ids": self.time_ids.expand(count, -1)}
        down, mid = self.controlnet(inputs.z_t, inputs.timesteps, encoder_hidden_states=embeds,
                                    controlnet_cond=inputs.hint, added_cond_kwargs=added, return_dict=False)
        dtype = self.unet.dtype
        eps = self.unet(
            inputs.z_t.to(dtype), inputs.timesteps, encoder_hidden_states=embeds.to(dtype),
            added_cond_kwargs={key: value.to(dtype) for key, value in added.items()},
            down_block_additional_residuals=[r.to(dtype) for r in down],
            mid_block_additional_residual=mid.to(dtype), return_dict=False,
        )[0]
        return eps.float()

    def generator_losses(self, inputs: StepInputs) -> GeneratorOutput:
        """L_total = L_noise + L_facial of the ControlNet step (module docstring).

        ``terms`` (detached 0-dim float32): ``noise``, ``facial``, ``total``, the facial loss's
        ``eyes_adv``, ``eyes_style``, ``mouth_adv``, ``mouth_style`` (lambda-scaled, before time
        weighting) and ``weight`` (mean w(t))."""
        eps = self.predict_noise(inputs)
        noise_loss = F.mse_loss(eps, inputs.noise)
        abar = self.alphas_cumprod[inputs.timesteps]
        z0_pred = predict_x0(inputs.z_t, eps, abar)
        facial = self.facial(self.discriminators, z0_pred, inputs.z0, inputs.boxes, inputs.t)
        total = noise_loss + facial["total"]
        terms = {"noise": noise_loss.detach(), "facial": facial["total"].detach(), "total": total.detach()}
        terms.update({key: value.detach() for key, value in facial.items() if key != "total"})
        return GeneratorOutput(total=total, noise=noise_loss, facial=facial["total"], terms=terms,
                               z0_pred=z0_pred.detach())

    def discriminator_losses(self, z0_pred: Tensor, inputs: StepInputs) -> tuple[Tensor, dict[str, Tensor]]:
        """Sum over components of GFPGAN's BCE on real (``z0``) and fake (``z0_pred``, detached)
        crops, and the per-component terms ``d_eyes``, ``d_mouth`` (detached)."""
        real = self.facial.crop(inputs.z0, inputs.boxes)
        fake = self.facial.crop(z0_pred.detach().float(), inputs.boxes)
        terms: dict[str, Tensor] = {}
        total = inputs.z0.new_zeros(())
        for name in COMPONENTS:
            loss = discriminator_loss(self.discriminators[name], real[name], fake[name])
            terms[f"d_{name}"] = loss.detach()
            total = total + loss
        return total, terms


def average_gradients(accelerator: Any, parameters: Iterable[nn.Parameter]) -> None:
    """Average the parameters' gradients over all processes in one all-reduce (a no-op with
    one process). Parameters without a gradient take part as zeros."""
    params = list(parameters)
    if accelerator.num_processes == 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = accelerator.reduce(torch.cat([g.reshape(-1) for g in grads]), reduction="mean")
    offset = 0
    for param in params:
        size = param.numel()
        param.grad = flat[offset:offset + size].view_as(param).clone()
        offset += size


def controlnet_update(accelerator: Any, objective: Stage2Objective, inputs: StepInputs, optimizer: Any,
                      max_grad_norm: float) -> GeneratorOutput:
    """The ControlNet step: forward under the run's autocast, ``accelerator.backward`` (scaled
    by 1/accumulation, fp16 loss scaling), gradient clipping at ``max_grad_norm`` (0: none) when
    the accumulated gradient is complete, the optimizer step (accelerate skips it while
    accumulating). The lr schedule is the trainer's: it steps once per optimizer step."""
    with accelerator.autocast():
        output = objective.generator_losses(inputs)
    accelerator.backward(output.total)
    if accelerator.sync_gradients and max_grad_norm > 0:
        accelerator.clip_grad_norm_(objective.controlnet.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return output


def discriminator_update(accelerator: Any, objective: Stage2Objective, inputs: StepInputs, z0_pred: Tensor,
                         optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """The discriminator step, after the ControlNet step of the same micro-batch.

    Runs in float32 outside autocast (the discriminators are small and their optimizer is not
    wrapped by accelerate, so it has no fp16 loss scaler). The loss is divided by the
    accumulation count; when the accumulated gradient is complete it is averaged over processes
    and the optimizer steps. Returns the detached terms; with time weighting "none" nothing runs
    and ``{}`` is returned (no facial loss, nothing to discriminate for)."""
    if not objective.facial.weighting.enabled:
        return {}
    total, terms = objective.discriminator_losses(z0_pred, inputs)
    (total / accelerator.gradient_accumulation_steps).backward()
    if accelerator.sync_gradients:
        params = [p for d in objective.discriminators.values() for p in d.parameters()]
        average_gradients(accelerator, params)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return terms
