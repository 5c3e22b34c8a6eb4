"""Checking that the parts of an AuthFace release fit together, from config.json files and
safetensors headers only (no tensor is read, no model built)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelFileError
from .files import (
    EXPECTED_CONTENT,
    MODEL_COMPONENTS,
    SCHEDULER_COMPONENT,
    SCHEDULER_CONFIG,
    TOKENIZER_COMPONENTS,
    TOKENIZER_FILES,
    ComponentWeights,
    safetensors_error,
    select_weights,
)
from .loading import CLIP_TEXT_PREFIX

logger = logging.getLogger("authface")

# SDXL's micro-conditioning: original size, crop top-left, target size (2 numbers each).
SDXL_TIME_IDS = 6
# Full-size SDXL: CLIP-L 768 + bigG 1280 context, bigG's 1280 pooled vector, 6 x 256 + 1280 inputs
# to add_embedding. Smaller (test) releases pass the checks when their parts agree with each other.
SDXL_CROSS_ATTENTION_DIM = 2048
SDXL_POOLED_DIM = 1280
SDXL_ADD_EMBEDDING_INPUTS = 2816
# Cross-attention widths of the non-SDXL families, to name what was found.
OTHER_FAMILIES = {768: "SD1.x", 1024: "SD2.x", 1280: "the SDXL refiner"}

_CONTROLNET_HINT_KEY = "controlnet_cond_embedding.conv_in.weight"
_VAE_DECODER_IN = "decoder.conv_in.weight"
_TOKEN_EMBEDDING = "embeddings.token_embedding.weight"
_TEXT_PROJECTION = "text_projection.weight"
_CROSS_ATTENTION_KEY = re.compile(r"attn2\.to_k\.weight$")


@dataclass(frozen=True)
class ReleaseLayout:
    """What :func:`check_release` found in a release folder.

    ``components`` maps each of :data:`MODEL_COMPONENTS` to its files; ``tokenizers`` maps
    "tokenizer"/"tokenizer_2" to their folders; ``scheduler_config`` is None when the release has
    no scheduler/ folder. The dimensions are read from the weights: ``cross_attention_dim`` (the
    UNet's text context width, CLIP-L + bigG hidden sizes), ``pooled_dim`` (bigG's projection),
    ``add_embedding_inputs`` (6 time ids x time-embedding size + ``pooled_dim``),
    ``latent_channels`` (VAE latent = UNet input channels).
    """

    root: Path
    components: Mapping[str, ComponentWeights]
    tokenizers: Mapping[str, Path]
    scheduler_config: Path | None
    cross_attention_dim: int
    pooled_dim: int
    add_embedding_inputs: int
    latent_channels: int

    @property
    def full_size_sdxl(self) -> bool:
        """True for SDXL's own widths (2048 context, 1280 pooled, 2816 add-embedding inputs): the
        shapes ComfyUI's SDXL-family presets recognise. Tiny test releases are False."""
        return (
            self.cross_attention_dim == SDXL_CROSS_ATTENTION_DIM
            and self.pooled_dim == SDXL_POOLED_DIM
            and self.add_embedding_inputs == SDXL_ADD_EMBEDDING_INPUTS
        )



class _Header:
    """Tensor names and shapes of a part's files, read from the safetensors headers only."""

    def __init__(self, weights: ComponentWeights) -> None:
        from safetensors import SafetensorError, safe_open

        self.weights = weights
        self.shapes: dict[str, tuple[int, ...]] = {}
        for path in weights.files:
            try:
                with safe_open(str(path), framework="pt") as handle:
                    for key in handle.keys():
                        self.shapes[key] = tuple(handle.get_slice(key).get_shape())
            except (SafetensorError, OSError) as err:
                raise safetensors_error(path, err) from err

    def where(self) -> str:
        return str(self.weights.index or self.weights.files[0])

    def first(self, pattern: re.Pattern[str]) -> tuple[str, tuple[int, ...]] | None:
        for key in sorted(self.shapes):
            if pattern.search(key):
                return key, self.shapes[key]
        return None

    def require(self, key: str, what: str) -> tuple[int, ...]:
        if key == _TOKEN_EMBEDDING and CLIP_TEXT_PREFIX + key in self.shapes:
            key = CLIP_TEXT_PREFIX + key
        if key not in self.shapes:
            sample = ", ".join(sorted(self.shapes)[:3])
            raise ModelFileError(f"{self.where()} has no '{key}', so it is not {what} (its keys start: {sample})")
        return self.shapes[key]


