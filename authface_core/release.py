"""Reading an AuthFace release folder: which files hold each part, and whether they fit together.

A release is a diffusers-layout SDXL folder (DESIGN.md section 2)::

    unet/            config.json + weights   Stage I SDXL UNet (diffusers keys)
    controlnet/      config.json + weights   SDXL ControlNet, 3-channel RGB hint
    vae/             config.json + weights   SDXL VAE
    text_encoder/    config.json + weights   CLIP-L (transformers CLIPTextModel)
    text_encoder_2/  config.json + weights   OpenCLIP bigG with projection (CLIPTextModelWithProjection)
    tokenizer/       vocab.json + merges.txt
    tokenizer_2/     vocab.json + merges.txt
    scheduler/       scheduler_config.json   (optional: SDXL's schedule is assumed without it)

Weights are read with safetensors only; pickle files (``*.bin``, ``*.ckpt``) are refused because
unpickling can run code. A part's weights are one of:

- a single file ``NAME.safetensors`` (full precision as saved) or ``NAME.fp16.safetensors``;
- shards listed by an index ``NAME.safetensors.index.json`` (``NAME.safetensors.index.fp16.json``
  for the fp16 variant) whose ``weight_map`` names every shard.

When both precisions are present the full-precision files are used unless ``prefer_fp16`` is
set: they are what the authors' script loads (it passes no variant for the UNet and
ControlNet), casting them to fp16 at load time gives what the fp16 files hold, and the fp16 files
cannot give the full-precision weights back. ``prefer_fp16`` halves the bytes read for fp16 runs.

Text encoders saved by transformers 5 name CLIPTextModel's tensors without the ``text_model.``
prefix that transformers 4 (and so SDXL's own files) use; both are accepted, and
:func:`clip_text_keys` converts between them.

Nothing here builds a model: :func:`check_release` reads only config.json files and safetensors
headers, :func:`load_component_state_dict` returns plain state dicts. The ComfyUI loader node
calls both before handing the state dicts to ComfyUI's own loaders.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import ModelFileError

logger = logging.getLogger("authface")

MODEL_COMPONENTS: tuple[str, ...] = ("unet", "controlnet", "vae", "text_encoder", "text_encoder_2")
TOKENIZER_COMPONENTS: tuple[str, ...] = ("tokenizer", "tokenizer_2")
SCHEDULER_COMPONENT = "scheduler"
SCHEDULER_CONFIG = "scheduler_config.json"
TOKENIZER_FILES: tuple[str, ...] = ("vocab.json", "merges.txt")

# What each part must hold, for error messages.
EXPECTED_CONTENT: dict[str, str] = {
    "unet": "the Stage I SDXL UNet: config.json + diffusion_pytorch_model(.fp16).safetensors or shards",
    "controlnet": "the SDXL ControlNet: config.json + diffusion_pytorch_model(.fp16).safetensors or shards",
    "vae": "the SDXL VAE: config.json + diffusion_pytorch_model(.fp16).safetensors",
    "text_encoder": "CLIP-L (CLIPTextModel): config.json + model(.fp16).safetensors",
    "text_encoder_2": "OpenCLIP bigG (CLIPTextModelWithProjection): config.json + model(.fp16).safetensors or shards",
    "tokenizer": "the CLIP-L tokenizer: vocab.json + merges.txt",
    "tokenizer_2": "the bigG tokenizer: vocab.json + merges.txt",
}

# SDXL's micro-conditioning: original size, crop top-left, target size (2 numbers each).
SDXL_TIME_IDS = 6
# Full-size SDXL: CLIP-L 768 + bigG 1280 context, bigG's 1280 pooled vector, 6 x 256 + 1280 inputs
# to add_embedding. Smaller (test) releases pass the checks when their parts agree with each other.
SDXL_CROSS_ATTENTION_DIM = 2048
SDXL_POOLED_DIM = 1280
SDXL_ADD_EMBEDDING_INPUTS = 2816
# Cross-attention widths of the non-SDXL families, to name what was found.
OTHER_FAMILIES = {768: "SD1.x", 1024: "SD2.x", 1280: "the SDXL refiner"}

_SUFFIX = ".safetensors"
_FP16_INFIX = ".fp16"
_INDEX_FULL = ".safetensors.index.json"
_INDEX_FP16 = ".safetensors.index.fp16.json"
_SHARD = re.compile(r"-\d{5}-of-\d{5}\.safetensors$")
_CANONICAL_STEMS = ("diffusion_pytorch_model", "model")
_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")

_UNET_KEYS = ("conv_in.weight", "add_embedding.linear_1.weight")
_CONTROLNET_HINT_KEY = "controlnet_cond_embedding.conv_in.weight"
_VAE_DECODER_IN = "decoder.conv_in.weight"
_TOKEN_EMBEDDING = "embeddings.token_embedding.weight"
# transformers 4 (and the SDXL release files) keep CLIP's transformer under "text_model.";
# transformers 5 saves CLIPTextModel without that prefix (CLIPTextModelWithProjection keeps it).
CLIP_TEXT_PREFIX = "text_model."
_CLIP_TRANSFORMER_PARTS = ("embeddings.", "encoder.", "final_layer_norm.")
_TEXT_PROJECTION = "text_projection.weight"
_CROSS_ATTENTION_KEY = re.compile(r"attn2\.to_k\.weight$")


@dataclass(frozen=True)
class ComponentWeights:
    """The files holding one model part.

    ``files`` are the safetensors files to read (one, or every shard in name order); ``index`` is
    the shard index (None for a single file); ``fp16`` tells whether these are the fp16 variant.
    """

    name: str
    folder: Path
    config: Path
    files: tuple[Path, ...]
    index: Path | None
    fp16: bool


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


def _read_index(index: Path) -> tuple[Path, ...]:
    """The shard files an index names (sorted, each checked to exist)."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelFileError(
            f"cannot read the shard index {index}: {err}. It must be JSON with a 'weight_map' "
            "from tensor names to shard files; download it again"
        ) from err
    if not names:
        raise ModelFileError(f"the shard index {index} lists no shards; download it again")
    shards = tuple(index.parent / name for name in names)
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise ModelFileError(
            f"the shard index {index} lists {len(shards)} shard(s) but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing from {index.parent}: the download is "
            "incomplete; fetch the missing file(s) again"
        )
    return shards


