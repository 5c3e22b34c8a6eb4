"""Finding the files of an AuthFace release: which safetensors files hold each model part.

A part's weights are one of:

- a single file ``NAME.safetensors`` (full precision as saved) or ``NAME.fp16.safetensors``;
- shards listed by an index ``NAME.safetensors.index.json`` (``NAME.safetensors.index.fp16.json``
  for the fp16 variant) whose ``weight_map`` names every shard.

When both precisions are present the full-precision files are used unless ``prefer_fp16`` is
set: they are what the authors' script loads (it passes no variant for the UNet and
ControlNet), casting them to fp16 at load time gives what the fp16 files hold, and the fp16 files
cannot give the full-precision weights back. ``prefer_fp16`` halves the bytes read for fp16 runs.
Pickle files (``*.bin``, ``*.ckpt``) are refused because unpickling can run code.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelFileError

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

_SUFFIX = ".safetensors"
_FP16_INFIX = ".fp16"
_INDEX_FULL = ".safetensors.index.json"
_INDEX_FP16 = ".safetensors.index.fp16.json"
_SHARD = re.compile(r"-\d{5}-of-\d{5}\.safetensors$")
_CANONICAL_STEMS = ("diffusion_pytorch_model", "model")
_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")


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



def select_weights(name: str, folder: Path, prefer_fp16: bool) -> ComponentWeights:
    """The files of part ``name`` in ``folder``: what :func:`find_weight_files` picks, with its
    errors."""
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
    return list(select_weights(folder.name, folder, prefer_fp16).files)


def safetensors_error(path: Path, err: Exception) -> ModelFileError:
    return ModelFileError(
        f"{path} is not a readable safetensors file ({err}); it is probably truncated or corrupt "
        f"({path.stat().st_size if path.exists() else 0} bytes): download it again"
    )



def check_component_name(component: str) -> None:
    if component not in MODEL_COMPONENTS:
        raise ValueError(f"unknown release part {component!r}; choose one of {', '.join(MODEL_COMPONENTS)}")



def add_shard(seen: Collection[str], path: Path, names: Iterable[str]) -> None:
    """Check that the tensors of shard ``path`` are not among those ``seen`` in earlier shards."""
    clash = set(seen) & set(names)
    if clash:
        raise ModelFileError(
            f"{path} repeats tensors already read from another shard (e.g. {sorted(clash)[0]}); "
            "the shards do not belong together: download the part again"
        )


def check_index_complete(weights: ComponentWeights, names: Collection[str]) -> None:
    """Check that the shards of a part hold every tensor its index lists (no-op without index)."""
    if weights.index is None:
        return
    expected = json.loads(weights.index.read_text(encoding="utf-8"))["weight_map"].keys()
    missing = sorted(set(expected) - set(names))
    if missing:
        raise ModelFileError(
            f"the shards of {weights.index} lack {len(missing)} tensor(s) the index lists "
            f"(e.g. {missing[0]}): the shards are from another version; download the part again"
        )
