"""Handing a release part to a host's loader and checking what it built (the host's loaders come
in as callables: nothing here imports the host).

:func:`load_streamed` is for the big parts: the host builds its model from placeholders and the
weights are then read into it tensor by tensor (:mod:`.streaming`); :func:`load_part` hands the
host a memory-mapped state dict. Both raise ModelFileError when the host does not recognise the
part or leaves weights out (:mod:`.dropped`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from ..errors import ModelFileError
from .dropped import check_nothing_dropped, element_count
from .files import ComponentWeights
from .loading import load_files
from .streaming import match_tags, not_matched, placeholders, read_into, tensor_locations

T = TypeVar("T")


def load_part(part: str, folder: str, states: list[dict[str, torch.Tensor]],
              load: Callable[..., T | None], module: Callable[[T], torch.nn.Module], takes_keys: bool) -> T:
    """``load(*states)`` checked for recognition and for weights left out; ``states`` are emptied.

    ``takes_keys``: the loader moves every tensor it converts out of its state dict (ComfyUI's UNet
    and ControlNet loaders), so the names left there are tensors it did not use. Emptying the dicts
    drops this function's references to the memory-mapped tensors as soon as the part is built."""
    release_elements = sum(element_count(state) for state in states)
    try:
        result = load(*states)
        not_taken = sorted(key for state in states for key in state) if takes_keys else []
    finally:
        for state in states:
            state.clear()
    if result is None:
        raise ModelFileError(f"ComfyUI did not recognise {folder} as the {part}; check that it is the "
                             "AuthFace release's")
    check_nothing_dropped(part, folder, release_elements, element_count(module(result).state_dict()), not_taken)
    return result


def load_streamed(part: str, weights: ComponentWeights, load: Callable[[dict], T | None],
                  module: Callable[[T], torch.nn.Module]) -> T:
    """``load`` run on placeholders (:mod:`authface_core.release.streaming`), then the module it
    built filled from the files tensor by tensor (its tensors of each name are written in place): at
    most one tensor beside the host's parameters, where ComfyUI would otherwise copy a whole
    memory-mapped state dict into them. Falls back to :func:`load_part` when the host changed the
    placeholders' values (they cannot be traced) or kept them as its own parameters. Raises
    ModelFileError as :func:`load_part` does, naming exactly the release tensors the host left out."""
    folder = str(weights.folder)
    locations = tensor_locations(weights)
    state, tags = placeholders(locations)
    release_elements = element_count(state)
    try:
        result = load(state)
    finally:
        state.clear()
    if result is None:
        raise ModelFileError(f"ComfyUI did not recognise {folder} as the {part}; check that it is the "
                             "AuthFace release's")
    tensors = module(result).state_dict()
    matched = match_tags(tensors, tags)
    if matched is None or not all(tensors[name].is_contiguous() for name in matched):
        # The host changed the placeholders' values, or made them its parameters (a loader that
        # assigns instead of copying, such as ComfyUI with dynamic VRAM, holds no second copy
        # anyway): load the usual way.
        del result, tensors
        return load_part(part, folder, [load_files(weights)], load, module, takes_keys=True)
    check_nothing_dropped(part, folder, release_elements, element_count(tensors), not_matched(locations, matched))
    for name, release_name in matched.items():
        read_into(locations[release_name], tensors[name])
    return result