def _read_config(weights: ComponentWeights) -> dict[str, Any]:
    if not weights.config.is_file():
        raise ModelFileError(
            f"missing {weights.config}: every model part of the release needs its config.json "
            f"({EXPECTED_CONTENT[weights.name]})"
        )
    try:
        config = json.loads(weights.config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFileError(f"cannot read {weights.config} as JSON ({err}); download it again") from err
    if not isinstance(config, dict):
        raise ModelFileError(f"{weights.config} must hold a JSON object, got {type(config).__name__}")
    return config


def _family_hint(width: int) -> str:
    family = OTHER_FAMILIES.get(width)
    return f" ({width} is the width {family} models use)" if family else ""


def _cross_attention_dim(header: _Header, part: str) -> int:
    found = header.first(_CROSS_ATTENTION_KEY)
    if found is None:
        raise ModelFileError(f"{header.where()} has no cross-attention layers (attn2.to_k): it is not an SDXL {part}")
    return found[1][1]


def _check_unet(header: _Header, config: Mapping[str, Any], context_dim: int, pooled_dim: int) -> tuple[int, int]:
    """(UNet input channels, add_embedding inputs) after checking the UNet is SDXL-family and
    matches the text encoders."""
    if any(k.startswith("model.diffusion_model.") for k in header.shapes):
        raise ModelFileError(
            f"{header.where()} is a single-file (original/ComfyUI layout) checkpoint; the release "
            "folder needs the diffusers layout (convert with diffusers' from_single_file + save_pretrained)"
        )
    conv_in = header.require("conv_in.weight", "a diffusers UNet")
    width = _cross_attention_dim(header, "UNet")
    if "add_embedding.linear_1.weight" not in header.shapes:
        raise ModelFileError(
            f"{header.where()} is not an SDXL-family UNet: it has no add_embedding (SDXL's pooled-text "
            f"and size conditioning) and a cross-attention width of {width}{_family_hint(width)}. "
            "AuthFace needs its Stage I SDXL UNet"
        )
    configured = config.get("cross_attention_dim")
    if isinstance(configured, int) and configured != width:
        raise ModelFileError(
            f"{header.weights.config} says cross_attention_dim {configured} but the weights in "
            f"{header.where()} have {width}: config and weights are from different models"
        )
    if width != context_dim:
        raise ModelFileError(
            f"the UNet in {header.where()} takes a text context of width {width}{_family_hint(width)} but "
            f"text_encoder + text_encoder_2 give {context_dim}: not an SDXL UNet for these text encoders "
            f"(SDXL: {SDXL_CROSS_ATTENTION_DIM})"
        )
    if config.get("addition_embed_type", "text_time") != "text_time":
        raise ModelFileError(
            f"{header.weights.config} has addition_embed_type {config.get('addition_embed_type')!r}; "
            "SDXL UNets use 'text_time'"
        )
    inputs = header.shapes["add_embedding.linear_1.weight"][1]
    time_dim = config.get("addition_time_embed_dim")
    if isinstance(time_dim, int) and inputs != SDXL_TIME_IDS * time_dim + pooled_dim:
        raise ModelFileError(
            f"the UNet's add_embedding in {header.where()} takes {inputs} inputs, but {SDXL_TIME_IDS} SDXL "
            f"time ids x {time_dim} + the pooled text size {pooled_dim} make "
            f"{SDXL_TIME_IDS * time_dim + pooled_dim}: not an SDXL base UNet for these text encoders "
            "(refiner UNets use 5 time ids and are not supported)"
        )
    return conv_in[1], inputs


def _check_controlnet(header: _Header, unet_width: int, unet_inputs: int, unet_channels: int) -> None:
    if any(k.startswith("control_model.") for k in header.shapes):
        raise ModelFileError(
            f"{header.where()} is an original-layout ControlNet (control_model.*); the release folder "
            "needs the diffusers layout (controlnet_cond_embedding.*)"
        )
    hint = header.require(_CONTROLNET_HINT_KEY, "a diffusers ControlNet")
    if hint[1] != 3:
        raise ModelFileError(
            f"the ControlNet in {header.where()} takes a {hint[1]}-channel hint; AuthFace's ControlNet "
            "takes the 3-channel RGB low-quality face"
        )
    width = _cross_attention_dim(header, "ControlNet")
    if "add_embedding.linear_1.weight" not in header.shapes:
        raise ModelFileError(
            f"{header.where()} is not an SDXL ControlNet: it has no add_embedding and a cross-attention "
            f"width of {width}{_family_hint(width)}. AuthFace needs its SDXL ControlNet"
        )
    inputs = header.shapes["add_embedding.linear_1.weight"][1]
    if width != unet_width or inputs != unet_inputs:
        raise ModelFileError(
            f"the ControlNet in {header.where()} (context {width}{_family_hint(width)}, add_embedding "
            f"inputs {inputs}) does not match the UNet (context {unet_width}, inputs {unet_inputs})"
        )
    channels = header.require("conv_in.weight", "a diffusers ControlNet")[1]
    if channels != unet_channels:
        raise ModelFileError(
            f"the ControlNet in {header.where()} takes {channels} latent channels, the UNet {unet_channels}"
        )


def _missing_parts(root: Path) -> list[str]:
    problems = []
    for name in (*MODEL_COMPONENTS, *TOKENIZER_COMPONENTS):
        folder = root / name
        if not folder.is_dir():
            problems.append(f"{name}/ ({EXPECTED_CONTENT[name]})")
        elif name in TOKENIZER_COMPONENTS:
            absent = [f for f in TOKENIZER_FILES if not (folder / f).is_file()]
            if absent:
                problems.append(f"{name}/{' and '.join(absent)} ({EXPECTED_CONTENT[name]})")
    return problems


def check_release(release_dir: str | Path, prefer_fp16: bool = False) -> ReleaseLayout:
    """Check a release folder without building any model and describe it.

    Reads every config.json and every safetensors header (so truncated files are caught), then
    checks: all parts present (one error lists every missing part and what it should hold); the
    UNet is an SDXL-family UNet (add_embedding present, cross-attention width = CLIP-L + bigG
    hidden sizes, add_embedding inputs = 6 time ids x time size + pooled size; SD1.x/SD2.x and
    refiner UNets are named as such); the ControlNet is a diffusers SDXL ControlNet with a
    3-channel hint conv (``controlnet_cond_embedding.conv_in.weight``) matching the UNet; the
    VAE's latent channels match the UNet's input; text_encoder_2 has its projection. Raises
    ModelFileError naming the folder or file and what was expected.
    """
    root = Path(release_dir)
    if not root.is_dir():
        raise ModelFileError(
            f"AuthFace release folder {root} does not exist. Download the release (e.g. "
            "huggingface-cli download Ethanliang99/AuthFace --local-dir DIR) and pass that folder"
        )
    missing = _missing_parts(root)
    if missing:
        raise ModelFileError(f"the AuthFace release folder {root} is incomplete; missing: {'; '.join(missing)}")

    weights = {name: select_weights(name, root / name, prefer_fp16) for name in MODEL_COMPONENTS}
    configs = {name: _read_config(w) for name, w in weights.items()}
    headers = {name: _Header(w) for name, w in weights.items()}

    hidden_1 = headers["text_encoder"].require(_TOKEN_EMBEDDING, "a transformers CLIP text model")[1]
    hidden_2 = headers["text_encoder_2"].require(_TOKEN_EMBEDDING, "a transformers CLIP text model")[1]
    pooled_dim = headers["text_encoder_2"].require(
        _TEXT_PROJECTION, "CLIPTextModelWithProjection (OpenCLIP bigG with its text projection)"
    )[0]
    channels, inputs = _check_unet(headers["unet"], configs["unet"], hidden_1 + hidden_2, pooled_dim)
    _check_controlnet(headers["controlnet"], hidden_1 + hidden_2, inputs, channels)
    latent = headers["vae"].require(_VAE_DECODER_IN, "a diffusers AutoencoderKL")[1]
    if latent != channels:
        raise ModelFileError(
            f"the VAE in {headers['vae'].where()} has {latent} latent channels but the UNet takes {channels}: "
            "not the SDXL VAE (4 channels)"
        )

    scheduler = root / SCHEDULER_COMPONENT / SCHEDULER_CONFIG
    if not scheduler.is_file():
        logger.info("%s has no %s/%s; using SDXL's noise schedule", root, SCHEDULER_COMPONENT, SCHEDULER_CONFIG)
    return ReleaseLayout(
        root=root,
        components=weights,
        tokenizers={name: root / name for name in TOKENIZER_COMPONENTS},
        scheduler_config=scheduler if scheduler.is_file() else None,
        cross_attention_dim=hidden_1 + hidden_2,
        pooled_dim=pooled_dim,
        add_embedding_inputs=inputs,
        latent_channels=channels,
    )

