"""Reading what a ComfyUI host saved: output files of a node, and PNGs as RGB floats."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from comfy_host import ComfyHost


def saved_by(host: ComfyHost, entry: dict, node_id: str) -> list[Path]:
    """Files written by node ``node_id`` of a finished prompt (its /history ``entry``)."""
    outputs = entry["outputs"].get(node_id, {}).get("images", [])
    return [host.base_dir / o["type"] / o.get("subfolder", "") / o["filename"] for o in outputs]


def read_png(path: Path) -> np.ndarray:
    """RGB float64 in [0, 1] from an 8- or 16-bit PNG."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert data is not None, f"cannot read {path}"
    scale = 65535.0 if data.dtype == np.uint16 else 255.0
    return data[..., 2::-1].astype(np.float64) / scale
