"""Model folders of the pack, registered with ComfyUI's folder_paths (extra_model_paths.yaml
entries for the same names are honoured)."""

from __future__ import annotations

import os

import folder_paths

INSIGHTFACE = "insightface"
AUTHFACE = "authface"


def register_model_folders() -> None:
    """Add the pack's default folders under ComfyUI's models directory, keeping existing ones."""
    for name in (INSIGHTFACE, AUTHFACE):
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))


def insightface_root(pack: str) -> str:
    """The ``models/insightface`` root holding ``models/<pack>/``: the first registered root where
    that pack exists, else the default root (so the error names where to put it)."""
    register_model_folders()
    roots = folder_paths.get_folder_paths(INSIGHTFACE)
    for root in roots:
        if os.path.isdir(os.path.join(root, "models", pack)):
            return root
    return roots[0]
