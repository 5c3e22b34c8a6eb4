"""The random-weight AuthFace release fixture (tests/release_fixture.py).

Checks that the cached release is a usable stand-in for the real one: the diffusers folders load
back with diffusers/transformers in all three variants with the same weights, prompts and hints
change what the models compute, and ComfyUI's own loaders (both supported hosts) take every
weight of every part and compute what diffusers computes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import release_fixture
from comfy_host import HOST_VERSIONS, REPO, host_dir, host_env

PYTHON = REPO / ".venv" / "bin" / "python"
PROMPT = "portrait photo of an astronaut in a white spacesuit, studio lighting"
OTHER_PROMPT = "blurry low resolution jpeg of a cat sleeping on a red sofa"
IMAGE_SIZE = 128  # ComfyUI-vs-diffusers comparisons: latent 16x16, cheap on CPU
WEIGHT_FILES = {
    "text_encoder": "model", "text_encoder_2": "model", "unet": "diffusion_pytorch_model",
    "controlnet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model",
}
# Phrases ComfyUI logs when a loader drops or lacks weights (0.30.0 and 0.3.75): "unet missing:" /
# "unet unexpected:" (comfy/model_base.py), "left over keys in diffusion model:", "clip missing:",
# "clip unexpected", "Missing VAE keys", "Leftover VAE keys" (comfy/sd.py), "missing controlnet
# keys:", "unexpected controlnet keys:", "leftover keys:" (comfy/controlnet.py).
DROP_PHRASES = ("missing", "unexpected", "leftover", "left over")
# SDXL's CLIP-L checkpoint is a transformers CLIPTextModel, which has no text_projection; ComfyUI's
# CLIP-L module has one, so loading the text encoders one file each (load_text_encoder_state_dicts)
# logs this line for the real SDXL/AuthFace text_encoder too. SDXL conditioning never uses CLIP-L's
# projected pooled output (sdxl_clip.SDXLClipModel returns clip_g's), and ComfyUI silences this very
# key on its single-file checkpoint path (comfy/sd.py, CLIP.__init__).
CLIP_L_PROJECTION_LINE = "WARNING: clip missing: ['text_projection.weight']"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def plain() -> Path:
    return release_fixture.cached_release("plain")


@pytest.fixture(scope="module")
def sharded() -> Path:
    return release_fixture.cached_release("sharded")


@pytest.fixture(scope="module")
def fp16() -> Path:
    return release_fixture.cached_release("fp16")


@pytest.fixture(scope="module")
def unet(plain: Path) -> Iterator[torch.nn.Module]:
    from diffusers import UNet2DConditionModel

    model = UNet2DConditionModel.from_pretrained(plain / "unet").eval()
    yield model
    model.to("meta")


@pytest.fixture(scope="module")
def controlnet(plain: Path) -> Iterator[torch.nn.Module]:
    from diffusers import ControlNetModel

    model = ControlNetModel.from_pretrained(plain / "controlnet").eval()
    yield model
    model.to("meta")


def _photo(path: Path, size: int) -> torch.Tensor:
    """(1, 3, size, size) float32 RGB in [0, 1], centre square crop."""
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def _std_ratio(residual: torch.Tensor, feature: torch.Tensor) -> float:
    return float(residual.double().std() / feature.double().std())


def _time_ids(size: int, batch: int = 1) -> torch.Tensor:
    return torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32).repeat(batch, 1)


@torch.no_grad()
def _encode(release: Path, prompts: list[str]) -> dict[str, torch.Tensor]:
    """SDXL conditioning as diffusers' SDXL pipelines build it: penultimate hidden states of both
    encoders, concatenated, and text_encoder_2's projected pooled output."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    out: dict[str, torch.Tensor] = {}
    for index, (folder, cls) in enumerate((("text_encoder", CLIPTextModel),
                                            ("text_encoder_2", CLIPTextModelWithProjection)), start=1):
        tokenizer = CLIPTokenizer.from_pretrained(release / folder.replace("text_encoder", "tokenizer"))
        ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        model = cls.from_pretrained(release / folder).eval()
        result = model(ids, output_hidden_states=True)
        out[f"ids_{index}"] = ids
        out[f"hidden_{index}"] = result.hidden_states[-2]
        if cls is CLIPTextModelWithProjection:
            out["pooled"] = result.text_embeds
        model.to("meta")
    out["context"] = torch.cat([out["hidden_1"], out["hidden_2"]], dim=-1)
    return out


