"""The faces nodes inside real ComfyUI hosts: registration, the round-trip workflow, face-less photos."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from comfy_host import REPO, ComfyHost
from host_outputs import saved_by

pytestmark = pytest.mark.host

FACE_NODES = {
    "AuthFaceDetectFaces": (["image", "detector", "select", "max_faces", "face_indices", "min_face_size", "order"],
                            ["AUTHFACE_FACES", "IMAGE", "INT"]),
    "AuthFaceAlignFaces": (["image", "faces", "size", "method", "border"], ["IMAGE", "AUTHFACE_FACES"]),
    "AuthFaceRegionMasks": (["faces", "eyes", "mouth", "face", "resolution", "feather"], ["MASK"]),
    "AuthFacePasteFaces": (["image", "crops", "faces", "mask", "feather"], ["IMAGE", "IMAGE"]),
}
ROUNDTRIP = REPO / "workflows" / "api" / "authface_face_roundtrip.json"


def read_rgb(path: Path) -> np.ndarray:
    """RGB float64 in [0, 1], decoded with PIL like ComfyUI's LoadImage (libjpeg builds differ)."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def test_pack_loads_without_errors(comfy_host: ComfyHost) -> None:
    """What the host logged while loading custom nodes, before it started serving: prompts of
    other tests sharing this host log refusals (with tracebacks) on purpose."""
    log = comfy_host.log_text()
    assert "Starting server" in log
    startup = log.split("Starting server", 1)[0]
    assert "ComfyUI-AuthFace" in startup
    assert "IMPORT FAILED" not in startup
    assert "Traceback" not in startup


def test_object_info_lists_every_face_node(comfy_host: ComfyHost) -> None:
    info = comfy_host.object_info()
    for node_id, (inputs, outputs) in FACE_NODES.items():
        assert node_id in info, f"{node_id} not registered"
        spec = info[node_id]
        declared = list(spec["input"].get("required", {})) + list(spec["input"].get("optional", {}))
        assert declared == inputs
        assert spec["output"] == outputs
        assert spec["category"].startswith("AuthFace")
    assert info["AuthFaceDetectFaces"]["input"]["required"]["detector"][1]["options"][0] == "dlib"


def test_roundtrip_workflow_reproduces_the_photo(comfy_host: ComfyHost, t1_png: Path) -> None:
    prompt = json.loads(ROUNDTRIP.read_text())
    prompt["1"]["inputs"]["image"] = comfy_host.add_input(t1_png)
    entry = comfy_host.run(prompt)

    [saved] = saved_by(comfy_host, entry, "10")
    result, original = read_rgb(saved), read_rgb(t1_png)
    assert result.shape == original.shape
    value = psnr(result, original)
    print(f"round trip through ComfyUI {comfy_host.version}: PSNR {value:.2f} dB")
    assert value > 48.0

    crops = saved_by(comfy_host, entry, "5")
    assert len(crops) == 6
    assert all(read_rgb(p).shape == (512, 512, 3) for p in crops)
    masks = [read_rgb(p) for p in saved_by(comfy_host, entry, "8")]
    assert len(masks) == 6
    coverage = [float(m.mean()) for m in masks]
    assert all(0.005 < c < 0.2 for c in coverage), coverage
    [preview] = saved_by(comfy_host, entry, "3")
    assert np.abs(read_rgb(preview) - original).max() > 0.5


def test_faceless_photo_in_a_batch_passes_through(comfy_host: ComfyHost, t1_png: Path, tmp_path: Path) -> None:
    original = cv2.imread(str(t1_png))
    flat = np.full_like(original, 128)
    cv2.putText(flat, "no face here", (40, 400), cv2.FONT_HERSHEY_SIMPLEX, 4, (30, 60, 200), 8)
    cv2.imwrite(str(tmp_path / "noface.png"), flat)
    prompt = json.loads(ROUNDTRIP.read_text())
    prompt["1"]["inputs"]["image"] = comfy_host.add_input(t1_png)
    prompt["11"] = {"class_type": "LoadImage", "inputs": {"image": comfy_host.add_input(tmp_path / "noface.png")}}
    prompt["12"] = {"class_type": "ImageBatch", "inputs": {"image1": ["11", 0], "image2": ["1", 0]}}
    for node in prompt.values():
        for name, value in node["inputs"].items():
            if value == ["1", 0] and node["class_type"] != "ImageBatch":
                node["inputs"][name] = ["12", 0]
    entry = comfy_host.run(prompt)

    saved = saved_by(comfy_host, entry, "10")
    assert len(saved) == 2
    faceless, photo = read_rgb(saved[0]), read_rgb(saved[1])
    np.testing.assert_array_equal(np.round(faceless * 255), flat[..., ::-1].astype(np.float64))
    assert psnr(photo, read_rgb(t1_png)) > 48.0
    assert "no face" in comfy_host.log_text()


def test_photo_without_any_face(comfy_host: ComfyHost, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = (rng.random((300, 420, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "noise.png"), noise)
    prompt = copy.deepcopy(json.loads(ROUNDTRIP.read_text()))
    prompt["1"]["inputs"]["image"] = comfy_host.add_input(tmp_path / "noise.png")
    entry = comfy_host.run(prompt)
    [saved] = saved_by(comfy_host, entry, "10")
    np.testing.assert_array_equal(cv2.imread(str(saved)), noise)
