"""AuthFace Conditioning encodes through ComfyUI's scheduled encoding, so scheduled CLIP hooks work
as with CLIPTextEncode: a CLIP LoRA hook switched off half-way (Create Hook LoRA -> Set Hook
Keyframes -> Set CLIP Hooks with schedule_clip) gives one conditioning per keyframe range, each
with its range, in real hosts. A plain encode gives one conditioning and ignores the schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from comfy_host import ComfyHost
from release_fixture import cached_release

pytestmark = pytest.mark.host

RELEASE = "AuthFace"
LORA_RANK = 4


def _clip_l_lora(release: Path, dest: Path) -> Path:
    """A rank-4 LoRA on the first MLP layer of the release's CLIP-L, in the kohya key layout
    ComfyUI reads for SDXL text encoders (``lora_te1_*``), big enough to move the encoding."""
    config = json.loads((release / "text_encoder" / "config.json").read_text())
    g = torch.Generator().manual_seed(0)
    base = "lora_te1_text_model_encoder_layers_0_mlp_fc1"
    save_file({
        f"{base}.lora_up.weight": torch.randn(config["intermediate_size"], LORA_RANK, generator=g),
        f"{base}.lora_down.weight": torch.randn(LORA_RANK, config["hidden_size"], generator=g),
        f"{base}.alpha": torch.tensor(float(LORA_RANK)),
    }, dest)
    return dest


def _conditioning_text(host: ComfyHost, hook_lora: str | None) -> str:
    """What Preview Any shows of AuthFace Conditioning's positive output (tensor values included),
    with the CLIP hooked by ``hook_lora`` when given."""
    prompt: dict = {
        "1": {"class_type": "AuthFaceModelLoader",
              "inputs": {"release": RELEASE, "weight_dtype": "fp32", "prefer_fp16_files": False}},
        "3": {"class_type": "AuthFaceConditioning",
              "inputs": {"clip": ["1", 1], "width": 128, "height": 128, "positive_prompt": "a face",
                         "negative_prompt": "", "encoding": "release_77_tokens"}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
    }
    if hook_lora is not None:
        prompt["5"] = {"class_type": "CreateHookLora",
                       "inputs": {"lora_name": hook_lora, "strength_model": 0.0, "strength_clip": 1.0}}
        prompt["7"] = {"class_type": "CreateHookKeyframe", "inputs": {"strength_mult": 0.0, "start_percent": 0.5}}
        prompt["8"] = {"class_type": "SetHookKeyframes", "inputs": {"hooks": ["5", 0], "hook_kf": ["7", 0]}}
        prompt["6"] = {"class_type": "SetClipHooks",
                       "inputs": {"clip": ["1", 1], "apply_to_conds": False, "schedule_clip": True, "hooks": ["8", 0]}}
        prompt["3"]["inputs"]["clip"] = ["6", 0]
    entry = host.run(prompt, timeout=600)
    return "".join(entry["outputs"]["4"]["text"])


def test_scheduled_clip_hooks_reach_the_conditioning(comfy_host: ComfyHost, tmp_path: Path) -> None:
    release = cached_release("plain")
    comfy_host.add_model("authface", RELEASE, release)
    lora = comfy_host.add_model("loras", "authface_test_clip_lora.safetensors",
                                _clip_l_lora(release, tmp_path / "clip_lora.safetensors"))
    plain = _conditioning_text(comfy_host, None)
    hooked = _conditioning_text(comfy_host, lora)
    assert plain.count("pooled_output") == 1 and "clip_start_percent" not in plain, plain[:800]
    # One entry per keyframe range (LoRA on before 50 %, off after), sizes kept on each.
    assert hooked.count("pooled_output") == 2 and hooked.count("'width': 128") == 2, hooked[:1500]
    assert "'clip_start_percent': 0.5" in hooked and "'clip_end_percent': 0.5" in hooked, hooked[:1500]
