"""The released AuthFace restore algorithm on diffusers' model classes (docs/method.md).

Per batch of low-quality (LQ) face crops, as the authors' ``pipelines/pipeline_xl.py`` runs it:
start from unit-variance noise, 50 DDPM steps on "leading" timesteps, classifier-free guidance
8 with the encoded negative prompt, the ControlNet on both guidance branches with the LQ crop in
[0, 1] as hint, its residuals rounded to fp16, SDXL time ids [H, W, 0, 0, H, W], VAE decode in
float32, clamp to [0, 1], colour fix against the LQ crop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..colorfix import COLOR_FIX_METHODS, ColorFixMethod
from ..colorfix import color_fix as apply_color_fix
from ..errors import AuthFaceError
from ..prompts import NEGATIVE_PROMPT, POSITIVE_PROMPT, RELEASE_CFG, RELEASE_STEPS
from ..release import check_release
from .loading import ReleaseModels, load_release_models
from .sampling import Sampler, initial_noise, make_generator, make_scheduler, read_schedule

ProgressCallback = Callable[[int, int], None]
InterruptCheck = Callable[[], bool]

# Bicubic resampling (alignment warps, resizes) overshoots [0, 1] by a few percent; such input is
# clamped. Further out, the data is in another range (0-255, [-1, 1]) and is refused.
_RANGE_SLACK = 0.1


class RestoreInterrupted(AuthFaceError):
    """The ``interrupt`` check of :meth:`AuthFacePipeline.restore` asked to stop."""


class AuthFacePipeline:
    """SDXL UNet + SDXL ControlNet face restorer.

    Build it with :meth:`from_release`, or from already-built models (``models``: diffusers
    UNet2DConditionModel, ControlNetModel, AutoencoderKL; transformers CLIPTextModel,
    CLIPTextModelWithProjection and two CLIPTokenizers) and a noise schedule (``schedule``, see
    :func:`~authface_core.pipeline.sampling.read_schedule`). The models must already sit on
    ``device``.
    """

    def __init__(self, models: ReleaseModels, schedule: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.models = models
        self.schedule = dict(schedule)
        self.device = torch.device(device)
        # The last guidance text encoded: a video restores every frame with the same prompts, and
        # the text encoders (bigG) cost as much as several UNet steps on small crops.
        self._text_cache: tuple[tuple[str, str, bool], tuple[Tensor, Tensor]] | None = None

    @classmethod
    def from_release(
        cls,
        release_dir: str | Path,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        controlnet_dtype: torch.dtype | None = None,
        prefer_fp16: bool = False,
    ) -> AuthFacePipeline:
        """Check (:func:`~authface_core.release.check_release`) and load a release folder.

        UNet and text encoders run in ``dtype``, the ControlNet in ``controlnet_dtype`` (default
        ``dtype``), the VAE in float32. ``prefer_fp16`` reads the fp16 weight files when a part
        has both. Raises ModelFileError for a missing or malformed release.
        """
        layout = check_release(release_dir, prefer_fp16=prefer_fp16)
        models = load_release_models(layout, device, dtype, controlnet_dtype)
        return cls(models, read_schedule(layout.scheduler_config), device)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent pixel (8 for SDXL's VAE)."""
        return 2 ** (len(self.models.vae.config.block_out_channels) - 1)

    def make_scheduler(self, sampler: Sampler, steps: int) -> Any:
        """The scheduler ``restore`` uses (see :mod:`~authface_core.pipeline.sampling`), its
        timesteps set for ``steps``."""
        return make_scheduler(sampler, self.schedule, steps)

    @torch.inference_mode()
    def encode_prompt(self, prompt: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        """``(prompt_embeds, pooled)`` of one prompt or a list of B prompts, as the release does.

        Each encoder sees ONE window of its ``max_position_embeddings`` (77) tokens: BOS, the
        first 75 text tokens, EOS, then its tokenizer's padding; longer text is cut. The
        embeddings are the penultimate hidden states (``hidden_states[-2]``) of CLIP-L and bigG
        concatenated, shape [B, 77, 768 + 1280]; ``pooled`` is bigG's projected EOS vector
        (``text_embeds``), shape [B, 1280]. Both on the pipeline's device in the text
        encoders' dtype.
        """
        texts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("prompt must be a string or a non-empty list of strings")
        m = self.models
        hidden = []
        for tokenizer, encoder in ((m.tokenizer, m.text_encoder), (m.tokenizer_2, m.text_encoder_2)):
            window = encoder.config.max_position_embeddings
            ids = tokenizer(texts, padding="max_length", max_length=window, truncation=True, return_tensors="pt")
            output = encoder(ids.input_ids.to(self.device), output_hidden_states=True)
            hidden.append(output.hidden_states[-2])
        return torch.cat(hidden, dim=-1), output.text_embeds

    def _check_lq(self, lq: Tensor) -> None:
        if not isinstance(lq, Tensor) or lq.ndim != 4 or lq.shape[1] != 3:
            shape = tuple(lq.shape) if isinstance(lq, Tensor) else type(lq).__name__
            raise ValueError(f"lq must be a [B, 3, H, W] tensor (RGB), got {shape}")
        if not lq.is_floating_point():
            raise ValueError(f"lq must be float in [0, 1], got dtype {lq.dtype}; for 8-bit data use lq.float() / 255")
        if lq.shape[0] == 0:
            raise ValueError("lq holds no images (batch size 0)")
        factor = self.vae_scale_factor
        height, width = lq.shape[-2:]
        if height % factor or width % factor:
            raise ValueError(
                f"lq is {height}x{width}; height and width must be multiples of {factor} (the VAE's scale): "
                f"resize to e.g. {height // factor * factor or factor}x{width // factor * factor or factor}"
            )
        low, high = float(lq.min()), float(lq.max())
        if low < -_RANGE_SLACK or high > 1.0 + _RANGE_SLACK:
            raise ValueError(
                f"lq values must lie in [0, 1], got [{low:g}, {high:g}]; divide 0-255 data by 255, map "
                "[-1, 1] data with (x + 1) / 2"
            )

    def _residual(self, residual: Tensor, round_fp16: bool) -> Tensor:
        # The reference casts the residuals to fp16 before the UNet adds them (its own comment asks
        # why); the sum is then taken in the UNet's precision.
        if round_fp16:
            residual = residual.to(torch.float16)
        return residual.to(self.models.unet.dtype)

    def _predict_noise(
        self,
        latents: Tensor,
        timestep: Tensor,
        hint: Tensor,
        text: tuple[Tensor, Tensor],
        time_ids: Tensor,
        cfg: float,
        controlnet_scale: float,
        round_fp16: bool,
    ) -> Tensor:
        """Guided epsilon (float32) of one chunk of latents. ``text`` holds the rows of
        :meth:`_guidance_text`; the model batch is [all latents with row 0; with row 1]."""
        unet, controlnet = self.models.unet, self.models.controlnet
        guided = cfg > 1.0
        count = 2 if guided else 1
        sample = latents.repeat(count, 1, 1, 1)
        embeds = text[0].repeat_interleave(latents.shape[0], dim=0)
        pooled = text[1].repeat_interleave(latents.shape[0], dim=0)
        ids = time_ids.expand(sample.shape[0], -1)
        down, mid = controlnet(
            sample.to(controlnet.dtype),
            timestep,
            encoder_hidden_states=embeds.to(controlnet.dtype),
            controlnet_cond=hint.repeat(count, 1, 1, 1).to(controlnet.dtype),
            conditioning_scale=controlnet_scale,
            added_cond_kwargs={"text_embeds": pooled.to(controlnet.dtype), "time_ids": ids.to(controlnet.dtype)},
            return_dict=False,
        )
        eps = unet(
            sample.to(unet.dtype),
            timestep,
            encoder_hidden_states=embeds.to(unet.dtype),
            added_cond_kwargs={"text_embeds": pooled.to(unet.dtype), "time_ids": ids.to(unet.dtype)},
            down_block_additional_residuals=[self._residual(r, round_fp16) for r in down],
            mid_block_additional_residual=self._residual(mid, round_fp16),
            return_dict=False,
        )[0].float()
        if not guided:
            return eps
        uncond, cond = eps.chunk(2)
        return uncond + cfg * (cond - uncond)

    def _guidance_text(self, prompt: str, negative_prompt: str, cfg: float) -> tuple[Tensor, Tensor]:
        """Encoded text rows [negative; positive] with guidance (cfg > 1), [positive] without
        (the last result is kept and reused for the same prompts)."""
        key = (prompt, negative_prompt, cfg > 1.0)
        if self._text_cache is not None and self._text_cache[0] == key:
            return self._text_cache[1]
        embeds, pooled = self.encode_prompt(prompt)
        if cfg <= 1.0:
            text = embeds, pooled
        else:
            negative, negative_pooled = self.encode_prompt(negative_prompt)
            text = torch.cat([negative, embeds]), torch.cat([negative_pooled, pooled])
        self._text_cache = (key, text)
        return text

    @torch.inference_mode()
    def restore(
        self,
        lq: Tensor,
        steps: int = RELEASE_STEPS,
        cfg: float = RELEASE_CFG,
        seed: int | torch.Generator | Sequence[int] = 0,
        sampler: Sampler = "ddpm",
        controlnet_scale: float = 1.0,
        color_fix: ColorFixMethod = "wavelet",
        color_fix_strength: float = 1.0,
        residuals_in_fp16: bool = True,
        prompt: str = POSITIVE_PROMPT,
        negative_prompt: str = NEGATIVE_PROMPT,
        batch_size: int = 4,
        progress: ProgressCallback | None = None,
        interrupt: InterruptCheck | None = None,
    ) -> Tensor:
        """Restore a batch of LQ face crops; returns [B, 3, H, W] float32 in [0, 1] on ``lq``'s
        device.

        ``lq``: [B, 3, H, W] float RGB in [0, 1] (resampling overshoot up to 0.1 is clamped), H
        and W multiples of :attr:`vae_scale_factor`; the working resolution is the input's (the
        released setting is a 512x512 aligned crop). Raises ValueError for other input.
        ``seed``: an int (a fresh CPU generator, see :mod:`~authface_core.pipeline.sampling`
        for the exact draws), a generator to draw from, or a sequence of B ints: crop n then
        draws its initial latent and DDPM noise from its own seed's generator, so its result does
        not depend on the other crops of the batch (a video face track keeps its noise). ``sampler``: "ddpm" (the release's)
        or "ddim" (eta 0). ``cfg`` <= 1 runs the positive branch only, as the reference does.
        ``color_fix``: one of :data:`~authface_core.colorfix.COLOR_FIX_METHODS`, blended by
        ``color_fix_strength``. ``residuals_in_fp16`` rounds ControlNet residuals to fp16 as the
        reference does. The models run on chunks of ``batch_size`` crops; the initial noise of
        all B crops is drawn at once and every scheduler step covers all B, so the result does
        not depend on ``batch_size`` beyond floating-point noise. ``progress(done, total)`` is
        called after each step; ``interrupt()`` is polled before each chunk of each step and
        a True answer raises :class:`RestoreInterrupted`.
        """
        self._check_lq(lq)
        if color_fix not in COLOR_FIX_METHODS:
            raise ValueError(f"unknown colour fix {color_fix!r}; choose one of {', '.join(COLOR_FIX_METHODS)}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        scheduler = self.make_scheduler(sampler, steps)
        count, _, height, width = lq.shape
        factor = self.vae_scale_factor
        channels = self.models.unet.config.in_channels
        if isinstance(seed, Sequence):
            if len(seed) != count:
                raise ValueError(f"got {len(seed)} seeds for {count} crops: pass one seed per crop")
            # diffusers' schedulers draw row n of their step noise from generator n of a list.
            generator = [make_generator(s) for s in seed]
            shape = (1, channels, height // factor, width // factor)
            latents = torch.cat([initial_noise(g, shape) for g in generator]).to(self.device)
        else:
            generator = make_generator(seed)
            latents = initial_noise(generator, (count, channels, height // factor, width // factor)).to(self.device)
        latents = latents * scheduler.init_noise_sigma

        hint = lq.to(self.device, torch.float32).clamp(0.0, 1.0)
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32, device=self.device)
        chunks = [slice(start, start + int(batch_size)) for start in range(0, count, int(batch_size))]
        text = self._guidance_text(prompt, negative_prompt, float(cfg))
        step_kwargs = {"generator": generator} if sampler == "ddpm" else {"eta": 0.0}

        total = len(scheduler.timesteps)
        for index, timestep in enumerate(scheduler.timesteps):
            parts = []
            for chunk in chunks:
                if interrupt is not None and interrupt():
                    raise RestoreInterrupted(f"restore interrupted at step {index + 1} of {total}")
                parts.append(
                    self._predict_noise(
                        latents[chunk], timestep, hint[chunk], text, time_ids, float(cfg),
                        float(controlnet_scale), residuals_in_fp16,
                    )
                )
            latents = scheduler.step(torch.cat(parts), timestep, latents, **step_kwargs, return_dict=False)[0]
            if progress is not None:
                progress(index + 1, total)

        vae = self.models.vae
        images = torch.cat([vae.decode(latents[c] / vae.config.scaling_factor, return_dict=False)[0] for c in chunks])
        images = (images / 2 + 0.5).clamp(0.0, 1.0)
        return apply_color_fix(images, hint, color_fix, color_fix_strength).to(lq.device)
