"""The networks of Stage II: the frozen Stage I SDXL parts, the trained ControlNet and the two
facial-component discriminators.

The frozen parts come from a diffusers-layout folder (``unet/``, ``vae/``, ``text_encoder/``,
``text_encoder_2/``, ``tokenizer/``, ``tokenizer_2/``, optional ``scheduler/``): an AuthFace
release or SDXL base with the Stage I UNet, which may live elsewhere (``unet`` argument). A
``controlnet/`` folder is not needed: the ControlNet starts from the UNet's encoder
(``ControlNetModel.from_unet``, paper Sec. 3.2) unless an existing one is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from authface_core.errors import ModelFileError
from authface_core.losses.discriminator import ComponentDiscriminator
from authface_core.losses.facial import COMPONENTS
from training.sdxl_parts import SDXLParts, load_sdxl_parts

BASE_PARTS: tuple[str, ...] = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
# conditioning_embedding_out_channels of the released ControlNet (docs/method.md).
HINT_CHANNELS: tuple[int, ...] = (16, 32, 96, 256)


def _freeze(model: nn.Module) -> nn.Module:
    model.requires_grad_(False)
    model.eval()
    return model


def check_base(base: Path, unet: Path | None) -> Path:
    """The UNet folder to use, after checking that ``base`` holds every other frozen part.
    Raises ModelFileError naming what is missing."""
    missing = [f"{part}/" for part in BASE_PARTS if not (base / part).is_dir()]
    unet_dir = unet if unet is not None else base / "unet"
    if not (unet_dir / "config.json").is_file():
        missing.append(f"{unet_dir} (the Stage I UNet: config.json + weights)")
    if missing:
        raise ModelFileError(
            f"the Stage II base folder {base} lacks {', '.join(missing)}: pass an AuthFace release or an SDXL "
            "diffusers folder with the Stage I UNet (--unet DIR if it is elsewhere)")
    return unet_dir


def load_frozen_parts(base: str | Path, unet: str | Path | None = None, device: torch.device | str = "cpu",
                      weight_dtype: torch.dtype = torch.float32) -> SDXLParts:
    """The frozen parts (module docstring), all in eval mode with ``requires_grad=False``: VAE
    (float32) and text encoders (``weight_dtype``) on ``device``, the UNet in float32 on the CPU,
    so that :func:`make_controlnet` copies full-precision weights without a float32 UNet ever
    sitting on the accelerator; move it with :func:`place_unet`."""
    base = Path(base)
    unet_dir = check_base(base, Path(unet) if unet is not None else None)
    parts = load_sdxl_parts(base, device, weight_dtype, torch.float32, unet_dir)
    _freeze(parts.unet)
    return parts


def place_unet(parts: SDXLParts, device: torch.device | str, weight_dtype: torch.dtype) -> None:
    """Move the frozen UNet to ``device`` in the run's weight dtype (after the ControlNet copied it)."""
    parts.unet.to(device)
    if weight_dtype != torch.float32:
        parts.unet.to(dtype=weight_dtype)


def make_controlnet(unet: Any, device: torch.device | str, init: str | Path | None = None) -> Any:
    """The trainable ControlNet in float32 on ``device``, in train mode: ``ControlNetModel.from_unet``
    (encoder copied, zero convolutions, RGB hint encoder with :data:`HINT_CHANNELS`), or the
    diffusers ControlNet folder ``init`` (to continue from a released ControlNet)."""
    from diffusers import ControlNetModel

    if init is None:
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS,
                                               conditioning_channels=3)
    else:
        controlnet = ControlNetModel.from_pretrained(init, torch_dtype=torch.float32)
        if controlnet.config.conditioning_channels != 3:
            raise ModelFileError(f"the ControlNet in {init} takes a {controlnet.config.conditioning_channels}"
                                 "-channel hint; AuthFace's takes the 3-channel RGB LQ face")
    controlnet.to(device)
    controlnet.train()
    return controlnet


def make_discriminators(base: int = 32) -> nn.ModuleDict:
    """``{"eyes": D_eyes, "mouth": D_mouth}``: one ``ComponentDiscriminator`` per component."""
    return nn.ModuleDict({name: ComponentDiscriminator(in_channels=4, base=base) for name in COMPONENTS})