@pytest.fixture(scope="module")
def conditioning(plain: Path) -> dict[str, torch.Tensor]:
    return _encode(plain, [PROMPT, OTHER_PROMPT])


@pytest.fixture(scope="module")
def probe_inputs(astronaut: Path, conditioning: dict[str, torch.Tensor]) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    latent_side = IMAGE_SIZE // 8
    return {
        "prompt": PROMPT,
        "size": IMAGE_SIZE,
        "timestep": 500.0,
        "latent": torch.randn(1, 4, latent_side, latent_side, generator=generator),
        "vae_latent": torch.randn(1, 4, latent_side, latent_side, generator=generator) / 0.13025,
        "hint": _photo(astronaut, IMAGE_SIZE),
        "context": conditioning["context"][:1].clone(),
        "pooled": conditioning["pooled"][:1].clone(),
    }


@pytest.fixture(scope="module")
def reference(plain: Path, unet: torch.nn.Module, controlnet: torch.nn.Module,
              probe_inputs: dict[str, Any]) -> dict[str, Any]:
    """What diffusers computes for ``probe_inputs``: the numbers ComfyUI must reproduce."""
    with torch.no_grad():
        return _reference(plain, unet, controlnet, probe_inputs)


def _reference(plain: Path, unet: torch.nn.Module, controlnet: torch.nn.Module,
               inputs: dict[str, Any]) -> dict[str, Any]:
    from diffusers import AutoencoderKL

    timestep = torch.tensor([inputs["timestep"]])
    added = {"text_embeds": inputs["pooled"], "time_ids": _time_ids(inputs["size"])}
    eps = unet(inputs["latent"], timestep, encoder_hidden_states=inputs["context"], added_cond_kwargs=added).sample
    down, mid = controlnet(inputs["latent"], timestep, encoder_hidden_states=inputs["context"],
                           controlnet_cond=inputs["hint"], added_cond_kwargs=added, return_dict=False)
    vae = AutoencoderKL.from_pretrained(plain / "vae").eval()
    vae_mean = vae.encode(inputs["hint"] * 2 - 1).latent_dist.mean
    decoded = ((vae.decode(inputs["vae_latent"]).sample + 1) / 2).clamp(0, 1)
    vae.to("meta")
    return {"eps": eps, "residuals": [*down, mid], "vae_mean": vae_mean, "vae_decoded": decoded.permute(0, 2, 3, 1)}


# --------------------------------------------------------------------------- layout


def test_release_layout_and_scheduler(plain: Path) -> None:
    from diffusers import DDPMScheduler

    index = json.loads((plain / "model_index.json").read_text())
    components = {name: spec for name, spec in index.items()
                  if isinstance(spec, list) and spec[0] is not None}
    assert set(components) == {"controlnet", "scheduler", "text_encoder", "text_encoder_2",
                               "tokenizer", "tokenizer_2", "unet", "vae"}
    for name in ("unet", "controlnet", "vae"):
        assert json.loads((plain / name / "config.json").read_text())["_class_name"] == components[name][1]
    for name in ("text_encoder", "text_encoder_2"):
        assert json.loads((plain / name / "config.json").read_text())["architectures"] == [components[name][1]]
    for name, stem in WEIGHT_FILES.items():
        assert (plain / name / f"{stem}.safetensors").is_file()

    unet_config = json.loads((plain / "unet" / "config.json").read_text())
    for key, value in release_fixture.unet_config().items():
        expected = list(value) if isinstance(value, tuple) else value
        assert unet_config[key] == expected, key
    controlnet_config = json.loads((plain / "controlnet" / "config.json").read_text())
    assert controlnet_config["conditioning_embedding_out_channels"] == [16, 32, 96, 256]
    assert controlnet_config["conditioning_channels"] == 3

    scheduler = DDPMScheduler.from_pretrained(plain / "scheduler")
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.prediction_type == "epsilon"
    assert float(scheduler.betas[0]) == pytest.approx(0.00085)
    assert float(scheduler.betas[-1]) == pytest.approx(0.012)
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(981, 0, -20))  # AuthFace's 981, 961, ..., 1

    report = json.loads((plain / release_fixture.REPORT_NAME).read_text())
    print(json.dumps(report, indent=1))
    assert report["seed"] == 0
    assert set(report) >= {"text_encoders", "unet", "controlnet", "vae"}


