"""Building the diffusers / transformers models of a checked release from its state dicts.

Models are constructed from their config.json with parameters on the meta device (accelerate's
``init_empty_weights``, buffers stay real) and the state dict is assigned in, so a 2.6B-parameter
UNet is never held twice nor randomly initialised first. Without accelerate the model is built
normally (slower, twice the memory while loading).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import MissingDependencyError, ModelFileError
from ..release import CLIP_TEXT_PREFIX, ReleaseLayout, clip_text_keys, load_checked_state_dict

logger = logging.getLogger("authface")

# Saved by older transformers versions; a non-persistent buffer now, rebuilt by the model.
_IGNORED_UNEXPECTED = frozenset({"text_model.embeddings.position_ids", "embeddings.position_ids"})


@dataclass
class ReleaseModels:
    """The networks and tokenizers of one release, ready for inference."""

    unet: Any
    controlnet: Any
    vae: Any
    text_encoder: Any
    text_encoder_2: Any
    tokenizer: Any
    tokenizer_2: Any


def _require_diffusers() -> None:
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError(err.name or "diffusers", "The AuthFace restore pipeline") from err


def _build_empty(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    try:
        from accelerate import init_empty_weights
    except ImportError:
        logger.info("accelerate is not installed: building models with random weights first (slower)")
        return build()
    with init_empty_weights(include_buffers=False):
        return build()


def _fill(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    try:
        result = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as err:  # tensor shapes that differ from the config's
        raise ModelFileError(
            f"the weights in {where} do not fit the model its config.json describes ({str(err)[:300]}); "
            "config and weights are from different models"
        ) from err
    unexpected = [k for k in result.unexpected_keys if k not in _IGNORED_UNEXPECTED]
    if result.missing_keys or unexpected:
        detail = []
        if result.missing_keys:
            detail.append(f"{len(result.missing_keys)} missing (e.g. {result.missing_keys[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise ModelFileError(
            f"the weights in {where} do not fit the model its config.json describes: "
            f"{', '.join(detail)} tensors; config and weights are from different models"
        )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _load(layout: ReleaseLayout, name: str, build: Callable[[], torch.nn.Module], device: torch.device | str,
          dtype: torch.dtype) -> torch.nn.Module:
    model = _build_empty(build)
    state = load_checked_state_dict(layout, name)
    if name.startswith("text_encoder"):
        state = clip_text_keys(state, prefixed=any(k.startswith(CLIP_TEXT_PREFIX) for k in model.state_dict()))
    # Cast before assigning rather than model.to(dtype): one copy, and diffusers' to() warns on
    # every dtype cast even when no module must stay in float32.
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    _fill(model, state, layout.components[name].folder)
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model


def load_release_models(
    layout: ReleaseLayout,
    device: torch.device | str,
    dtype: torch.dtype,
    controlnet_dtype: torch.dtype | None = None,
) -> ReleaseModels:
    """The release's models on ``device``: UNet and text encoders in ``dtype``, ControlNet in
    ``controlnet_dtype`` (default ``dtype``), VAE always in float32 (SDXL's VAE overflows in
    fp16). Raises MissingDependencyError without diffusers/transformers, ModelFileError when
    weights and config.json disagree."""
    _require_diffusers()
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    parts = layout.components
    unet_config = _read_json(parts["unet"].config)
    controlnet_config = _read_json(parts["controlnet"].config)
    vae_config = _read_json(parts["vae"].config)
    text_config = CLIPTextConfig.from_pretrained(parts["text_encoder"].folder)
    text_config_2 = CLIPTextConfig.from_pretrained(parts["text_encoder_2"].folder)
    return ReleaseModels(
        unet=_load(layout, "unet", lambda: UNet2DConditionModel.from_config(unet_config), device, dtype),
        controlnet=_load(
            layout, "controlnet", lambda: ControlNetModel.from_config(controlnet_config), device, controlnet_dtype or dtype
        ),
        vae=_load(layout, "vae", lambda: AutoencoderKL.from_config(vae_config), device, torch.float32),
        text_encoder=_load(layout, "text_encoder", lambda: CLIPTextModel(text_config), device, dtype),
        text_encoder_2=_load(
            layout, "text_encoder_2", lambda: CLIPTextModelWithProjection(text_config_2), device, dtype
        ),
        tokenizer=CLIPTokenizer.from_pretrained(layout.tokenizers["tokenizer"]),
        tokenizer_2=CLIPTokenizer.from_pretrained(layout.tokenizers["tokenizer_2"]),
    )
