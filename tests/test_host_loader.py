"""AuthFace Model Loader inside real ComfyUI hosts refuses a release whose UNet holds weights
ComfyUI's preset leaves out, naming the part and the tensors (found from data, not from the log)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from comfy_host import REPO, ComfyHost, HostError
from release_fixture import cached_release

pytestmark = pytest.mark.host

ALIGNED_WORKFLOW = REPO / "workflows" / "api" / "authface_restore_aligned.json"
# A tensor of the cross-attention mid block (docs/fixtures.md): the Vega-shaped fixture's
# ComfyUI preset has a plain resnet mid block and no place for it.
EXTRA_KEY = "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"
UNET_FILE = "diffusion_pytorch_model.safetensors"


def _release_with_extra_unet_tensor(plain: Path, dest: Path) -> Path:
    """``plain`` with its UNet split into two shards: the original file (linked, not copied) and a
    small one holding :data:`EXTRA_KEY`, listed by a diffusers shard index."""
    for part in plain.iterdir():
        if part.name != "unet":
            (dest / part.name).symlink_to(part)
    unet = dest / "unet"
    unet.mkdir()
    shutil.copyfile(plain / "unet" / "config.json", unet / "config.json")
    first, second = (UNET_FILE.replace(".safetensors", f"-0000{i}-of-00002.safetensors") for i in (1, 2))
    (unet / first).symlink_to(plain / "unet" / UNET_FILE)
    with safe_open(str(plain / "unet" / UNET_FILE), framework="pt") as handle:
        weight_map = dict.fromkeys(handle.keys(), first)
    save_file({EXTRA_KEY: torch.randn(1280, 2048, generator=torch.Generator().manual_seed(0))}, unet / second)
    weight_map[EXTRA_KEY] = second
    (unet / f"{UNET_FILE}.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dest


def test_unet_weights_left_out_by_the_preset_are_refused(comfy_host: ComfyHost, hanks_photo: Path,
                                                         tmp_path: Path) -> None:
    release = _release_with_extra_unet_tensor(cached_release("plain"), tmp_path)
    prompt = json.loads(ALIGNED_WORKFLOW.read_text())
    prompt["1"]["inputs"]["image"] = comfy_host.add_input(hanks_photo)
    prompt["2"]["inputs"]["release"] = comfy_host.add_model("authface", "AuthFace_extra_unet_tensor", release)
    with pytest.raises(HostError) as failure:
        comfy_host.run(prompt, timeout=600)
    # The host's log (in the error too) has its own "left over keys" line: match the node's error.
    pattern = (r"ComfyUI loaded the SDXL-family UNet from \S*AuthFace_extra_unet_tensor/unet without some of "
               r"its weights.*1 tensor\(s\) were not taken: " + re.escape(EXTRA_KEY))
    assert re.search(pattern, str(failure.value)), str(failure.value)[:3000]
