"""Loading a release part's weights as a plain state dict (nothing here builds a model).

Tensors come from :func:`safetensors.torch.load_file`, which memory-maps the file: a tensor's
bytes are read from disk when first touched, and the pages belong to the file (the kernel can
drop them again) until the last tensor of that file is freed.

Text encoders saved by transformers 5 name CLIPTextModel's tensors without the ``text_model.``
prefix that transformers 4 (and so SDXL's own files) use; both are accepted, and
:func:`clip_text_keys` converts between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .files import (
    ComponentWeights,
    add_shard,
    check_component_name,
    check_index_complete,
    safetensors_error,
    select_weights,
)

if TYPE_CHECKING:
    from .fit import ReleaseLayout

# transformers 4 (and the SDXL release files) keep CLIP's transformer under "text_model.";
# transformers 5 saves CLIPTextModel without that prefix (CLIPTextModelWithProjection keeps it).
CLIP_TEXT_PREFIX = "text_model."
_CLIP_TRANSFORMER_PARTS = ("embeddings.", "encoder.", "final_layer_norm.")


def load_files(weights: ComponentWeights) -> dict[str, torch.Tensor]:
    """The merged state dict of a part's files (memory-mapped), with the shard checks of
    :func:`~.files.check_shards`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in weights.files:
        try:
            part = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise safetensors_error(path, err) from err
        add_shard(state.keys(), path, part.keys())
        state.update(part)
    check_index_complete(weights, state.keys())
    return state


def load_component_state_dict(
    release_dir: str | Path, component: str, prefer_fp16: bool = False
) -> dict[str, torch.Tensor]:
    """The state dict of one part of a release (``component`` in :data:`MODEL_COMPONENTS`), on
    CPU, dtypes as stored, keys as saved by diffusers/transformers (shards merged).

    Reads safetensors only. Raises ModelFileError naming the folder or file for everything
    :func:`find_weight_files` refuses, for a truncated/corrupt file, for shards repeating a
    tensor and for shards missing tensors their index lists; ValueError for an unknown part.
    """
    check_component_name(component)
    folder = Path(release_dir) / component
    return load_files(select_weights(component, folder, prefer_fp16))


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



def load_checked_state_dict(layout: ReleaseLayout, component: str) -> dict[str, torch.Tensor]:
    """The state dict of one part of a release already checked by :func:`check_release`, read
    from the files it chose (same result and errors as :func:`load_component_state_dict`)."""
    check_component_name(component)
    return load_files(layout.components[component])
