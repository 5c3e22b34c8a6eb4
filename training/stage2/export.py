"""Exporting the trained ControlNet: the release's ``controlnet/`` folder and one ComfyUI file.

``export_controlnet`` writes, under ``OUT_DIR``:

- ``controlnet/config.json`` + ``controlnet/diffusion_pytorch_model.safetensors`` (``.fp16``
  before ``.safetensors`` for an fp16 export): the diffusers folder an AuthFace release holds,
  read by the node pack's ``AuthFaceModelLoader``, :mod:`authface_core.release` and diffusers;
- ``authface_controlnet.safetensors``: the same file (a hard link where possible), which
  ComfyUI's ``ControlNetLoader`` (``models/controlnet/``) recognises as a diffusers SDXL
  ControlNet (by ``controlnet_cond_embedding.conv_in.weight``) and converts itself.

``assemble_release`` puts an exported ``controlnet/`` next to the frozen Stage I parts to make a
complete release folder. From the command line::

    python -m training.stage2.export CHECKPOINT OUT_DIR [--dtype fp16] [--release-base DIR [--unet DIR]]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from authface_core.errors import ModelFileError
from authface_core.release import SCHEDULER_COMPONENT, check_release
from training.checkpoints import MODEL_FILE, read_state
from training.files import cast_state, link_or_copy

from .models import BASE_PARTS

SINGLE_FILE_NAME = "authface_controlnet.safetensors"
# The ControlNet's diffusers config, stored in each checkpoint so it can be exported from there.
CONTROLNET_CONFIG_FILE = "controlnet_config.json"
WEIGHTS_STEM = "diffusion_pytorch_model"
EXPORT_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Prefixes wrappers add to state-dict keys: DDP ("module.") and torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class ExportedControlNet:
    folder: Path
    single_file: Path


def controlnet_config(controlnet: Any) -> dict[str, Any]:
    """The diffusers config.json content of a ``ControlNetModel`` (with ``_class_name``)."""
    return json.loads(controlnet.to_json_string())


def export_controlnet(config: Mapping[str, Any], state: Mapping[str, torch.Tensor], out_dir: str | Path,
                      dtype: torch.dtype = torch.float32) -> ExportedControlNet:
    """Write the folder and the single file (module docstring) from a ControlNet's diffusers
    ``config`` and ``state`` dict (diffusers keys), floating tensors cast to ``dtype``. An
    existing export in ``out_dir`` is replaced; the folder is written beside and renamed in.
    Raises ValueError for a state dict that is not a diffusers SDXL-style ControlNet."""
    from safetensors.torch import save_file

    if "controlnet_cond_embedding.conv_in.weight" not in state:
        raise ValueError("the state dict is not a diffusers ControlNet (no controlnet_cond_embedding.conv_in.weight)")
    if dtype not in EXPORT_DTYPES.values():
        raise ValueError(f"export dtype must be one of {', '.join(EXPORT_DTYPES)}, got {dtype}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = cast_state(state, dtype)
    suffix = ".fp16.safetensors" if dtype == torch.float16 else ".safetensors"
    folder = out / "controlnet"
    temp = out / ".controlnet.tmp"
    if temp.exists():
        shutil.rmtree(temp)
    temp.mkdir()
    (temp / "config.json").write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
    save_file(tensors, str(temp / f"{WEIGHTS_STEM}{suffix}"), metadata={"format": "pt"})
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(temp, folder)
    single = link_or_copy(folder / f"{WEIGHTS_STEM}{suffix}", out / SINGLE_FILE_NAME)
    return ExportedControlNet(folder=folder, single_file=single)


def checkpoint_controlnet(checkpoint: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, state dict with diffusers keys) of the ControlNet in a Stage II checkpoint
    written by a single-process or DDP run. Raises CheckpointError/ModelFileError otherwise."""
    from safetensors.torch import load_file

    folder = Path(checkpoint)
    read_state(folder)
    weights = folder / MODEL_FILE
    if not weights.is_file():
        raise ModelFileError(
            f"{folder} has no {MODEL_FILE}: a checkpoint of a sharded (FSDP) run; export at the end of that run "
            "instead, or merge its shards first with `accelerate merge-weights`")
    state = {}
    for key, value in load_file(str(weights)).items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    config = json.loads((folder / CONTROLNET_CONFIG_FILE).read_text(encoding="utf-8"))
    return config, state


def _place(source: Path, target: Path, copy: bool) -> None:
    if copy:
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    else:
        target.symlink_to(source.resolve(), target_is_directory=source.is_dir())


def assemble_release(base: str | Path, controlnet_folder: str | Path, dest: str | Path, unet: str | Path | None = None,
                     copy: bool = False) -> Path:
    """A complete release folder ``dest`` (must not exist): ``controlnet/`` from
    ``controlnet_folder``, ``unet/`` from ``unet`` (default ``base/unet``), the other parts (and
    ``scheduler/``, ``model_index.json`` when present) from ``base``; symlinked, or copied with
    ``copy``. The result is checked with :func:`authface_core.release.check_release` (raising
    ModelFileError when the parts do not fit together). Returns ``dest``."""
    base, dest = Path(base), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists: assemble the release into a new folder")
    parts: dict[str, Path] = {name: base / name for name in BASE_PARTS}
    parts["unet"] = Path(unet) if unet is not None else base / "unet"
    parts["controlnet"] = Path(controlnet_folder)
    for optional in (SCHEDULER_COMPONENT, "model_index.json"):
        if (base / optional).exists():
            parts[optional] = base / optional
    missing = [str(path) for name, path in parts.items() if not path.exists()]
    if missing:
        raise ModelFileError(f"cannot assemble a release: {', '.join(missing)} missing")
    dest.mkdir(parents=True)
    for name, source in parts.items():
        _place(source, dest / name, copy)
    check_release(dest)
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.stage2.export",
                                     description="Export the ControlNet of a Stage II checkpoint.")
    parser.add_argument("checkpoint", type=Path, help="a checkpoints/checkpoint-<step> folder")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dtype", choices=sorted(EXPORT_DTYPES), default="fp32")
    parser.add_argument("--release-base", type=Path, default=None,
                        help=f"also assemble OUT_DIR/release from this folder's {', '.join(BASE_PARTS)}")
    parser.add_argument("--unet", type=Path, default=None, help="the Stage I UNet folder, if not RELEASE_BASE/unet")
    parser.add_argument("--copy", action="store_true", help="copy the release parts instead of symlinking them")
    args = parser.parse_args(argv)
    config, state = checkpoint_controlnet(args.checkpoint)
    exported = export_controlnet(config, state, args.out_dir, EXPORT_DTYPES[args.dtype])
    print(f"wrote {exported.folder} and {exported.single_file}")
    if args.release_base is not None:
        release = assemble_release(args.release_base, exported.folder, args.out_dir / "release", args.unet, args.copy)
        print(f"assembled the release {release}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
