"""AuthFaceReleaseNoise: the release's initial noise for SamplerCustomAdvanced."""

from __future__ import annotations

import math

import comfy.sample
import torch
from comfy_api.v0_0_2 import io

from authface_core.noise_keys import NOISE_KEYS, keyed_noise


class ReleaseNoise:
    """NOISE whose first step matches the reference sampler's unit-variance start.

    The reference starts from x_T ~ N(0, 1) at its first timestep; in ComfyUI's sigma space that
    is ``noise * sqrt(1 + sigma0^2)``. KSampler multiplies the noise by ``sigma0`` whenever the
    first sigma is below the model's sigma_max (docs/faithfulness.md, cause 2), so this noise is
    pre-scaled by ``sqrt(1 + sigma0^2) / sigma0`` in that case and left as is otherwise.

    A latent carrying noise keys (``authface_core.noise_keys``, e.g. from AuthFace Candidates)
    gets each keyed item from its own stream; items without a key, and latents without keys,
    get ComfyUI's ``prepare_noise`` exactly as before.
    """

    def __init__(self, seed: int, sigma0: float, sigma_max: float) -> None:
        self.seed = seed
        self.sigma0 = sigma0
        self.sigma_max = sigma_max

    @property
    def scale(self) -> float:
        if self.sigma0 <= 0.0 or math.isclose(self.sigma0, self.sigma_max, rel_tol=1e-5) or self.sigma0 > self.sigma_max:
            return 1.0
        return math.sqrt(1.0 + self.sigma0 ** 2) / self.sigma0

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        latent = input_latent["samples"]
        keys = input_latent.get(NOISE_KEYS)
        if keys is None:
            noise = comfy.sample.prepare_noise(latent, self.seed, input_latent.get("batch_index"))
        else:
            if len(keys) != latent.shape[0]:
                raise ValueError(f"the latent batch has {latent.shape[0]} items but carries {len(keys)} noise "
                                 "keys: batch nodes between AuthFace Candidates and the sampler changed it")

            def plain(count: int) -> torch.Tensor:
                return comfy.sample.prepare_noise(latent[:count], self.seed)

            noise = keyed_noise(plain, self.seed, keys, latent.shape[1:], latent.dtype)
        return noise * self.scale


class AuthFaceReleaseNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceReleaseNoise",
            display_name="AuthFace Release Noise",
            category="AuthFace/restore",
            description="Seeded noise for SamplerCustomAdvanced that starts sampling exactly like the "
            "authors' pipeline (unit-variance latent at the first timestep), at any step count.",
            inputs=[
                io.Model.Input("model"),
                io.Sigmas.Input("sigmas"),
                io.Int.Input("noise_seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
            ],
            outputs=[io.Noise.Output("noise")],
        )

    @classmethod
    def execute(cls, model, sigmas: torch.Tensor, noise_seed: int) -> io.NodeOutput:
        if sigmas.numel() < 2:
            raise ValueError("sigmas must hold at least two values (a schedule of one step or more)")
        sampling = model.get_model_object("model_sampling")
        return io.NodeOutput(ReleaseNoise(noise_seed, float(sigmas[0]), float(sampling.sigma_max)))
