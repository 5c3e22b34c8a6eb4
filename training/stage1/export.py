"""Exporting the fine-tuned UNet: a release ``unet/`` folder and a single file for ComfyUI.

Both hold the same tensors under diffusers' key names:

- ``<export>/unet/config.json`` + ``diffusion_pytorch_model.safetensors``: the ``unet/`` part of an
  AuthFace release (docs/method.md), loadable with ``UNet2DConditionModel.from_pretrained``;
- ``<export>/<name>.safetensors``: the same file under another name (a hard link when the file
  system allows it, else a copy) for ComfyUI's ``models/diffusion_models/`` and its UNETLoader:
  ComfyUI's ``load_diffusion_model_state_dict`` recognises diffusers-keyed SDXL UNets.

Files are written under temporary names and renamed into place, so an export is whole or absent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from authface_core.files import write_atomic
from training.files import cast_state, link_or_copy

UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"
SINGLE_FILE = "authface_stage1_unet.safetensors"


def export_unet(
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    out_dir: str | Path,
    dtype: torch.dtype = torch.float32,
    single_file: str = SINGLE_FILE,
) -> tuple[Path, Path]:
    """Write ``state_dict`` (a diffusers ``UNet2DConditionModel`` state dict) with its ``config``
    (the model's ``config``, e.g. ``unet.config``) as ``out_dir/unet/`` and
    ``out_dir/single_file``, floating-point tensors cast to ``dtype``.

    Returns (the unet folder, the single file). Existing files are replaced.
    """
    import diffusers
    from safetensors.torch import save_file

    folder = Path(out_dir) / "unet"
    folder.mkdir(parents=True, exist_ok=True)
    tensors = cast_state(state_dict, dtype)
    settings = {key: value for key, value in dict(config).items() if not key.startswith("_")}
    settings = {"_class_name": "UNet2DConditionModel", "_diffusers_version": diffusers.__version__, **settings}
    text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
    write_atomic(folder / "config.json", lambda path: path.write_text(text, encoding="utf-8"))
    weights = folder / UNET_WEIGHTS
    write_atomic(weights, lambda path: save_file(tensors, str(path), metadata={"format": "pt"}))

    single = link_or_copy(weights, Path(out_dir) / single_file)
    return folder, single
