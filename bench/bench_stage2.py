"""Stage II training: speed and the cost of L_facial on a tiny model (CPU), and the memory plan of
the full SDXL ControlNet configuration at 512x512.

1. Tiny configuration (the test suite's shapes: UNet/ControlNet widths 16/32, an 8-channel VAE,
   context 48, 128x128 faces, batch 2): the real training steps of ``training.stage2.step``
   (ControlNet step then discriminator step, in an ``Accelerator(cpu=True)``), timed with the
   paper's logit-normal time weighting and with ``none`` (L_noise only). The difference is the
   time spent in L_facial: the crops, both discriminators in the ControlNet step and the
   discriminator step. The per-sample cost of the LQ synthesis (GFPGAN degradation of a 512 face,
   done by the data loader's workers) is timed too. At 512 px the facial loss itself costs the
   same as here per latent patch (its crops have fixed sizes), so its share of a full SDXL step
   is far smaller than on the tiny model.
2. Memory plan for full SDXL (UNet 2.57B frozen in bf16, ControlNet 1.25B trained with float32
   master weights, gradients and AdamW moments): the models are built on the meta device (exact
   parameter counts, no memory), and one training forward at 512x512 (latent 64x64) is run on
   meta tensors while ``saved_tensors_hooks`` add up what autograd keeps for the backward pass,
   in bf16 (what autocast keeps for the matmuls and convolutions). With gradient checkpointing
   diffusers recomputes each ResnetBlock2D and BasicTransformerBlock in the backward pass: what
   stays is their inputs plus the saved tensors outside them, and the largest block's tensors
   while it is recomputed. Only the UNet's decoder half keeps activations: its encoder's inputs
   do not depend on the ControlNet.

Run: ``python -m bench.bench_stage2 [--steps 10] [--batch 12] [--gpus 4]``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from authface_core.degradation import DegradationConfig, degrade
from authface_core.losses.facial import FacialComponentLoss
from authface_core.losses.time_weight import TimeWeighting
from training.stage2.models import make_controlnet, make_discriminators
from training.stage2.step import Stage2Objective, controlnet_update, discriminator_update

from .sdxl_shapes import SDXL_UNET_CONFIG
from .timing import median_seconds

TINY_SIZE = 128
TINY_BATCH = 2
TINY_CONTEXT = 48
TINY_POOLED = 24
TINY_TIME_DIM = 8
FULL_SIZE = 512
GIB = 1024**3
# Eye, eye, mouth boxes of a 512 FFHQ-aligned face (docs/method.md: eyes ~9 latent px, mouth ~14).
BOXES_512 = [[110.0, 206.0, 182.0, 262.0], [310.0, 206.0, 382.0, 262.0], [198.0, 334.0, 310.0, 406.0]]


def tiny_models() -> tuple[Any, Any]:
    """UNet and VAE with the shapes of ``tests/test_pipeline.py``'s tiny release."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=TINY_SIZE // 8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TINY_CONTEXT, attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=8,
        addition_embed_type="text_time", addition_time_embed_dim=TINY_TIME_DIM,
        projection_class_embeddings_input_dim=6 * TINY_TIME_DIM + TINY_POOLED)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=8)
    return unet.requires_grad_(False).eval(), vae.requires_grad_(False).eval()