def test_tokenizers_are_sdxls(plain: Path) -> None:
    from transformers import CLIPTokenizer

    first = CLIPTokenizer.from_pretrained(plain / "tokenizer")
    second = CLIPTokenizer.from_pretrained(plain / "tokenizer_2")
    for tokenizer in (first, second):
        assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (49406, 49407)
        assert tokenizer.model_max_length == 77
    assert first.pad_token_id == 49407
    assert (second.pad_token, second.pad_token_id) == ("!", 0)
    ids_1 = first(PROMPT, padding="max_length", max_length=77).input_ids
    ids_2 = second(PROMPT, padding="max_length", max_length=77).input_ids
    length = ids_1.index(49407) + 1
    assert ids_1[:length] == ids_2[:length]
    assert ids_1[0] == 49406 and 5 < length < 77
    assert set(ids_1[length:]) == {49407} and set(ids_2[length:]) == {0}


# --------------------------------------------------------------------------- variants


def _assert_same_weights(loaded: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                         dtype: torch.dtype) -> None:
    assert loaded.keys() == reference.keys()
    for key, value in reference.items():
        assert loaded[key].dtype == dtype, key
        assert torch.equal(loaded[key], value.to(dtype)), key


def test_sharded_variant_holds_the_same_unet_and_controlnet(
        sharded: Path, plain: Path, unet: torch.nn.Module, controlnet: torch.nn.Module) -> None:
    from diffusers import ControlNetModel, UNet2DConditionModel

    for folder, cls, model in (("unet", UNet2DConditionModel, unet), ("controlnet", ControlNetModel, controlnet)):
        index = json.loads((sharded / folder / "diffusion_pytorch_model.safetensors.index.json").read_text())
        shards = sorted(set(index["weight_map"].values()))
        assert len(shards) >= 2, shards
        assert shards[0] == f"diffusion_pytorch_model-00001-of-{len(shards):05d}.safetensors"
        assert not (sharded / folder / "diffusion_pytorch_model.safetensors").exists()
        loaded = cls.from_pretrained(sharded / folder)
        _assert_same_weights(loaded.state_dict(), model.state_dict(), torch.float32)
        loaded.to("meta")
    for name in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler", "model_index.json"):
        assert (sharded / name).is_symlink() and (sharded / name).resolve() == (plain / name).resolve()


def test_fp16_variant_is_the_plain_weights_rounded(
        fp16: Path, plain: Path, unet: torch.nn.Module, controlnet: torch.nn.Module) -> None:
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    for folder, stem in WEIGHT_FILES.items():
        files = sorted(p.name for p in (fp16 / folder).glob("*.safetensors"))
        assert files == [f"{stem}.fp16.safetensors"], files
        with safe_open(fp16 / folder / files[0], "pt") as handle:
            assert {handle.get_slice(key).get_dtype() for key in handle.keys()} == {"F16"}

    for folder, cls, model in (("unet", UNet2DConditionModel, unet), ("controlnet", ControlNetModel, controlnet)):
        loaded = cls.from_pretrained(fp16 / folder, variant="fp16", torch_dtype=torch.float16)
        _assert_same_weights(loaded.state_dict(), model.state_dict(), torch.float16)
        loaded.to("meta")
    vae = AutoencoderKL.from_pretrained(fp16 / "vae", variant="fp16", torch_dtype=torch.float16)
    _assert_same_weights(vae.state_dict(), load_file(plain / "vae" / "diffusion_pytorch_model.safetensors"),
                         torch.float16)
    for folder, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
        weights = load_file(fp16 / folder / "model.fp16.safetensors")
        _assert_same_weights(weights, load_file(plain / folder / "model.safetensors"), torch.float16)
        loaded = cls.from_pretrained(fp16 / folder, variant="fp16", dtype=torch.float16)
        embedding = loaded.get_input_embeddings().weight
        assert torch.equal(embedding, weights["text_model.embeddings.token_embedding.weight"])
        loaded.to("meta")


# --------------------------------------------------------------------------- sensitivity


