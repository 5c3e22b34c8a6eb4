"""What a host's loader left out of a release part it loaded, found from data, not from its log.

ComfyUI picks a model class for a state dict by matching tensor shapes against fixed presets; a
preset can match while the release holds tensors it has no place for (docs/fixtures.md: a
Vega-shaped UNet with a cross-attention mid block loads as "Segmind_Vega" without its mid
attention). The model then runs without those trained weights. Two facts show it, both read
from the objects the loader hands back:

- the number of weight elements in the module the host built, against the release's own count
  (a module with fewer elements than the release left some out);
- the release tensors the loader did not take: ComfyUI's UNet and ControlNet loaders move every
  tensor they convert out of the dict they are given, so what stays there was not converted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch

from ..errors import ModelFileError

# How many left-out tensor names an error lists.
SHOWN_KEYS = 5


def element_count(tensors: Mapping[str, torch.Tensor]) -> int:
    """Total number of elements of the tensors in a state dict (shapes only: nothing is read)."""
    return sum(tensor.numel() for tensor in tensors.values())


def check_nothing_dropped(part: str, folder: str, release_elements: int, loaded_elements: int,
                          not_taken: Collection[str] = ()) -> None:
    """Raise ModelFileError when the host left weights of ``part`` out.

    ``release_elements`` counts the weight elements the release gave the loader for that part,
    ``loaded_elements`` those of the module the loader built, ``not_taken`` the release tensor
    names the loader did not take. A module may hold more than the release (tensors the host
    initialises itself, such as CLIP's ``logit_scale``); fewer elements, or any tensor not taken,
    means trained weights would be ignored. The error names the part, its folder, the counts and
    the first :data:`SHOWN_KEYS` names not taken.
    """
    if not not_taken and loaded_elements >= release_elements:
        return
    names = sorted(not_taken)
    listed = ", ".join(names[:SHOWN_KEYS]) + (f" and {len(names) - SHOWN_KEYS} more" if len(names) > SHOWN_KEYS else "")
    which = f"; {len(names)} tensor(s) were not taken: {listed}" if names else ""
    raise ModelFileError(
        f"ComfyUI loaded the {part} from {folder} without some of its weights: the release holds "
        f"{release_elements:,} weight elements, the model ComfyUI built {loaded_elements:,}{which}. "
        "The shapes matched one of ComfyUI's presets that has no place for them, so the model would "
        "run without trained weights. Use the AuthFace release as published (full SDXL shapes, which "
        "ComfyUI's SDXL preset loads completely), or a ComfyUI version that knows this model shape"
    )