def _tiny_step(weighting: str) -> Callable[[int], None]:
    """One training iteration of the tiny configuration (its argument seeds t and the noise)."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler

    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    unet, vae = tiny_models()
    controlnet = make_controlnet(unet, "cpu")
    discriminators = make_discriminators()
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=2e-5)
    d_optimizer = torch.optim.Adam(discriminators.parameters(), lr=2e-3, betas=(0.9, 0.99))
    controlnet, optimizer = accelerator.prepare(controlnet, optimizer)
    alphas = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod
    objective = Stage2Objective(unet, vae, controlnet, discriminators, alphas, torch.randn(1, 77, TINY_CONTEXT),
                                torch.randn(1, TINY_POOLED), TINY_SIZE, FacialComponentLoss(TimeWeighting(weighting)))
    g = torch.Generator().manual_seed(1)
    batch = {"hq": torch.rand(TINY_BATCH, 3, TINY_SIZE, TINY_SIZE, generator=g),
             "lq": torch.rand(TINY_BATCH, 3, TINY_SIZE, TINY_SIZE, generator=g),
             "boxes": torch.tensor([BOXES_512] * TINY_BATCH) * (TINY_SIZE / FULL_SIZE)}

    def step(index: int) -> None:
        inputs = objective.prepare(batch, torch.Generator().manual_seed(index))
        output = controlnet_update(accelerator, objective, inputs, optimizer, 1.0)
        discriminator_update(accelerator, objective, inputs, output.z0_pred, d_optimizer)

    return step


def _seconds_per_step(step: Callable[[int], None], steps: int) -> float:
    """Median seconds of ``step(1..steps)`` after ``step(0)`` as warm-up."""
    indices = itertools.count()
    return median_seconds(lambda: step(next(indices)), steps)


def _degradation_ms(count: int = 10) -> float:
    face = np.random.default_rng(0).random((FULL_SIZE, FULL_SIZE, 3)).astype(np.float32)
    times = []
    for index in range(count):
        start = time.perf_counter()
        degrade(face, DegradationConfig(), np.random.default_rng(index))
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def tiny_figures(steps: int) -> None:
    full = _seconds_per_step(_tiny_step("logit_normal"), steps)
    noise_only = _seconds_per_step(_tiny_step("none"), steps)
    print(f"tiny configuration, CPU, {torch.get_num_threads()} threads, float32, {TINY_BATCH} faces of "
          f"{TINY_SIZE}x{TINY_SIZE}, median of {steps} steps:")
    print(f"  L_noise + L_facial (logit-normal): {full * 1000:7.1f} ms/step = {1 / full:5.2f} steps/s")
    print(f"  L_noise only (--time-weighting none): {noise_only * 1000:7.1f} ms/step = {1 / noise_only:5.2f} steps/s")
    print(f"  share of the step in L_facial (crops, D_eyes, D_mouth, discriminator step): "
          f"{100 * (full - noise_only) / full:.0f}%")
    print(f"  LQ synthesis (GFPGAN degradation, data-loader side): {_degradation_ms():.1f} ms per 512x512 face")


class _SavedBytes:
    """Adds up the bytes of tensors autograd saves (parameters excluded: they are counted as
    weights), overall, for attention probability maps (square in the last two dimensions, one
    side per latent token) and per checkpointable block (ResnetBlock2D, BasicTransformerBlock)."""

    def __init__(self, parameters: set[int], element_size: int, token_counts: set[int]) -> None:
        self.parameters = parameters
        self.element_size = element_size
        self.token_counts = token_counts
        self.total = 0
        self.attention = 0
        self.blocks: list[tuple[int, int]] = []  # (saved inside, input bytes) per block call
        self._inside: list[int] = []

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in self.parameters:
            size = tensor.numel() * self.element_size
            self.total += size
            if tensor.dim() >= 3 and tensor.shape[-1] == tensor.shape[-2] and tensor.shape[-1] in self.token_counts:
                self.attention += size
            if self._inside:
                self._inside[-1] += size
        return tensor

    def enter(self, _module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        self._inside.append(0)

    def leave(self, _module: torch.nn.Module, args: tuple[Any, ...], _output: Any) -> None:
        inside = self._inside.pop()
        if inside:
            inputs = sum(a.numel() * self.element_size for a in args if isinstance(a, torch.Tensor))
            self.blocks.append((inside, inputs))


@contextmanager
def _counting(saved: _SavedBytes, modules: list[torch.nn.Module]) -> Iterator[None]:
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.resnet import ResnetBlock2D

    hooks = []
    for model in modules:
        for module in model.modules():
            if isinstance(module, (ResnetBlock2D, BasicTransformerBlock)):
                hooks.append(module.register_forward_pre_hook(saved.enter))
                hooks.append(module.register_forward_hook(saved.leave))
    try:
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
            yield
    finally:
        for hook in hooks:
            hook.remove()


def memory_plan(batch: int, gpus: int) -> None:
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel, UNet2DConditionModel

    with init_empty_weights():
        unet = UNet2DConditionModel(**SDXL_UNET_CONFIG)
        controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
    unet.to(torch.bfloat16).requires_grad_(False)
    controlnet.to(torch.bfloat16)
    n_unet = sum(p.numel() for p in unet.parameters())
    n_cn = sum(p.numel() for p in controlnet.parameters())
    latent = FULL_SIZE // 8
    meta = torch.device("meta")
    z_t = torch.empty(1, 4, latent, latent, device=meta, dtype=torch.bfloat16)
    hint = torch.empty(1, 3, FULL_SIZE, FULL_SIZE, device=meta, dtype=torch.bfloat16)
    context = torch.empty(1, 77, 2048, device=meta, dtype=torch.bfloat16)
    added = {"text_embeds": torch.empty(1, 1280, device=meta, dtype=torch.bfloat16),
             "time_ids": torch.empty(1, 6, device=meta, dtype=torch.bfloat16)}
    timestep = torch.zeros(1, dtype=torch.long, device=meta)
    tokens = {(latent >> level) ** 2 for level in range(len(unet.config.block_out_channels))}
    saved = _SavedBytes({id(p) for p in [*unet.parameters(), *controlnet.parameters()]}, 2, tokens)
    with _counting(saved, [unet, controlnet]):
        down, mid = controlnet(z_t, timestep, encoder_hidden_states=context, controlnet_cond=hint,
                               added_cond_kwargs=added, return_dict=False)
        unet(z_t, timestep, encoder_hidden_states=context, added_cond_kwargs=added,
             down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False)
    plain = saved.total
    checkpointed = (plain - sum(inside for inside, _ in saved.blocks) + sum(inputs for _, inputs in saved.blocks)
                    + max(inside for inside, _ in saved.blocks))

    weights = {"frozen UNet (bf16)": n_unet * 2, "ControlNet weights (fp32)": n_cn * 4,
               "ControlNet gradients (fp32)": n_cn * 4, "AdamW moments (2 x fp32)": n_cn * 8,
               "VAE (fp32, 83.7M)": 83_653_863 * 4, "text encoders (bf16, 0.82B; validation only)": 817_720_320 * 2}
    print(f"\nmemory plan, full SDXL at {FULL_SIZE}x{FULL_SIZE} (models on the meta device): UNet {n_unet / 1e9:.3f}B "
          f"frozen, ControlNet {n_cn / 1e9:.3f}B trained, discriminators 2 x "
          f"{sum(p.numel() for p in make_discriminators()['eyes'].parameters()) / 1e6:.2f}M")
    for name, size in weights.items():
        print(f"  {name:48s} {size / GIB:6.2f} GiB")
    state = sum(weights.values())
    print(f"  {'weights + training state per GPU (DDP)':48s} {state / GIB:6.2f} GiB")
    sharded = state - (n_cn * 12) * (1 - 1 / gpus)
    print(f"  {f'the same with FSDP SHARD_GRAD_OP over {gpus} GPUs':48s} {sharded / GIB:6.2f} GiB")
    print(f"  activations kept for the backward pass (bf16), per face: {plain / GIB:.2f} GiB without, "
          f"{checkpointed / GIB:.2f} GiB with gradient checkpointing;")
    print(f"    of the former {saved.attention / GIB:.2f} GiB are attention probabilities (math attention; "
          "flash/memory-efficient attention keeps none)")
    for label, per_face in (("without", plain), ("with", checkpointed)):
        total = state + batch * per_face
        print(f"  DDP, {batch} faces per GPU, {label} checkpointing: {total / GIB:6.1f} GiB "
              f"(+ framework and allocator overhead)")


def main(argv: list[str] | None = None) -> None:
    from diffusers.utils import logging as diffusers_logging

    # Casting the meta models to bf16 makes diffusers warn about float32 modules they do not have.
    diffusers_logging.set_verbosity_error()
    parser = argparse.ArgumentParser(prog="python -m bench.bench_stage2")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per tiny configuration")
    parser.add_argument("--batch", type=int, default=12, help="faces per GPU in the memory plan (paper: 48 / 4)")
    parser.add_argument("--gpus", type=int, default=4, help="GPUs for the FSDP line (paper: 4)")
    args = parser.parse_args(argv)
    tiny_figures(args.steps)
    memory_plan(args.batch, args.gpus)


if __name__ == "__main__":
    main()
