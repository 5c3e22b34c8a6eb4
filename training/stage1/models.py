"""Loading the SDXL parts Stage I trains with, from a diffusers-layout folder.

The folder is an SDXL base model or an AuthFace release (its ``controlnet/`` is not read). Weights
are read from safetensors only (``*.safetensors``, ``*.fp16.safetensors`` or shards, as
:func:`authface_core.release.find_weight_files` picks them); pickles are refused there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from authface_core.errors import MissingDependencyError, ModelFileError
from authface_core.pipeline.sampling import read_schedule
from authface_core.release import SCHEDULER_COMPONENT, SCHEDULER_CONFIG, TOKENIZER_FILES, find_weight_files

logger = logging.getLogger("authface.training")

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "no": torch.float32}
PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@dataclass
class SDXLParts:
    """The networks, tokenizers and noise schedule of an SDXL folder.

    ``unet`` is float32 and trainable (train mode); the VAE and text encoders are frozen
    (``requires_grad`` False, eval mode). ``schedule`` is the noise schedule dict of
    :func:`authface_core.pipeline.sampling.read_schedule`.
    """

    unet: Any
    vae: Any
    text_encoder: Any
    text_encoder_2: Any
    tokenizer: Any
    tokenizer_2: Any
    schedule: dict[str, Any]


def _require_libraries() -> None:
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError(err.name or "diffusers", "Stage I training") from err


def _variant(folder: Path) -> str | None:
    """The diffusers/transformers ``variant`` of the weights find_weight_files picks: "fp16" or None."""
    # diffusers/transformers name the variant's files NAME.fp16.safetensors and its shards
    # NAME.fp16-0000k-of-0000N.safetensors.
    return "fp16" if ".fp16" in find_weight_files(folder)[0].name else None


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
    _require_libraries()
    from diffusers import UNet2DConditionModel

    folder = Path(root) / "unet"
    try:
        unet = UNet2DConditionModel.from_pretrained(
            folder, variant=_variant(folder), use_safetensors=True, torch_dtype=torch.float32
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"cannot load the UNet in {folder}: {err}") from err
    unet.train()
    return unet


def _frozen(model: Any, device: torch.device | str, dtype: torch.dtype) -> Any:
    model.requires_grad_(False)
    model.eval()
    if model.dtype != dtype:
        model.to(dtype=dtype)
    return model.to(device=device)


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
    _require_libraries()
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = Path(root)
    _check_folder(folder)
    loaded: dict[str, Any] = {}
    classes = {"vae": AutoencoderKL, "text_encoder": CLIPTextModel, "text_encoder_2": CLIPTextModelWithProjection}
    for name, cls in classes.items():
        part = folder / name
        # diffusers casts on load (a later .to(dtype) makes it warn); transformers casts in _frozen.
        options = {"torch_dtype": vae_dtype} if name == "vae" else {}
        try:
            loaded[name] = cls.from_pretrained(part, variant=_variant(part), use_safetensors=True, **options)
        except (OSError, ValueError, RuntimeError) as err:
            raise ModelFileError(f"cannot load {name} from {part}: {err}") from err
    scheduler = folder / SCHEDULER_COMPONENT / SCHEDULER_CONFIG
    return SDXLParts(
        unet=load_unet(folder),
        vae=_frozen(loaded["vae"], device, vae_dtype),
        text_encoder=_frozen(loaded["text_encoder"], device, text_dtype),
        text_encoder_2=_frozen(loaded["text_encoder_2"], device, text_dtype),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
        schedule=read_schedule(scheduler if scheduler.is_file() else None),
    )