def test_prompts_change_the_text_encoders_output(conditioning: dict[str, torch.Tensor]) -> None:
    changes = {name: _rel(conditioning[name][1], conditioning[name][0]) for name in ("hidden_1", "hidden_2", "pooled")}
    print(changes)
    assert conditioning["hidden_1"].std() == pytest.approx(1.0, abs=0.5)
    assert conditioning["hidden_2"].std() == pytest.approx(1.0, abs=0.5)
    assert conditioning["pooled"].std() == pytest.approx(1.0, abs=0.5)
    # Unrelated prompts: per-token states differ by a third of their norm or more, pooled by 10%+.
    assert changes["hidden_1"] > 0.3 and changes["hidden_2"] > 0.3
    assert changes["pooled"] > 0.1


@torch.no_grad()
def test_hint_changes_the_controlnet_residuals(
        unet: torch.nn.Module, controlnet: torch.nn.Module, conditioning: dict[str, torch.Tensor],
        astronaut: Path, hanks_photo: Path) -> None:
    size = 256
    latent = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(1))
    timestep = torch.tensor([400])
    context = conditioning["context"][:1]
    added = {"text_embeds": conditioning["pooled"][:1], "time_ids": _time_ids(size)}
    with release_fixture.unet_skip_features(unet) as features:
        eps = unet(latent, timestep, encoder_hidden_states=context, added_cond_kwargs=added).sample
    residuals = {}
    for name, photo in (("astronaut", astronaut), ("hanks", hanks_photo)):
        down, mid = controlnet(latent, timestep, encoder_hidden_states=context, controlnet_cond=_photo(photo, size),
                               added_cond_kwargs=added, return_dict=False)
        residuals[name] = [*down, mid]
    eps_controlled = unet(latent, timestep, encoder_hidden_states=context, added_cond_kwargs=added,
                          down_block_additional_residuals=tuple(residuals["astronaut"][:-1]),
                          mid_block_additional_residual=residuals["astronaut"][-1]).sample

    ratios = [_std_ratio(r, f) for r, f in zip(residuals["astronaut"], features, strict=True)]
    changes = [_rel(a, b) for a, b in zip(residuals["hanks"], residuals["astronaut"], strict=True)]
    eps_change = _rel(eps_controlled, eps)
    print({"ratios": ratios, "hint_changes": changes, "eps_change": eps_change})
    # Design target 0.2-0.4 on the calibration input; a real photo at another size stays near it.
    assert all(0.15 < ratio < 0.6 for ratio in ratios), ratios
    # Another face as hint moves every residual by a tenth of its norm or more.
    assert all(change > 0.1 for change in changes), changes
    assert eps_change > 0.1


# --------------------------------------------------------------------------- ComfyUI

