"""Reading an AuthFace release folder: which files hold each part, loading them, and whether the
parts fit together.

A release is a diffusers-layout SDXL folder (docs/method.md)::

    unet/            config.json + weights   Stage I SDXL UNet (diffusers keys)
    controlnet/      config.json + weights   SDXL ControlNet, 3-channel RGB hint
    vae/             config.json + weights   SDXL VAE
    text_encoder/    config.json + weights   CLIP-L (transformers CLIPTextModel)
    text_encoder_2/  config.json + weights   OpenCLIP bigG with projection (CLIPTextModelWithProjection)
    tokenizer/       vocab.json + merges.txt
    tokenizer_2/     vocab.json + merges.txt
    scheduler/       scheduler_config.json   (optional: SDXL's schedule is assumed without it)

- :mod:`.files`: which safetensors files hold a part (single file, fp16 variant, shards);
- :mod:`.loading`: a part's plain state dict, memory-mapped;
- :mod:`.fit`: :func:`check_release`, which reads only config.json files and safetensors headers;
- :mod:`.streaming`: placeholders a host builds its model from, and reading each tensor into it;
- :mod:`.dropped`: what a host's loader left out of a part it loaded;
- :mod:`.host`: handing a part to a host's loader (streamed or as a state dict), with those checks.

The ComfyUI loader node calls :func:`check_release`, then hands each part to ComfyUI's own
loaders through :mod:`.host`. The names below are the public API.
"""

from .files import (
    EXPECTED_CONTENT,
    MODEL_COMPONENTS,
    SCHEDULER_COMPONENT,
    SCHEDULER_CONFIG,
    TOKENIZER_COMPONENTS,
    TOKENIZER_FILES,
    ComponentWeights,
    find_weight_files,
)
from .fit import ReleaseLayout, check_release
from .loading import CLIP_TEXT_PREFIX, clip_text_keys, load_checked_state_dict, load_component_state_dict

__all__ = [
    "CLIP_TEXT_PREFIX",
    "EXPECTED_CONTENT",
    "MODEL_COMPONENTS",
    "SCHEDULER_COMPONENT",
    "SCHEDULER_CONFIG",
    "TOKENIZER_COMPONENTS",
    "TOKENIZER_FILES",
    "ComponentWeights",
    "ReleaseLayout",
    "check_release",
    "clip_text_keys",
    "find_weight_files",
    "load_checked_state_dict",
    "load_component_state_dict",
]
