"""Cost of identity guidance per sampling step, next to one plain sampling step (CPU, fp32).

Guidance (authface_core/identity/guidance.py) adds, per face and guided step, one decode and one
ArcFace IResNet-50 pass, both forward and backward. The decoder is the VAE wired into AuthFace
Identity Guidance: the SDXL VAE, or TAESD XL (the tiny autoencoder ComfyUI's VAE Loader offers as
``taesdxl``, diffusers' ``AutoencoderTiny`` with its default configuration). A plain step is the
SDXL UNet plus the AuthFace ControlNet (``ControlNetModel.from_unet``) on a CFG batch of 2. All
weights are random with the real shapes (SDXL VAE, TAESD, full SDXL UNet from
bench/sdxl_shapes.py, IResNet-50), so the times are those of the real models.
Run: ``python -m bench.bench_guidance`` (about 15 GB RAM).
"""

from __future__ import annotations

import resource
from collections.abc import Callable

import torch

from authface_core.identity.guidance import IdentityGuidance
from authface_core.identity.iresnet import iresnet
from bench.sdxl_shapes import SDXL_UNET_CONFIG
from bench.timing import median_seconds

SIZES = (256, 512)
REPEATS = 1
# stabilityai/stable-diffusion-xl-base-1.0 vae/config.json, the fields that shape the weights.
SDXL_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=1024,
    block_out_channels=(128, 256, 512, 512), scaling_factor=0.13025,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)


def _sdxl_vae_decoder() -> Callable[[torch.Tensor], torch.Tensor]:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**SDXL_VAE_CONFIG).eval().requires_grad_(False)
    return lambda latent: ((vae.decode(latent / SDXL_VAE_CONFIG["scaling_factor"]).sample + 1) / 2).clamp(0, 1)


def _taesdxl_decoder() -> Callable[[torch.Tensor], torch.Tensor]:
    from diffusers import AutoencoderTiny

    tiny = AutoencoderTiny().eval().requires_grad_(False)
    # TAESD decodes the scaled latent (what the sampler holds) straight to [-1, 1].
    return lambda latent: ((tiny.decode(latent).sample + 1) / 2).clamp(0, 1)


DECODERS = {"SDXL VAE": _sdxl_vae_decoder, "TAESD XL": _taesdxl_decoder}


def guidance_seconds(size: int, decoder: str) -> float:
    """Median seconds of one guided step for one face at ``size`` px through ``decoder``."""
    torch.manual_seed(0)
    decode = DECODERS[decoder]()
    embedder = iresnet("r50").eval().requires_grad_(False)
    # The ArcFace crop of an FFHQ-aligned face: about the middle 60% of the crop.
    theta = torch.tensor([[[0.6, 0.0, 0.0], [0.0, 0.6, 0.05]]])
    guidance = IdentityGuidance(embedder, decode, torch.nn.functional.normalize(torch.randn(1, 512)), theta, 0.1)
    latent = torch.randn(1, 4, size // 8, size // 8)
    return median_seconds(lambda: guidance(latent, 1.0), REPEATS)


def plain_step_seconds(size: int) -> float:
    """Median seconds of one plain sampling step (ControlNet + UNet, CFG batch 2) at ``size`` px."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SDXL_UNET_CONFIG).eval()
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 96, 256)).eval()
    latent = torch.randn(2, 4, size // 8, size // 8)
    timestep = torch.tensor([500.0, 500.0])
    context = torch.randn(2, 77, 2048)
    added = {"text_embeds": torch.randn(2, 1280), "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * 2, dtype=torch.float32)}
    hint = torch.rand(2, 3, size, size)

    def step() -> None:
        with torch.inference_mode():
            down, mid = controlnet(latent, timestep, context, hint, added_cond_kwargs=added, return_dict=False)
            unet(latent, timestep, context, added_cond_kwargs=added, down_block_additional_residuals=down,
                 mid_block_additional_residual=mid)

    return median_seconds(step, REPEATS)


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, median of {REPEATS} after a warm-up")
    guided = {(size, decoder): guidance_seconds(size, decoder) for size in SIZES for decoder in DECODERS}
    plain = {size: plain_step_seconds(size) for size in SIZES}
    for size in SIZES:
        print(f"{size}x{size}: plain sampling step (ControlNet + UNet, CFG batch 2) {plain[size]:.2f} s")
        for decoder in DECODERS:
            seconds = guided[size, decoder]
            print(f"  identity guidance through the {decoder}: {seconds:.2f} s per face and step "
                  f"({seconds / plain[size]:.0%} of a plain step)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.1f} GB")


if __name__ == "__main__":
    main()