# Runs inside a host's folder with that host's `comfy` package: loads each part of a release with
# ComfyUI's own loaders, records every log line each loader emits, compares what ComfyUI built
# with the files, and runs the loaded models on the reference inputs.
PROBE = r'''
import gc, json, logging, sys, time
started = time.monotonic()
host, release, inputs_path, out_path = sys.argv[1:5]
sys.argv = ["main.py", "--cpu"]
sys.path.insert(0, host)
records = []

class Capture(logging.Handler):
    def emit(self, record):
        records.append(f"{record.levelname}: {record.getMessage()}")

logging.getLogger().setLevel(logging.DEBUG)
logging.getLogger().addHandler(Capture())

import comfy.options
comfy.options.enable_args_parsing()
from pathlib import Path
import torch
from safetensors.torch import load_file
import comfy.controlnet, comfy.model_management, comfy.sd, comfy.supported_models
import comfyui_version

release = Path(release)
inputs = torch.load(inputs_path)
result = {"version": comfyui_version.__version__}
tensors = {}
result["seconds"] = {"import": round(time.monotonic() - started, 1)}

def stats(state_dict):
    return {"tensors": len(state_dict), "elements": sum(v.numel() for v in state_dict.values()),
            "abs_sum": sum(float(v.abs().sum(dtype=torch.float64)) for v in state_dict.values())}

def lap(part):
    result["seconds"][part] = round(time.monotonic() - started, 1)

def load(part, loader, state_dict):
    file_stats = stats(state_dict) if isinstance(state_dict, dict) else None
    start = len(records)
    loaded = loader(state_dict)
    result[part] = {"returned": loaded is not None, "file": file_stats, "log": records[start:],
                    "left_in_state_dict": len(state_dict) if isinstance(state_dict, dict) else None}
    return loaded

def key_check(module, file_sd):
    model_sd = module.state_dict()
    unequal = [k for k in file_sd.keys() & model_sd.keys()
               if not torch.equal(model_sd[k], file_sd[k].to(model_sd[k].dtype))]
    return {"file_not_in_model": sorted(file_sd.keys() - model_sd.keys()),
            "model_not_in_file": sorted(model_sd.keys() - file_sd.keys()), "unequal": unequal,
            "dtype": str(next(iter(model_sd.values())).dtype)}

with torch.no_grad():
    te = [load_file(release / "text_encoder" / "model.safetensors"),
          load_file(release / "text_encoder_2" / "model.safetensors")]
    clip = load("text_encoders", lambda sds: comfy.sd.load_text_encoder_state_dicts(sds), [dict(t) for t in te])
    result["text_encoders"]["clip_class"] = type(clip.cond_stage_model).__name__
    result["text_encoders"]["clip_l"] = key_check(clip.cond_stage_model.clip_l.transformer, te[0])
    result["text_encoders"]["clip_g"] = key_check(clip.cond_stage_model.clip_g.transformer, te[1])
    tokens = clip.tokenize(inputs["prompt"])
    result["text_encoders"]["ids"] = {k: [[t[0] for t in batch] for batch in v] for k, v in tokens.items()}
    tensors["context"], tensors["pooled"] = clip.encode_from_tokens(tokens, return_pooled=True)
    lap("text_encoders")
    del clip, te
    gc.collect()

    sd = load_file(release / "unet" / "diffusion_pytorch_model.safetensors")
    patcher = load("unet", comfy.sd.load_diffusion_model_state_dict, sd)
    del sd
    model = patcher.model
    result["unet"].update(model_config=type(model.model_config).__name__, model_class=type(model).__name__,
                          sdxl_family=isinstance(model.model_config, comfy.supported_models.SDXL),
                          model=stats(model.diffusion_model.state_dict()),
                          dtype=str(next(model.diffusion_model.parameters()).dtype))
    comfy.model_management.load_models_gpu([patcher])
    size = inputs["size"]
    y = model.encode_adm(pooled_output=inputs["pooled"], width=size, height=size, crop_w=0, crop_h=0,
                         target_width=size, target_height=size)
    timesteps = torch.tensor([inputs["timestep"]])
    tensors["eps"] = model.diffusion_model(inputs["latent"], timesteps=timesteps, context=inputs["context"], y=y)
    lap("unet")
    del patcher, model
    comfy.model_management.unload_all_models()
    gc.collect()

    sd = load_file(release / "controlnet" / "diffusion_pytorch_model.safetensors")
    control = load("controlnet", comfy.controlnet.load_controlnet_state_dict, sd)
    del sd
    result["controlnet"].update(model=stats(control.control_model.state_dict()),
                                dtype=str(next(control.control_model.parameters()).dtype))
    out = control.control_model(x=inputs["latent"], hint=inputs["hint"], timesteps=timesteps,
                                context=inputs["context"], y=y)
    tensors["residuals"] = [*out["output"], *out["middle"]]
    lap("controlnet")
    del control, out
    gc.collect()

    sd = load_file(release / "vae" / "diffusion_pytorch_model.safetensors")
    vae = load("vae", lambda s: comfy.sd.VAE(sd=s), sd)
    del sd
    result["vae"].update(model=stats(vae.first_stage_model.state_dict()), dtype=str(vae.vae_dtype))
    tensors["vae_mean"] = vae.encode(inputs["hint"].permute(0, 2, 3, 1))
    tensors["vae_decoded"] = vae.decode(inputs["vae_latent"])
    lap("vae")

torch.save(tensors, out_path + ".pt")
Path(out_path + ".json").write_text(json.dumps(result))
'''


