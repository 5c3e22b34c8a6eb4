"""Atomic, resumable training checkpoints for both stages, on accelerate's ``save_state`` / ``load_state``.

A checkpoint is the folder ``<root>/checkpoint-<step, 8 digits>`` holding:

- accelerate's state: every prepared model (``model.safetensors``, ``model_1.safetensors``, ...),
  optimizer and lr scheduler, and every process's random states;
- ``extras/<name>.pt``: the state dicts of objects the trainer keeps outside accelerate (EMA
  weights, discriminators and their optimizer), read back with ``torch.load(weights_only=True)``.
  accelerate's own ``register_for_checkpointing`` is not used because it unpickles those files
  with ``weights_only=False``, i.e. would run arbitrary code from a checkpoint folder;
- any small text files the trainer adds (e.g. a model config);
- ``training_state.json``: the step, the data position and whatever else the trainer needs to
  continue; written last, so its presence marks a complete checkpoint.

Every process writes its part into ``<root>/.tmp-checkpoint-<step>``; after all have finished,
the main process fsyncs the files and renames the folder into place with ``os.replace``. A run
killed at any moment therefore leaves complete checkpoints plus, at worst, a temporary folder that
:func:`remove_partial` deletes. The folder must be on a file system all processes share, as for
any multi-node accelerate checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from authface_core.errors import AuthFaceError
from authface_core.files import fsync_dir

STATE_FILE = "training_state.json"
EXTRAS_DIR = "extras"
# accelerate's file name for the first prepared model (accelerate/utils/constants.py).
MODEL_FILE = "model.safetensors"
_NAME = re.compile(r"^checkpoint-(\d{8})$")
_TEMP_PREFIX = ".tmp-checkpoint-"


class CheckpointError(AuthFaceError):
    """A checkpoint that was asked for is missing or incomplete."""


class Stateful(Protocol):
    """Anything with ``state_dict()`` / ``load_state_dict()`` (modules, optimizers, EMA)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:08d}"


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as (step, folder), oldest first."""
    folder = Path(root)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match and (entry / STATE_FILE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def remove_partial(root: str | Path) -> list[Path]:
    """Delete the temporary folders left by runs killed while saving; returns what was deleted."""
    folder = Path(root)
    stale = sorted(folder.glob(_TEMP_PREFIX + "*")) if folder.is_dir() else []
    for entry in stale:
        shutil.rmtree(entry, ignore_errors=True)
    return stale


def read_state(folder: str | Path) -> dict[str, Any]:
    """``training_state.json`` of a checkpoint folder; CheckpointError if it is not a complete one."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a complete checkpoint (no {STATE_FILE})")
    return json.loads(path.read_text(encoding="utf-8"))


def resolve_resume(root: str | Path, setting: str | None) -> Path | None:
    """The checkpoint to resume from: None for ``setting`` None or "none"; for "latest" the
    newest complete one under ``root`` (None when there is none: a fresh run); else the folder
    ``setting`` names (a path, or a checkpoint name under ``root``). Raises CheckpointError for a
    named checkpoint that is missing or incomplete, listing the complete ones."""
    if setting is None or setting.lower() == "none":
        return None
    if setting == "latest":
        found = list_checkpoints(root)
        return found[-1][1] if found else None
    path = Path(setting)
    if not path.is_absolute() and not path.exists():
        path = Path(root) / setting
    if not (path / STATE_FILE).is_file():
        complete = ", ".join(p.name for _, p in list_checkpoints(root)) or "none"
        raise CheckpointError(f"cannot resume from {setting}: {path} is not a complete checkpoint (no {STATE_FILE}); "
                              f"complete ones under {root}: {complete}")
    return path


def _fsync_tree(folder: Path) -> None:
    for entry in sorted(folder.rglob("*"), reverse=True):
        if entry.is_file():
            with open(entry, "rb") as handle:
                os.fsync(handle.fileno())
        elif entry.is_dir():
            fsync_dir(entry)
    fsync_dir(folder)


def save_checkpoint(accelerator: Any, root: str | Path, step: int, state: Mapping[str, Any], keep: int | None,
                    extras: Mapping[str, Stateful] | None = None, files: Mapping[str, str] | None = None) -> Path:
    """Write the checkpoint of optimizer step ``step`` under ``root`` (module docstring).

    Collective: every process must call it. ``state`` goes into ``training_state.json`` together
    with ``step``; ``extras`` are saved by the main process (they must be identical on all
    processes, as replicated weights are); ``files`` maps file names to text. Only the newest
    ``keep`` checkpoints are kept (None: all). Returns the final folder."""
    folder = Path(root)
    final = folder / checkpoint_name(step)
    temp = folder / f"{_TEMP_PREFIX}{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(temp, ignore_errors=True)
        # Created before anyone writes: accelerate creates the folder on the main process only.
        temp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if extras:
            (temp / EXTRAS_DIR).mkdir()
            for name, obj in extras.items():
                torch.save(obj.state_dict(), temp / EXTRAS_DIR / f"{name}.pt")
        for name, text in (files or {}).items():
            (temp / name).write_text(text, encoding="utf-8")
        (temp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=2) + "\n", encoding="utf-8")
        _fsync_tree(temp)
        if final.exists():
            # The same step saved again (a resumed run repeating it): swap the old one out first.
            old = folder / f"{_TEMP_PREFIX}old-{step:08d}"
            os.replace(final, old)
            os.replace(temp, final)
            shutil.rmtree(old)
        else:
            os.replace(temp, final)
        fsync_dir(folder)
        if keep is not None:
            for _, stale in list_checkpoints(folder)[:-keep]:
                shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    return final


def load_extra(folder: str | Path, name: str) -> dict[str, Any]:
    """The state dict saved as extra ``name`` in a checkpoint, on the CPU (safe unpickling only)."""
    path = Path(folder) / EXTRAS_DIR / f"{name}.pt"
    if not path.is_file():
        raise CheckpointError(f"{folder} holds no {name!r} state ({path} is missing): it was written by a run with "
                              "other settings; resume with the same settings, or start afresh with "
                              "--resume-from-checkpoint none")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(accelerator: Any, folder: str | Path, extras: Mapping[str, Stateful] | None = None
                    ) -> dict[str, Any]:
    """Restore accelerate's state and ``extras`` from the checkpoint ``folder``; returns its
    ``training_state.json``. CheckpointError when the folder is incomplete or lacks an extra."""
    state = read_state(folder)
    accelerator.load_state(str(folder))
    for name, obj in (extras or {}).items():
        obj.load_state_dict(load_extra(folder, name))
    return state