@dataclass(frozen=True)
class _Candidate:
    files: tuple[Path, ...]
    index: Path | None
    fp16: bool
    stem: str


def _candidates(folder: Path) -> list[_Candidate]:
    """Weight sets in ``folder``; an index's shards are read only once it is chosen, so a broken
    set of the precision not used does not get in the way."""
    found: list[_Candidate] = []
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    for name in names:
        if name.endswith(_INDEX_FULL) or name.endswith(_INDEX_FP16):
            fp16 = name.endswith(_INDEX_FP16)
            stem = name[: -len(_INDEX_FP16 if fp16 else _INDEX_FULL)]
            found.append(_Candidate((), folder / name, fp16, stem))
        elif name.endswith(_SUFFIX) and not _SHARD.search(name):
            stem = name[: -len(_SUFFIX)]
            fp16 = stem.endswith(_FP16_INFIX)
            found.append(_Candidate((folder / name,), None, fp16, stem[: -len(_FP16_INFIX)] if fp16 else stem))
    return found


def _pick_one(candidates: list[_Candidate], folder: Path) -> _Candidate:
    """One candidate of a precision: shard indexes win over single files (as in diffusers), then
    the canonical names, then the only one; several unrelated files are ambiguous."""
    indexed = [c for c in candidates if c.index is not None]
    pool = indexed or candidates
    if len(pool) == 1:
        return pool[0]
    canonical = [c for c in pool if c.stem in _CANONICAL_STEMS]
    if len(canonical) == 1:
        return canonical[0]
    listed = ", ".join(c.index.name if c.index else c.files[0].name for c in pool)
    raise ModelFileError(
        f"{folder} holds several weight files of the same precision ({listed}) and none is the "
        f"standard {' or '.join(n + _SUFFIX for n in _CANONICAL_STEMS)}: keep only the one for this part"
    )


def _no_weights_error(folder: Path) -> ModelFileError:
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    pickles = [n for n in names if n.endswith(_PICKLE_SUFFIXES)]
    if pickles:
        return ModelFileError(
            f"{folder} holds only pickle weights ({', '.join(pickles)}). AuthFace reads safetensors "
            "only, because loading pickles can run arbitrary code. Convert them once, e.g. with "
            "diffusers/transformers: Model.from_pretrained(folder).save_pretrained(folder, "
            "safe_serialization=True), or fetch the .safetensors files of the release"
        )
    orphans = [n for n in names if _SHARD.search(n)]
    if orphans:
        return ModelFileError(
            f"{folder} holds shards ({', '.join(orphans)}) but no index file "
            f"(*{_INDEX_FULL}) naming them; download the index file too"
        )
    return ModelFileError(
        f"{folder} holds no *.safetensors weights (found: {', '.join(names) or 'nothing'}); "
        "download the part's weights again"
    )