def _run_probe(version: str, release: Path, inputs: dict[str, Any], work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run PROBE in ComfyUI ``version``'s folder on ``release``; returns its findings and tensors."""
    home = host_dir(version)
    env = host_env(version)
    torch.save(inputs, work / "inputs.pt")
    out = work / "probe"
    proc = subprocess.run([str(PYTHON), "-c", PROBE, str(home), str(release), str(work / "inputs.pt"), str(out)],
                          cwd=home, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"ComfyUI {version} probe failed:\n{proc.stderr[-6000:]}"
    return json.loads(out.with_suffix(".json").read_text()), torch.load(out.with_suffix(".pt"))


def _drop_lines(log: list[str]) -> list[str]:
    return [line for line in log if any(phrase in line.lower() for phrase in DROP_PHRASES)]


@pytest.mark.parametrize("version", HOST_VERSIONS, ids=lambda v: f"comfyui-{v}")
def test_comfyui_loads_every_weight(version: str, plain: Path, probe_inputs: dict[str, Any],
                                    reference: dict[str, Any], conditioning: dict[str, torch.Tensor],
                                    tmp_path: Path) -> None:
    result, tensors = _run_probe(version, plain, probe_inputs, tmp_path)
    assert result["version"] == version
    summary = {part: {k: v for k, v in result[part].items() if k not in ("log", "ids")}
               for part in ("unet", "controlnet", "text_encoders", "vae")}
    print(f"ComfyUI {version}: {json.dumps(summary, indent=1)}\nprobe timeline (s): {result['seconds']}")
    for part in ("unet", "controlnet", "text_encoders", "vae"):
        print(f"--- {part} log ({len(result[part]['log'])} lines), drop lines: {_drop_lines(result[part]['log'])}")
        assert result[part]["returned"], f"ComfyUI {version} could not load the {part}"

    # UNet: an SDXL-family preset; every file tensor consumed, nothing else in the model.
    unet = result["unet"]
    assert unet["sdxl_family"], unet["model_config"]
    assert unet["model_config"] == "Segmind_Vega"
    for part in ("unet", "controlnet", "vae"):
        info = result[part]
        assert _drop_lines(info["log"]) == [], f"ComfyUI {version} dropped {part} weights"
        assert info["model"]["elements"] == info["file"]["elements"], part
        assert info["model"]["abs_sum"] == pytest.approx(info["file"]["abs_sum"], rel=1e-9), part
    assert unet["left_in_state_dict"] == 0
    assert result["controlnet"]["left_in_state_dict"] == 0

    # Text encoders: SDXL's pair, every file tensor loaded as is; CLIP-L's unused projection is the
    # one module ComfyUI has and SDXL's CLIP-L file lacks (see CLIP_L_PROJECTION_LINE).
    text = result["text_encoders"]
    assert text["clip_class"] == "SDXLClipModel"
    assert _drop_lines(text["log"]) == [CLIP_L_PROJECTION_LINE]
    assert text["clip_l"]["file_not_in_model"] == [] and text["clip_g"]["file_not_in_model"] == []
    assert text["clip_l"]["model_not_in_file"] == ["text_projection.weight"]
    assert text["clip_g"]["model_not_in_file"] == []
    assert text["clip_l"]["unequal"] == [] and text["clip_g"]["unequal"] == []
    # Same token ids as the release's tokenizers (CLIP-L pads with EOS, bigG with "!" = 0).
    assert text["ids"]["l"] == conditioning["ids_1"][:1].tolist()
    assert text["ids"]["g"] == conditioning["ids_2"][:1].tolist()

    # ComfyUI computes what diffusers computes (fp16 text encoders on some hosts: looser there).
    text_tolerance = 5e-3 if "float16" in text["clip_l"]["dtype"] else 1e-4
    errors = {
        "context": _rel(tensors["context"], conditioning["context"][:1]),
        "pooled": _rel(tensors["pooled"], conditioning["pooled"][:1]),
        "eps": _rel(tensors["eps"], reference["eps"]),
        "residuals": max(_rel(a, b) for a, b in zip(tensors["residuals"], reference["residuals"], strict=True)),
        "vae_mean": _rel(tensors["vae_mean"], reference["vae_mean"]),
        "vae_decoded": _rel(tensors["vae_decoded"], reference["vae_decoded"]),
    }
    print(f"relative errors vs diffusers: {errors}")
    assert errors["context"] < text_tolerance and errors["pooled"] < text_tolerance
    assert errors["eps"] < 1e-4 and errors["residuals"] < 1e-4
    assert errors["vae_mean"] < 1e-4 and errors["vae_decoded"] < 1e-4
