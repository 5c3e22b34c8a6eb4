"""The face-oriented prior on its own (workflows/api/authface_prior_refine.json): the Stage I UNet
as a face detailer, light img2img on the aligned crops without the ControlNet, on both hosts."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from comfy_host import REPO, ComfyHost
from host_outputs import read_png, saved_by
from release_fixture import cached_release

pytestmark = pytest.mark.host

WORKFLOW = REPO / "workflows" / "api" / "authface_prior_refine.json"
SIZE = 128


def crop_footprints(photo: np.ndarray, faces: int, size: int) -> np.ndarray:
    """Pixels of ``photo`` covered by the aligned crops of its ``faces`` largest faces."""
    from authface_core.faces.align import align_faces
    from authface_core.faces.detect import detect_faces
    from authface_core.faces.select import select_faces
    from authface_core.images import to_rgb_float

    image = to_rgb_float(photo.astype(np.float32))
    found = select_faces(detect_faces([image]), mode="largest", count=faces)
    _, found = align_faces([image], found, size=size)
    footprint = np.zeros(photo.shape[:2], np.uint8)
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64) - 0.5
    for info in found.aligned:
        source = corners @ info.inverse_matrix[:, :2].T + info.inverse_matrix[:, 2]
        cv2.fillConvexPoly(footprint, np.round(source).astype(np.int32), 1)
    return cv2.dilate(footprint, np.ones((5, 5), np.uint8)).astype(bool)


def test_prior_refine_changes_the_faces_and_nothing_else(comfy_host: ComfyHost, t1_png: Path) -> None:
    comfy_host.add_model("authface", "AuthFace", cached_release("plain"))
    prompt = json.loads(WORKFLOW.read_text())
    assert "AuthFaceApply" not in {node["class_type"] for node in prompt.values()}, "no ControlNet here"
    prompt["1"]["inputs"]["image"] = comfy_host.add_input(t1_png)
    prompt["2"]["inputs"].update(select="largest", max_faces=2)
    prompt["4"]["inputs"]["size"] = SIZE
    prompt["6"]["inputs"].update(width=SIZE, height=SIZE)
    prompt["8"]["inputs"]["steps"] = 2
    entry = comfy_host.run(prompt, timeout=1200)

    [saved] = saved_by(comfy_host, entry, "13")
    result, original = read_png(saved), read_png(t1_png)
    assert result.shape == original.shape
    assert len(saved_by(comfy_host, entry, "12")) == 2  # the two refined crops
    inside = crop_footprints(original, faces=2, size=SIZE)
    # SaveImage truncates to 8 bits, so an untouched pixel may come back one level lower.
    untouched = np.round((original[~inside] - result[~inside]) * 255)
    assert untouched.min() >= 0 and untouched.max() <= 1
    change = np.abs(result - original)[inside].mean()
    print(f"ComfyUI {comfy_host.version} prior refine: mean change inside the 2 crop footprints {change:.4f}")
    assert change > 0.005
