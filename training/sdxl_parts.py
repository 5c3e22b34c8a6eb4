"""Loading the SDXL parts both training stages start from, from a diffusers-layout folder.

The folder is an SDXL base model or an AuthFace release (its ``controlnet/`` is not read); the
UNet may come from another folder (Stage II's Stage I export). Weights are read from safetensors
only (``*.safetensors``, ``*.fp16.safetensors`` or shards, as
:func:`authface_core.release.find_weight_files` picks them); pickles are refused there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from authface_core.errors import MissingDependencyError, ModelFileError
from authface_core.pipeline.sampling import read_schedule
from authface_core.release import SCHEDULER_COMPONENT, SCHEDULER_CONFIG, find_weight_files


@dataclass
class SDXLParts:
    """The models and settings of one SDXL folder.

    ``unet`` is float32 on the CPU (the trainer places, trains or freezes it); ``vae`` and the
    text encoders are frozen (eval mode, ``requires_grad=False``) on the device in the dtypes
    asked for. The text encoders may be dropped (set to None) once every prompt is encoded.
    ``schedule`` is the noise schedule (:func:`authface_core.pipeline.sampling.read_schedule`)."""

    unet: Any
    vae: Any
    text_encoder: Any | None
    text_encoder_2: Any | None
    tokenizer: Any
    tokenizer_2: Any
    schedule: dict[str, Any]


def _require_libraries() -> None:
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError(err.name or "diffusers", "training") from err


def _variant(folder: Path) -> str | None:
    """The diffusers/transformers ``variant`` of the weights find_weight_files picks: "fp16" or None."""
    # diffusers/transformers name the variant's files NAME.fp16.safetensors and its shards
    # NAME.fp16-0000k-of-0000N.safetensors.
    return "fp16" if ".fp16" in find_weight_files(folder)[0].name else None


def load_unet(folder: str | Path) -> Any:
    """The UNet of ``folder`` (a diffusers ``unet/`` folder) as a float32 ``UNet2DConditionModel``
    in train mode. Raises ModelFileError for a missing folder or weights that do not fit the config."""
    _require_libraries()
    from diffusers import UNet2DConditionModel

    folder = Path(folder)
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


def load_sdxl_parts(root: str | Path, device: torch.device | str, text_dtype: torch.dtype, vae_dtype: torch.dtype,
                    unet_dir: str | Path | None = None) -> SDXLParts:
    """Every part of ``root`` (the UNet from ``unet_dir`` when given, else ``root/unet``): see
    :class:`SDXLParts`; the schedule is SDXL's when there is no
    ``scheduler/scheduler_config.json``. Callers check the folder's completeness first, with the
    message that fits their command. Raises ModelFileError naming the part that fails."""
    _require_libraries()
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = Path(root)
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
        unet=load_unet(folder / "unet" if unet_dir is None else unet_dir),
        vae=_frozen(loaded["vae"], device, vae_dtype),
        text_encoder=_frozen(loaded["text_encoder"], device, text_dtype),
        text_encoder_2=_frozen(loaded["text_encoder_2"], device, text_dtype),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
        schedule=read_schedule(scheduler if scheduler.is_file() else None),
    )
