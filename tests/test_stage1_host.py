"""The Stage I single-file export in real ComfyUI hosts: ComfyUI's own UNETLoader
(``models/diffusion_models/``) reads an SDXL-family UNet exported by ``training.stage1.export``
with every weight, and samples exactly what the same weights give through the release loader."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_host import ComfyHost
from release_fixture import cached_release
from training.stage1.export import export_unet
from training.stage1.models import load_unet

pytestmark = pytest.mark.host

RELEASE = "AuthFace"
DROPPED_WEIGHT_LINES = ("unet missing", "unet unexpected", "left over keys in diffusion model")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Segmind-Vega-shaped release UNet (0.75B) exported as Stage I exports its result."""
    unet = load_unet(cached_release("plain"))
    _, single = export_unet(unet.state_dict(), unet.config, tmp_path_factory.mktemp("stage1_export"), torch.float32)
    unet.to("meta")
    return single


def _sample_branch(prefix: str, model: list, first_id: int) -> dict:
    """KSampler (1 euler step, cfg 1, 64x64) -> VAEDecode -> SaveImage on ``model``."""
    ids = [str(first_id + k) for k in range(3)]
    return {
        ids[0]: {"class_type": "KSampler", "inputs": {
            "model": model, "seed": 7, "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0}},
        ids[1]: {"class_type": "VAEDecode", "inputs": {"samples": [ids[0], 0], "vae": ["1", 2]}},
        ids[2]: {"class_type": "SaveImage", "inputs": {"images": [ids[1], 0], "filename_prefix": prefix}},
    }


def test_unet_loader_reads_the_export_completely(idle_comfy_host: ComfyHost, exported: Path) -> None:
    host = idle_comfy_host  # earlier tests' models unloaded before `exported` loads the UNet
    host.add_model("authface", RELEASE, cached_release("plain"))
    name = host.add_model("diffusion_models", f"stage1-{uuid.uuid4().hex[:8]}.safetensors", exported)
    tag = uuid.uuid4().hex[:8]
    prompt = {
        "1": {"class_type": "AuthFaceModelLoader",
              "inputs": {"release": RELEASE, "weight_dtype": "default", "prefer_fp16_files": False}},
        "2": {"class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": "default"}},
        "3": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "a close-up portrait, soft lighting", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        **_sample_branch(f"stage1/{tag}_export", ["2", 0], 10),
        **_sample_branch(f"stage1/{tag}_release", ["1", 0], 20),
    }
    log_start = len(host.log_text())
    entry = host.run(prompt, timeout=600)
    log = host.log_text()[log_start:]
    assert "model_type EPS" in log  # the UNETLoader's load is in the part of the log checked
    assert not [line for line in log.splitlines() if any(p in line for p in DROPPED_WEIGHT_LINES)], log[-3000:]

    outputs = entry["outputs"]
    paths = {node: host.base_dir / "output" / image["subfolder"] / image["filename"]
             for node in ("12", "22") for image in outputs[node]["images"]}
    export_image = np.asarray(Image.open(paths["12"]))
    release_image = np.asarray(Image.open(paths["22"]))
    assert export_image.shape == (64, 64, 3)
    assert export_image.std() > 1.0
    assert np.array_equal(export_image, release_image)
