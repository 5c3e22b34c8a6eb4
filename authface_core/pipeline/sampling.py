"""Noise schedule, samplers and seeded noise of the released method.

Samplers are diffusers' DDPMScheduler (ancestral, the release's sampler) and DDIMScheduler with
eta 0 (deterministic; what ComfyUI's "ddim" sampler computes), both pinned to the release's
settings whatever the release's scheduler_config.json says beyond the noise schedule:

- "leading" timestep spacing with steps_offset 1: 981, 961, ..., 1 at 50 steps (SDXL's config);
- no x0 clipping or thresholding (diffusers' own default clips x0 to [-1, 1]);
- the last step ends on a clean sample: DDIM gets ``set_alpha_to_one=True`` (with SDXL's
  ``false`` it would stop at alphas_cumprod[0] = 0.99915, one step short of clean), DDPM uses
  alpha_prev = 1 after the last timestep by construction.

Noise: :func:`make_generator` seeds a CPU ``torch.Generator`` (the stream
``torch.manual_seed(seed)`` gives, which ComfyUI's ``prepare_noise`` uses); the initial latent is
the first draw, ``torch.randn([B, C, H/f, W/f], generator=g, dtype=float32)`` on CPU, unit
variance; DDPM then draws one ``[B, C, H/f, W/f]`` float32 tensor per step from the same
generator (the last step's is scaled by ~1e-10).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import ModelFileError

Sampler = Literal["ddpm", "ddim"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim")

# The noise schedule of SDXL (stabilityai/stable-diffusion-xl-base-1.0, scheduler_config.json),
# used when a release has no scheduler/ folder.
SDXL_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
}
# The only scheduler_config.json entries taken from a release: they define the trained model's
# noise schedule. Spacing, offset, clipping and the final alpha are the method's, set below.
SCHEDULE_KEYS: tuple[str, ...] = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "rescale_betas_zero_snr",
)
RELEASE_SAMPLING: dict[str, Any] = {
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "clip_sample": False,
    "thresholding": False,
}


def read_schedule(scheduler_config: str | Path | None) -> dict[str, Any]:
    """The noise schedule (:data:`SCHEDULE_KEYS`) of a release's scheduler_config.json, SDXL's
    for the keys it lacks, or SDXL's entirely when ``scheduler_config`` is None."""
    schedule = dict(SDXL_SCHEDULE)
    if scheduler_config is None:
        return schedule
    path = Path(scheduler_config)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFileError(f"cannot read the scheduler config {path} as JSON ({err}); download it again") from err
    schedule.update({k: config[k] for k in SCHEDULE_KEYS if k in config})
    return schedule


def make_scheduler(sampler: Sampler, schedule: dict[str, Any], steps: int) -> Any:
    """A diffusers scheduler for ``sampler`` ("ddpm" or "ddim") on ``schedule`` with the release's
    sampling settings, timesteps set for ``steps`` (on CPU). Raises ValueError for an unknown
    sampler or a step count outside 1..num_train_timesteps."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    total = int(schedule["num_train_timesteps"])
    if not 1 <= int(steps) <= total:
        raise ValueError(f"steps must be between 1 and {total}, got {steps}")
    settings = {**schedule, **RELEASE_SAMPLING}
    if sampler == "ddpm":
        scheduler = DDPMScheduler(**settings, variance_type="fixed_small")
    else:
        scheduler = DDIMScheduler(**settings, set_alpha_to_one=True)
    scheduler.set_timesteps(int(steps))
    return scheduler


def make_generator(seed: int | torch.Generator) -> torch.Generator:
    """``seed`` itself when it is a generator, else a new CPU generator seeded with it (the same
    stream as ``torch.manual_seed(seed)``, without touching the global one)."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator(device="cpu").manual_seed(seed)


def initial_noise(generator: torch.Generator, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Unit-variance starting latents: ``torch.randn(shape, generator=generator,
    dtype=torch.float32)`` on the generator's device (CPU for :func:`make_generator` seeds)."""
    return torch.randn(shape, generator=generator, dtype=torch.float32, device=generator.device)