def _select_weights(name: str, folder: Path, prefer_fp16: bool) -> ComponentWeights:
    if not folder.is_dir():
        raise ModelFileError(f"missing folder {folder}: expected {EXPECTED_CONTENT.get(name, 'model weights')}")
    candidates = _candidates(folder)
    if not candidates:
        raise _no_weights_error(folder)
    full = [c for c in candidates if not c.fp16]
    half = [c for c in candidates if c.fp16]
    order = (half, full) if prefer_fp16 else (full, half)
    chosen = _pick_one(order[0] or order[1], folder)
    if chosen.fp16 != prefer_fp16:
        logger.info("%s: using %s weights (the only precision present)", folder, "fp16" if chosen.fp16 else "full-precision")
    files = _read_index(chosen.index) if chosen.index is not None else chosen.files
    return ComponentWeights(
        name=name, folder=folder, config=folder / "config.json", files=files, index=chosen.index, fp16=chosen.fp16
    )


def find_weight_files(component_dir: str | Path, prefer_fp16: bool = False) -> list[Path]:
    """The safetensors files that hold one part's weights: one file, or all shards in name order.

    Looks for ``*.safetensors`` / ``*.fp16.safetensors`` single files and shard indexes
    (``*.safetensors.index.json`` / ``*.safetensors.index.fp16.json``); every shard an index
    names must exist. Full precision is chosen when both are present unless ``prefer_fp16``; an
    index wins over a single file of the same precision; among several files the standard name
    (``diffusion_pytorch_model`` / ``model``) wins. Raises ModelFileError naming the folder or
    file for: a missing folder, no safetensors (with the conversion recipe when only ``*.bin``
    pickles are there), shards without an index, an unreadable index, a missing shard, several
    unrelated weight files.
    """
    folder = Path(component_dir)
    return list(_select_weights(folder.name, folder, prefer_fp16).files)


def _safetensors_error(path: Path, err: Exception) -> ModelFileError:
    return ModelFileError(
        f"{path} is not a readable safetensors file ({err}); it is probably truncated or corrupt "
        f"({path.stat().st_size if path.exists() else 0} bytes): download it again"
    )


def _load_files(weights: ComponentWeights) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in weights.files:
        try:
            part = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise _safetensors_error(path, err) from err
        clash = state.keys() & part.keys()
        if clash:
            raise ModelFileError(
                f"{path} repeats tensors already read from another shard (e.g. {sorted(clash)[0]}); "
                "the shards do not belong together: download the part again"
            )
        state.update(part)
    if weights.index is not None:
        expected = json.loads(weights.index.read_text(encoding="utf-8"))["weight_map"].keys()
        missing = sorted(set(expected) - state.keys())
        if missing:
            raise ModelFileError(
                f"the shards of {weights.index} lack {len(missing)} tensor(s) the index lists "
                f"(e.g. {missing[0]}): the shards are from another version; download the part again"
            )
    return state


def _check_component_name(component: str) -> None:
    if component not in MODEL_COMPONENTS:
        raise ValueError(f"unknown release part {component!r}; choose one of {', '.join(MODEL_COMPONENTS)}")


def load_component_state_dict(
    release_dir: str | Path, component: str, prefer_fp16: bool = False
) -> dict[str, torch.Tensor]:
    """The state dict of one part of a release (``component`` in :data:`MODEL_COMPONENTS`), on
    CPU, dtypes as stored, keys as saved by diffusers/transformers (shards merged).

    Reads safetensors only. Raises ModelFileError naming the folder or file for everything
    :func:`find_weight_files` refuses, for a truncated/corrupt file, for shards repeating a
    tensor and for shards missing tensors their index lists; ValueError for an unknown part.
    """
    _check_component_name(component)
    folder = Path(release_dir) / component
    return _load_files(_select_weights(component, folder, prefer_fp16))


def clip_text_keys(state: Mapping[str, torch.Tensor], prefixed: bool = True) -> dict[str, torch.Tensor]:
    """A CLIP text-encoder state dict with its transformer keys (``embeddings.*``, ``encoder.*``,
    ``final_layer_norm.*``) under ``text_model.`` (``prefixed=True``: transformers 4's layout,
    which the SDXL release files and ComfyUI use) or without it (transformers 5's CLIPTextModel).
    Other keys (``text_projection.weight``) are kept as they are. Same tensors, new dict."""
    result = {}
    for key, value in state.items():
        bare = key[len(CLIP_TEXT_PREFIX):] if key.startswith(CLIP_TEXT_PREFIX) else key
        inside = bare.startswith(_CLIP_TRANSFORMER_PARTS)
        result[CLIP_TEXT_PREFIX + bare if inside and prefixed else bare if inside else key] = value
    return result


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
                raise _safetensors_error(path, err) from err

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

    weights = {name: _select_weights(name, root / name, prefer_fp16) for name in MODEL_COMPONENTS}
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


def load_checked_state_dict(layout: ReleaseLayout, component: str) -> dict[str, torch.Tensor]:
    """The state dict of one part of a release already checked by :func:`check_release`, read
    from the files it chose (same result and errors as :func:`load_component_state_dict`)."""
    _check_component_name(component)
    return _load_files(layout.components[component])
