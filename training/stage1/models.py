"""The SDXL parts Stage I trains with: a complete diffusers-layout folder, checked, then loaded
by :mod:`training.sdxl_parts`.

The folder is an SDXL base model or an AuthFace release (its ``controlnet/`` is not read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from authface_core.errors import ModelFileError
from authface_core.release import TOKENIZER_FILES
from training import sdxl_parts
from training.sdxl_parts import SDXLParts

PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def _check_folder(root: Path) -> None:
    if not root.is_dir():
        raise ModelFileError(
            f"pretrained model folder {root} does not exist: pass a diffusers-layout SDXL folder "
            "(unet/, vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/)"
        )
    missing = [name for name in PARTS if not (root / name / "config.json").is_file()]
    missing += [
        f"{name}/{file}" for name in ("tokenizer", "tokenizer_2") for file in TOKENIZER_FILES
        if not (root / name / file).is_file()
    ]
    if missing:
        raise ModelFileError(
            f"{root} is not a complete diffusers-layout SDXL folder; missing: {', '.join(missing)}"
        )


def load_unet(root: str | Path) -> Any:
    """The UNet of ``root/unet`` as a float32 diffusers ``UNet2DConditionModel`` in train mode.
    Raises ModelFileError for a missing folder or weights that do not fit the config."""
    return sdxl_parts.load_unet(Path(root) / "unet")


def load_parts(
    root: str | Path,
    device: torch.device | str,
    text_dtype: torch.dtype,
    vae_dtype: torch.dtype,
) -> SDXLParts:
    """Every part of ``root`` for training: the UNet in float32 on the CPU (the accelerator
    places it), the frozen text encoders in ``text_dtype`` and VAE in ``vae_dtype`` on
    ``device``, both tokenizers and the noise schedule (SDXL's when there is no
    ``scheduler/scheduler_config.json``). Raises ModelFileError naming the part that fails."""
    folder = Path(root)
    _check_folder(folder)
    return sdxl_parts.load_sdxl_parts(folder, device, text_dtype, vae_dtype)
