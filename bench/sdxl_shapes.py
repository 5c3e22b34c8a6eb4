"""The full SDXL UNet's shape, for benchmarks that build it (on the meta device or for real)."""

from __future__ import annotations

from typing import Any

# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json, the fields that shape the weights (the
# mid block is diffusers' default UNetMidBlock2DCrossAttn with transformer_layers_per_block[-1]).
SDXL_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20), use_linear_projection=True, cross_attention_dim=2048,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
)
