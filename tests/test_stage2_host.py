"""From Stage II training to the ComfyUI user, in both real ComfyUI hosts.

One training step (64 px, the training command line) on the SDXL-family fixture release: its
Vega-shaped UNet frozen, the ControlNet made from it. The export is then put into a release
folder whose other parts are the fixture's, loaded by the node pack's ``AuthFaceModelLoader`` and
run through ``workflows/api/authface_restore_aligned.json`` (2 steps, a real aligned face at
128 px). The single-file export loaded by ComfyUI's stock ``ControlNetLoader`` must give the same
image as the release folder, and the fixture's own ControlNet (loaded the same way) a different
one, so the export is what ran."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from comfy_host import REPO, ComfyHost
from release_fixture import cached_release
from stage2_data import aligned_faces, prepared_faces, write_png
from training.stage2.export import SINGLE_FILE_NAME, assemble_release

pytestmark = pytest.mark.host

ALIGNED_WORKFLOW = REPO / "workflows" / "api" / "authface_restore_aligned.json"
CROP = 128
# What ComfyUI's ControlNet loader logs when it leaves weights out (comfy/controlnet.py).
DROPPED = ("leftover keys", "missing controlnet keys")


@pytest.fixture(scope="module")
def export(idle_comfy_host: ComfyHost, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export of one Stage II step on the fixture release (frozen fixture UNet, fresh ControlNet),
    trained once per host after that host unloaded its models: host and training do not both fit
    in 23 GB otherwise."""
    root = tmp_path_factory.mktemp("stage2_host")
    hq, landmarks = prepared_faces(root)
    output = root / "run"
    result = subprocess.run(
        [sys.executable, "-m", "training.stage2", "--base", str(cached_release("plain")), "--data-dir", str(hq),
         "--landmarks", str(landmarks), "--output-dir", str(output), "--resolution", "64", "--train-batch-size", "1",
         "--max-train-steps", "1", "--dataloader-num-workers", "0", "--learning-rate", "1e-4", "--export-dtype", "fp16",
         "--no-save-final-checkpoint"],
        cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    return output / "export"


@pytest.fixture(scope="module")
def face(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tom Hanks aligned at 512 by the faces core, resized to the 128 px working crop."""
    crop = {name: image for name, image, _ in aligned_faces(512)}["hanks_0"]
    small = cv2.resize(crop, (CROP, CROP), interpolation=cv2.INTER_AREA)
    return write_png(tmp_path_factory.mktemp("stage2_face") / "hanks_128.png", small)


def aligned_prompt(host: ComfyHost, face: Path, release: str) -> dict:
    prompt = json.loads(ALIGNED_WORKFLOW.read_text())
    prompt["1"]["inputs"]["image"] = host.add_input(face)
    prompt["2"]["inputs"].update(release=release, weight_dtype="fp32")
    prompt["3"]["inputs"].update(width=CROP, height=CROP)
    prompt["5"]["inputs"]["steps"] = 2
    prompt["12"]["inputs"]["filename_prefix"] = f"stage2/{uuid.uuid4().hex[:8]}"
    return prompt


def run_and_read(host: ComfyHost, prompt: dict) -> np.ndarray:
    entry = host.run(prompt, timeout=1200)
    [saved] = [host.base_dir / o["type"] / o.get("subfolder", "") / o["filename"]
               for o in entry["outputs"]["12"]["images"]]
    data = cv2.imread(str(saved), cv2.IMREAD_UNCHANGED)
    assert data is not None and data.dtype == np.uint16, f"{saved} is not a 16-bit PNG"
    assert data.shape == (CROP, CROP, 3)
    return data[..., ::-1].astype(np.float64) / 65535.0


def with_controlnet_file(host: ComfyHost, prompt: dict, name: str, path: Path) -> dict:
    """``prompt`` with its ControlNet taken from ``path`` by ComfyUI's stock ControlNetLoader."""
    prompt["20"] = {"class_type": "ControlNetLoader",
                    "inputs": {"control_net_name": host.add_model("controlnet", name, path)}}
    prompt["4"]["inputs"]["control_net"] = ["20", 0]
    return prompt


def test_trained_controlnet_runs_in_comfyui(idle_comfy_host: ComfyHost, export: Path, face: Path,
                                            tmp_path: Path) -> None:
    host = idle_comfy_host  # earlier tests' models unloaded before the training run of `export`
    fixture = cached_release("plain")
    trained = assemble_release(fixture, export / "controlnet", tmp_path / "release")
    host.add_model("authface", "stage2_trained", trained)
    ours = run_and_read(host, aligned_prompt(host, face, "stage2_trained"))

    # The next prompts reuse the release loader's cached output (UNet, CLIP, VAE are the
    # fixture's) and swap only the ControlNet, loaded by ComfyUI's own ControlNetLoader.
    log_start = len(host.log_text())
    single = run_and_read(host, with_controlnet_file(
        host, aligned_prompt(host, face, "stage2_trained"), "authface_stage2.safetensors",
        export / SINGLE_FILE_NAME))
    new_log = host.log_text()[log_start:].lower()
    assert "controlnet" in new_log
    assert not [phrase for phrase in DROPPED if phrase in new_log], new_log[-2000:]
    assert float(np.abs(single - ours).max()) <= 2 / 65535, "the single file is not the exported ControlNet"

    original = run_and_read(host, with_controlnet_file(
        host, aligned_prompt(host, face, "stage2_trained"), "fixture_controlnet.safetensors",
        fixture / "controlnet" / "diffusion_pytorch_model.safetensors"))
    difference = float(np.abs(ours - original).mean())
    print(f"ComfyUI {host.version}: trained vs fixture ControlNet, mean |diff| {difference:.4f}")
    assert difference > 0.01, "the workflow did not run the exported ControlNet"
    host.post("/free", {"unload_models": True, "free_memory": True})
