"""Filling a model a host built with a release part's weights, one tensor at a time, without a
second copy of the part in memory.

A host loader that copies a state dict into parameters it allocated (ComfyUI on CPU: its model
classes' ``load_state_dict`` without ``assign``) holds two copies of the part at the end of the
copy: its parameters and the source tensors (memory-mapped file pages count as resident while
they are mapped). Full SDXL in fp32 is 10.3 GB for the UNet alone. This module lets the host do
its own shape matching and key conversion on *placeholders* instead: every tensor of the part is
replaced by a zero-stride tensor of its shape and dtype holding a single tag value that names it
(no memory). After loading, each parameter of the host's module holds the tag of the release
tensor it was converted from, so :func:`match_tags` maps module names to release names from data,
and :func:`read_into` reads each release tensor from its file straight into the host's parameter.
The peak is the host's parameters plus one tensor.

safetensors layout (https://github.com/huggingface/safetensors, "Format"): an 8-byte
little-endian header length N, N bytes of JSON mapping each tensor name to its ``dtype``,
``shape`` and ``data_offsets`` [begin, end) relative to the byte after the header.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelFileError
from .files import ComponentWeights, add_shard, check_index_complete

# safetensors dtype names of the floating-point types model weights use.
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
# Tags are (1 + m / 128) * 2**e, m in 0..127: 7 mantissa bits and exponents that fp16, bf16 and
# fp32 all hold exactly (fp16's normal range is 2**-14 .. 2**15), so a tag survives the host casting
# the weights to any of them. 128 x 30 = 3840 tags; a full SDXL UNet has 1680 tensors.
_TAG_MANTISSAS = 128
_TAG_MIN_EXPONENT = -14
_TAG_EXPONENTS = 30
MAX_TAGS = _TAG_MANTISSAS * _TAG_EXPONENTS


@dataclass(frozen=True)
class TensorLocation:
    """Where one tensor lies: its file, dtype, shape and byte range in that file."""

    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int


def tensor_locations(weights: ComponentWeights) -> dict[str, TensorLocation]:
    """The location of every tensor of a part (one file or its shards), read from the safetensors
    headers. Raises ModelFileError for an unreadable header, a non-float tensor and the shard
    problems :func:`~.loading.load_files` refuses."""
    found: dict[str, TensorLocation] = {}
    for path in weights.files:
        try:
            with open(path, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(length))
        except (OSError, struct.error, ValueError) as err:
            raise ModelFileError(f"cannot read the safetensors header of {path} ({err}); download it again") from err
        base = 8 + length
        add_shard(found.keys(), path, (name for name in header if name != "__metadata__"))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            if entry["dtype"] not in _DTYPES:
                raise ModelFileError(f"{path} holds {name} as {entry['dtype']}; release weights are floating point")
            begin, end = entry["data_offsets"]
            found[name] = TensorLocation(path, _DTYPES[entry["dtype"]], tuple(entry["shape"]), base + begin, base + end)
    check_index_complete(weights, found.keys())
    return found


def tag_value(index: int) -> float:
    """The tag of the ``index``-th tensor (0 <= index < :data:`MAX_TAGS`)."""
    if not 0 <= index < MAX_TAGS:
        raise ValueError(f"tag index {index} outside 0..{MAX_TAGS - 1}")
    exponent, mantissa = divmod(index, _TAG_MANTISSAS)
    return (1.0 + mantissa / _TAG_MANTISSAS) * 2.0 ** (exponent + _TAG_MIN_EXPONENT)


def placeholders(locations: Mapping[str, TensorLocation]) -> tuple[dict[str, torch.Tensor], dict[float, str]]:
    """``(state dict, tags)``: a zero-stride tensor of each release tensor's shape and dtype holding
    its tag (names in sorted order get tags 0, 1, ...), and tag value -> release name."""
    if len(locations) > MAX_TAGS:
        raise ValueError(f"{len(locations)} tensors, more than the {MAX_TAGS} tags")
    state, tags = {}, {}
    for index, name in enumerate(sorted(locations)):
        where = locations[name]
        state[name] = torch.full((), tag_value(index), dtype=where.dtype).expand(where.shape)
        tags[tag_value(index)] = name
    return state, tags


def match_tags(module_tensors: Mapping[str, torch.Tensor], tags: Mapping[float, str]) -> dict[str, str] | None:
    """Module tensor name -> release tensor name, from the tag each module tensor holds; None when
    a tensor does not hold one tag in every element (the host changed the values or made some
    tensors itself, so the placeholders cannot tell where every weight goes)."""
    matched = {}
    for name, tensor in module_tensors.items():
        if tensor.numel() == 0:
            continue
        first = float(tensor.reshape(-1)[0])
        if first not in tags or not bool((tensor == first).all()):
            return None
        matched[name] = tags[first]
    return matched


def read_into(where: TensorLocation, out: torch.Tensor) -> None:
    """Read one release tensor from its file into ``out`` (same number of elements; cast to
    ``out``'s dtype when it differs), without mapping the file: only this tensor's bytes are held
    besides ``out``. Raises ModelFileError for a short file."""
    count = 1
    for size in where.shape:
        count *= size
    if count != out.numel():
        raise ModelFileError(f"{where.path}: a tensor of shape {where.shape} does not fit a parameter of shape "
                             f"{tuple(out.shape)}")
    direct = out.dtype == where.dtype and out.is_contiguous() and out.device.type == "cpu"
    target = out if direct else torch.empty(where.shape, dtype=where.dtype)
    view = memoryview(target.view(-1).view(torch.uint8).numpy())
    with open(where.path, "rb") as handle:
        handle.seek(where.start)
        got = handle.readinto(view)
    if got != where.end - where.start:
        raise ModelFileError(f"{where.path} ends inside a tensor: it is truncated; download it again")
    if not direct:
        with torch.no_grad():
            out.copy_(target.reshape(out.shape))


def not_matched(release_names: Iterable[str], matched: Mapping[str, str]) -> list[str]:
    """Release tensors no module tensor took (sorted)."""
    return sorted(set(release_names) - set(matched.values()))
