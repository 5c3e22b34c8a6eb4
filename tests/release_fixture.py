"""Random-weight AuthFace release folders with real SDXL-family shapes, built once per machine.

A release is the diffusers folder layout of the authors' release::

    model_index.json  scheduler/  tokenizer/  tokenizer_2/  text_encoder/  text_encoder_2/
    unet/  controlnet/  vae/  fixture_report.json

with real SDXL-family tensor shapes, so that ComfyUI's own loaders recognise every part and load
it with no dropped or missing weights:

- ``unet/``: Segmind-Vega-shaped SDXL ``UNet2DConditionModel`` (0.75B; ComfyUI's ``Segmind_Vega``
  preset, one-resnet ``UNetMidBlock2D``), fp32.
- ``controlnet/``: ``ControlNetModel.from_unet(unet)`` with a 3-channel RGB hint and conditioning
  embedding channels (16, 32, 96, 256).
- ``vae/``: SDXL ``AutoencoderKL`` shape, scaling factor 0.13025.
- ``text_encoder/`` (CLIP-L ``CLIPTextModel``) and ``text_encoder_2/`` (OpenCLIP bigG
  ``CLIPTextModelWithProjection``), configs taken from ComfyUI's ``comfy/sd1_clip_config.json`` and
  ``comfy/clip_config_bigg.json``; ``tokenizer/`` and ``tokenizer_2/`` (pad "!") built from
  ComfyUI's ``comfy/sd1_tokenizer`` files, laid out like SDXL's.
- ``scheduler/``: ``DDPMScheduler`` with SDXL base's betas and spacing.

Variants (``VARIANTS``):

- ``plain``: one fp32 ``*.safetensors`` per model.
- ``sharded``: ``unet/`` and ``controlnet/`` saved in shards (``*-0000k-of-0000N.safetensors`` plus
  ``*.safetensors.index.json``); every other entry is a relative symlink into the sibling
  ``plain/`` release.
- ``fp16``: every weight file as ``*.fp16.safetensors`` in float16 (diffusers/transformers
  ``variant="fp16"``); tokenizers, scheduler and report are symlinks into ``plain/``.

Both non-plain variants are re-saves of the plain release's weights, so the three hold the same
model (fp16 up to float16 rounding).

Random weights are rescaled so that the fixture exercises something (see ``fixture_report.json``,
measured on inputs not used for the calibration): CLIP token embeddings have std 1, the UNet's
``conv_out`` is scaled so eps has std ~1 on a unit-variance latent, the ControlNet's zero convs are
re-randomised and scaled so each residual is ``CONTROLNET_RATIO`` of the UNet feature it is added
to, and the VAE's ``quant_conv`` / decoder ``conv_out`` are scaled so that scaled latents have std
~1 and decoded images std ~0.5.

Run ``python tests/release_fixture.py [VARIANT ...]`` to build the cache ahead of the tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from comfy_host import host_dir

REPO = Path(__file__).resolve().parents[1]
FIXTURES_DIR = REPO / ".cache" / "fixtures"
VARIANTS = ("plain", "sharded", "fp16")
COMFY_VERSION = "0.30.0"
SHARD_SIZE = "1GB"
# Disk each variant takes (measured: 7.3, 3.9 and 3.7 GB), with room for the temporary files.
DISK_NEEDED = {"plain": 8 * 1024**3, "sharded": 4.5 * 1024**3, "fp16": 4.5 * 1024**3}
REPORT_NAME = "fixture_report.json"
CONTROLNET_RATIO = 0.3
LATENT_SIZE = 64  # 512x512 images: AuthFace's working resolution
PROMPT_A = "hyper-realistic portrait, face close-up, super detailed, skin pore detailing"
PROMPT_B = "oil painting, illustration, drawing, cartoon, worst quality, watermark"

_LIBRARIES = ("torch", "diffusers", "transformers", "safetensors", "tokenizers")
_WEIGHT_FOLDERS = ("text_encoder", "text_encoder_2", "unet", "controlnet", "vae")
_SHARDED_FOLDERS = ("unet", "controlnet")
_SHARED_ENTRIES = ("model_index.json", "scheduler", "tokenizer", "tokenizer_2", REPORT_NAME)
_SEED_OFFSETS = {"text_encoder": 1, "text_encoder_2": 2, "unet": 3, "controlnet": 4, "vae": 5}
_T0 = time.monotonic()


def _log(message: str) -> None:
    print(f"[release_fixture +{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def _comfy_dir() -> Path:
    """ComfyUI's ``comfy/`` package folder of the host whose configs and tokenizer files are used."""
    return host_dir(COMFY_VERSION) / "comfy"


def _comfy_inputs() -> list[Path]:
    comfy = _comfy_dir()
    tokenizer = comfy / "sd1_tokenizer"
    return [comfy / "sd1_clip_config.json", comfy / "clip_config_bigg.json",
            tokenizer / "vocab.json", tokenizer / "merges.txt",
            tokenizer / "special_tokens_map.json", tokenizer / "tokenizer_config.json"]


def cache_key() -> str:
    """12 hex digits naming this generator: its source, the ComfyUI files it reads, library versions."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in _comfy_inputs():
        digest.update(path.read_bytes())
    for name in _LIBRARIES:
        digest.update(f"{name}={version(name)}".encode())
    return digest.hexdigest()[:12]


def _seed(seed: int, component: str) -> int:
    return seed * 1000 + _SEED_OFFSETS[component]


def _generator(seed: int, component: str) -> torch.Generator:
    """Calibration inputs' stream, apart from the global one that initialises the weights."""
    return torch.Generator().manual_seed(_seed(seed, component) + 500)


def _rel_change(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||a||."""
    return float((a.double() - b.double()).norm() / a.double().norm())


def _std_ratio(residual: torch.Tensor, feature: torch.Tensor) -> float:
    return float(residual.double().std() / feature.double().std())


def _smooth_image(generator: torch.Generator, size: int) -> torch.Tensor:
    """(1, 3, size, size) float32 in [0, 1]: bicubic-upsampled 16x16 uniform noise (image-like)."""
    coarse = torch.rand(1, 3, 16, 16, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


@torch.no_grad()
def _scale_conv_(conv: torch.nn.Conv2d, factor: float, out_channels: slice = slice(None)) -> None:
    conv.weight[out_channels] *= factor
    if conv.bias is not None:
        conv.bias[out_channels] *= factor


def _free(*modules: torch.nn.Module) -> None:
    """Release the modules' weights now (to the meta device) instead of at garbage collection."""
    for module in modules:
        module.to("meta")


# --------------------------------------------------------------------------- configs


def unet_config() -> dict[str, Any]:
    """Segmind-Vega-shaped SDXL UNet: the smallest SDXL-family shape ComfyUI loads exactly."""
    return dict(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2D", block_out_channels=(320, 640, 1280),
        transformer_layers_per_block=(0, 1, 2), attention_head_dim=(5, 10, 20),
        use_linear_projection=True, cross_attention_dim=2048, addition_embed_type="text_time",
        addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    )


def vae_config() -> dict[str, Any]:
    """SDXL's AutoencoderKL shape (stabilityai/stable-diffusion-xl-base-1.0 vae/config.json)."""
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, act_fn="silu",
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), norm_num_groups=32, sample_size=1024,
        scaling_factor=0.13025, force_upcast=True,
    )


# SDXL base's scheduler_config.json (the same values diffusers' single-file SDXL converter writes),
# with the DDPM class the AuthFace inference script uses. The Euler/PNDM-only keys are kept because
# the real file carries them (set_alpha_to_one matters to a DDIM built from this config).
_SDXL_SCHEDULER_EXTRAS = {"interpolation_type": "linear", "set_alpha_to_one": False,
                          "skip_prk_steps": True, "use_karras_sigmas": False}


def _write_scheduler(dest: Path) -> None:
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        trained_betas=None, clip_sample=False, prediction_type="epsilon", sample_max_value=1.0,
        steps_offset=1, timestep_spacing="leading",
    )
    scheduler.save_pretrained(dest / "scheduler")
    path = dest / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    config.update(_SDXL_SCHEDULER_EXTRAS)
    path.write_text(json.dumps(dict(sorted(config.items())), indent=2) + "\n")


def _write_model_index(dest: Path) -> None:
    import diffusers

    index = {
        "_class_name": "StableDiffusionXLControlNetPipeline",
        "_diffusers_version": diffusers.__version__,
        "controlnet": ["diffusers", "ControlNetModel"],
        "feature_extractor": [None, None],
        "force_zeros_for_empty_prompt": True,
        "image_encoder": [None, None],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (dest / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _write_tokenizers(dest: Path) -> None:
    """SDXL's two CLIP tokenizers: the same BPE files; the second pads with "!" (id 0), not EOS.

    The json files mirror SDXL base's tokenizer folders (model_max_length 77), written by hand so
    that they load with the transformers releases of the day as well as older ones.
    """
    source = _comfy_dir() / "sd1_tokenizer"
    special = json.loads((source / "special_tokens_map.json").read_text())
    config = json.loads((source / "tokenizer_config.json").read_text())
    for key in ("name_or_path", "special_tokens_map_file"):
        config.pop(key, None)
    config.update(model_max_length=77, clean_up_tokenization_spaces=True)
    for folder, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        out = dest / folder
        out.mkdir(parents=True)
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(source / name, out / name)
        (out / "special_tokens_map.json").write_text(json.dumps({**special, "pad_token": pad}, indent=2) + "\n")
        (out / "tokenizer_config.json").write_text(
            json.dumps(dict(sorted({**config, "pad_token": pad}.items())), indent=2) + "\n")


# --------------------------------------------------------------------------- components


@dataclass
class _Conditioning:
    """SDXL conditioning for [PROMPT_A, PROMPT_B]: (2, 77, 2048) context and (2, 1280) pooled."""

    context: torch.Tensor
    pooled: torch.Tensor

    def added(self, rows: slice) -> dict[str, torch.Tensor]:
        n = self.pooled[rows].shape[0]
        size = float(LATENT_SIZE * 8)
        time_ids = torch.tensor([[size, size, 0.0, 0.0, size, size]]).repeat(n, 1)
        return {"text_embeds": self.pooled[rows], "time_ids": time_ids}


def _save_text_encoder(model: torch.nn.Module, out: Path) -> None:
    """Save as SDXL's files are: config.json + model.safetensors keyed "text_model.*" (and
    "text_projection.weight"), the names ComfyUI detects; transformers 5 would drop the prefix of a
    freshly built ``CLIPTextModel``."""
    from safetensors.torch import save_file

    state = {}
    for key, value in model.state_dict().items():
        if not key.startswith(("text_model.", "text_projection.")):
            key = f"text_model.{key}"
        state[key] = value.contiguous()
    model.config.save_pretrained(out)
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})


@torch.no_grad()
def _build_text_encoders(dest: Path, seed: int, report: dict[str, Any]) -> _Conditioning:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    comfy = _comfy_dir()
    hidden: list[torch.Tensor] = []
    pooled = torch.empty(0)
    section: dict[str, Any] = {}
    for folder, config_name, cls in (("text_encoder", "sd1_clip_config.json", CLIPTextModel),
                                     ("text_encoder_2", "clip_config_bigg.json", CLIPTextModelWithProjection)):
        _log(f"{folder}: {cls.__name__} from comfy/{config_name}")
        config = CLIPTextConfig.from_json_file(str(comfy / config_name))
        config.architectures = [cls.__name__]
        torch.manual_seed(_seed(seed, folder))
        model = cls(config).eval()
        embedding = model.get_input_embeddings().weight
        embedding.normal_(0.0, 1.0, generator=_generator(seed, folder))
        tokenizer = CLIPTokenizer.from_pretrained(str(dest / folder.replace("text_encoder", "tokenizer")))
        ids = tokenizer([PROMPT_A, PROMPT_B], padding="max_length", max_length=77, truncation=True,
                        return_tensors="pt").input_ids
        out = model(ids, output_hidden_states=True)
        penultimate = out.hidden_states[-2]
        hidden.append(penultimate)
        section[folder] = {
            "class": cls.__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "token_embedding_std": float(embedding.std()),
            "penultimate_std": float(penultimate.std()),
            "prompt_change_penultimate": _rel_change(penultimate[0], penultimate[1]),
        }
        if cls is CLIPTextModelWithProjection:
            pooled = out.text_embeds
            section[folder]["pooled_std"] = float(pooled.std())
            section[folder]["prompt_change_pooled"] = _rel_change(pooled[0], pooled[1])
        _save_text_encoder(model, dest / folder)
        _free(model)
        _log(f"{folder}: saved, {section[folder]}")
    report["text_encoders"] = section
    return _Conditioning(context=torch.cat(hidden, dim=-1), pooled=pooled)


def _unet_eps(unet: torch.nn.Module, latent: torch.Tensor, timesteps: torch.Tensor, cond: _Conditioning,
              rows: slice, **residuals: Any) -> torch.Tensor:
    """eps for ``latent`` (B, 4, h, w) under the conditioning rows ``rows`` (one row is repeated B times)."""
    n = latent.shape[0]
    context, added = cond.context[rows], cond.added(rows)
    if context.shape[0] != n:
        context = context.expand(n, -1, -1)
        added = {key: value.expand(n, -1) for key, value in added.items()}
    return unet(latent, timesteps, encoder_hidden_states=context, added_cond_kwargs=added, **residuals).sample


@torch.no_grad()
def _build_unet(dest: Path, seed: int, cond: _Conditioning, report: dict[str, Any]) -> torch.nn.Module:
    """UNet with conv_out scaled so eps has std 1 on a unit-variance latent at t=500, prompt A."""
    from diffusers import UNet2DConditionModel

    _log("unet: init")
    torch.manual_seed(_seed(seed, "unet"))
    unet = UNet2DConditionModel(**unet_config()).eval()
    g = _generator(seed, "unet")
    latent = torch.randn(1, 4, LATENT_SIZE, LATENT_SIZE, generator=g)
    _log("unet: calibrating conv_out")
    raw_std = float(_unet_eps(unet, latent, torch.tensor([500]), cond, slice(0, 1)).std())
    _scale_conv_(unet.conv_out, 1.0 / raw_std)

    _log("unet: measuring")
    probe = torch.randn(1, 4, LATENT_SIZE, LATENT_SIZE, generator=g)
    steps = (999, 500, 1)
    eps = _unet_eps(unet, probe.repeat(len(steps), 1, 1, 1), torch.tensor(steps), cond, slice(0, 1))
    eps_b = _unet_eps(unet, probe, torch.tensor([500]), cond, slice(1, 2))
    report["unet"] = {
        "parameters": sum(p.numel() for p in unet.parameters()),
        "default_init_eps_std": raw_std,
        "conv_out_scale": 1.0 / raw_std,
        "eps_std": {str(t): float(e.std()) for t, e in zip(steps, eps)},
        "prompt_change_eps": _rel_change(eps[1], eps_b[0]),
    }
    unet.save_pretrained(dest / "unet")
    _log(f"unet: saved, {report['unet']}")
    return unet


@contextmanager
def unet_skip_features(unet: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """While open, each forward of the diffusers ``unet`` appends to the yielded list its skip
    features (``conv_in`` output, then every down block's outputs) and, last, the mid-block output:
    the tensors a ControlNet's down and mid residuals are added to, in the same order."""
    found: list[torch.Tensor] = []
    hooks = [unet.conv_in.register_forward_hook(lambda _m, _i, out: found.append(out))]
    for block in unet.down_blocks:
        hooks.append(block.register_forward_hook(lambda _m, _i, out: found.extend(out[1])))
    hooks.append(unet.mid_block.register_forward_hook(lambda _m, _i, out: found.append(out)))
    try:
        yield found
    finally:
        for hook in hooks:
            hook.remove()


def _controlnet_residuals(controlnet: torch.nn.Module, latent: torch.Tensor, timestep: int, hint: torch.Tensor,
                          cond: _Conditioning) -> list[torch.Tensor]:
    down, mid = controlnet(latent, torch.tensor([timestep]), encoder_hidden_states=cond.context[0:1],
                           controlnet_cond=hint, added_cond_kwargs=cond.added(slice(0, 1)), return_dict=False)
    return [*down, mid]


def _ratios(controlnet: torch.nn.Module, unet: torch.nn.Module, latent: torch.Tensor, timestep: int,
            hint: torch.Tensor, cond: _Conditioning) -> tuple[list[float], float, torch.Tensor, list[torch.Tensor]]:
    """Residual/feature std ratios per block, the conditioning embedding's ratio to conv_in, the
    UNet's eps without ControlNet and the residuals."""
    with unet_skip_features(unet) as features:
        eps = _unet_eps(unet, latent, torch.tensor([timestep]), cond, slice(0, 1))
    residuals = _controlnet_residuals(controlnet, latent, timestep, hint, cond)
    embedding = controlnet.controlnet_cond_embedding(hint)
    return ([_std_ratio(r, f) for r, f in zip(residuals, features, strict=True)],
            _std_ratio(embedding, controlnet.conv_in(latent)), eps, residuals)


@torch.no_grad()
def _build_controlnet(dest: Path, seed: int, unet: torch.nn.Module, cond: _Conditioning,
                      report: dict[str, Any]) -> None:
    """ControlNet from the UNet's encoder, zero convs re-randomised and scaled to CONTROLNET_RATIO.

    The conditioning embedding and the re-randomised convs get zero biases: with the default random
    biases the embedding is a near-constant field and residuals barely depend on the hint.
    """
    from diffusers import ControlNetModel

    _log("controlnet: from_unet")
    torch.manual_seed(_seed(seed, "controlnet"))
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(16, 32, 96, 256), conditioning_channels=3).eval()
    embedding_convs = [controlnet.controlnet_cond_embedding.conv_in, *controlnet.controlnet_cond_embedding.blocks]
    zero_convs = [controlnet.controlnet_cond_embedding.conv_out, *controlnet.controlnet_down_blocks,
                  controlnet.controlnet_mid_block]
    for conv in zero_convs:
        conv.reset_parameters()
    for conv in embedding_convs + zero_convs:
        conv.bias.zero_()

    g = _generator(seed, "controlnet")
    latent = torch.randn(1, 4, LATENT_SIZE, LATENT_SIZE, generator=g)
    hint = _smooth_image(g, LATENT_SIZE * 8)
    _log("controlnet: calibrating the conditioning embedding")
    embedding_ratio = _std_ratio(controlnet.controlnet_cond_embedding(hint), controlnet.conv_in(latent))
    _scale_conv_(controlnet.controlnet_cond_embedding.conv_out, CONTROLNET_RATIO / embedding_ratio)
    _log("controlnet: calibrating the residual convs")
    ratios, _, _, _ = _ratios(controlnet, unet, latent, 500, hint, cond)
    for conv, ratio in zip([*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block], ratios, strict=True):
        _scale_conv_(conv, CONTROLNET_RATIO / ratio)

    _log("controlnet: measuring")
    probe = torch.randn(1, 4, LATENT_SIZE, LATENT_SIZE, generator=g)
    hint_a, hint_b = _smooth_image(g, LATENT_SIZE * 8), _smooth_image(g, LATENT_SIZE * 8)
    ratios, embedding_ratio, eps, residuals = _ratios(controlnet, unet, probe, 250, hint_a, cond)
    residuals_b = _controlnet_residuals(controlnet, probe, 250, hint_b, cond)
    eps_with = _unet_eps(unet, probe, torch.tensor([250]), cond, slice(0, 1),
                         down_block_additional_residuals=tuple(residuals[:-1]),
                         mid_block_additional_residual=residuals[-1])
    report["controlnet"] = {
        "parameters": sum(p.numel() for p in controlnet.parameters()),
        "target_ratio": CONTROLNET_RATIO,
        "conditioning_embedding_ratio": embedding_ratio,
        "down_residual_ratios": ratios[:-1],
        "mid_residual_ratio": ratios[-1],
        "hint_change_residuals": [_rel_change(a, b) for a, b in zip(residuals, residuals_b, strict=True)],
        "eps_change_from_controlnet": _rel_change(eps, eps_with),
    }
    controlnet.save_pretrained(dest / "controlnet")
    _free(controlnet)
    _log(f"controlnet: saved, {report['controlnet']}")


@torch.no_grad()
def _build_vae(dest: Path, seed: int, report: dict[str, Any]) -> None:
    """SDXL-shaped VAE: encoder mean scaled so latents x scaling_factor have std 1, decoder output
    scaled to std 0.5 on unit-variance scaled latents."""
    from diffusers import AutoencoderKL

    _log("vae: init")
    torch.manual_seed(_seed(seed, "vae"))
    vae = AutoencoderKL(**vae_config()).eval()
    factor = vae.config.scaling_factor
    g = _generator(seed, "vae")
    image = _smooth_image(g, 256) * 2 - 1
    mean = vae.encode(image).latent_dist.mean * factor
    _scale_conv_(vae.quant_conv, 1.0 / float(mean.std()), slice(0, 4))
    latent = torch.randn(1, 4, 32, 32, generator=g)
    decoded = vae.decode(latent / factor).sample
    _scale_conv_(vae.decoder.conv_out, 0.5 / float(decoded.std()))

    probe_image = _smooth_image(g, 256) * 2 - 1
    probe_latent = torch.randn(1, 4, 32, 32, generator=g)
    report["vae"] = {
        "parameters": sum(p.numel() for p in vae.parameters()),
        "scaled_latent_std": float((vae.encode(probe_image).latent_dist.mean * factor).std()),
        "decoded_std": float(vae.decode(probe_latent / factor).sample.std()),
    }
    vae.save_pretrained(dest / "vae")
    _free(vae)
    _log(f"vae: saved, {report['vae']}")


# --------------------------------------------------------------------------- variants


def _build_plain(dest: Path, seed: int) -> None:
    start = time.monotonic()
    report: dict[str, Any] = {
        "seed": seed, "cache_key": cache_key(), "comfyui_files_from": COMFY_VERSION,
        "libraries": {name: version(name) for name in _LIBRARIES},
        "latent_size": LATENT_SIZE, "prompts": [PROMPT_A, PROMPT_B],
    }
    _write_model_index(dest)
    _write_scheduler(dest)
    _write_tokenizers(dest)
    cond = _build_text_encoders(dest, seed, report)
    unet = _build_unet(dest, seed, cond, report)
    _build_controlnet(dest, seed, unet, cond, report)
    _free(unet)
    _build_vae(dest, seed, report)
    report["build_seconds"] = round(time.monotonic() - start, 1)
    (dest / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")


def _link_to_plain(dest: Path, name: str) -> None:
    (dest / name).symlink_to(Path("..") / "plain" / name)


def _diffusers_class(folder: str) -> Callable[..., Any]:
    import diffusers

    return {"unet": diffusers.UNet2DConditionModel, "controlnet": diffusers.ControlNetModel,
            "vae": diffusers.AutoencoderKL}[folder]


@torch.no_grad()
def _build_sharded(dest: Path, plain: Path) -> None:
    for folder in _SHARDED_FOLDERS:
        _log(f"sharded: {folder}")
        model = _diffusers_class(folder).from_pretrained(plain / folder)
        model.save_pretrained(dest / folder, max_shard_size=SHARD_SIZE)
        _free(model)
    for name in sorted(set(_SHARED_ENTRIES) | (set(_WEIGHT_FOLDERS) - set(_SHARDED_FOLDERS))):
        _link_to_plain(dest, name)


@torch.no_grad()
def _build_fp16(dest: Path, plain: Path) -> None:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    for folder in _WEIGHT_FOLDERS:
        _log(f"fp16: {folder}")
        if folder.startswith("text_encoder"):
            cls = CLIPTextModelWithProjection if folder == "text_encoder_2" else CLIPTextModel
            model = cls.from_pretrained(plain / folder, dtype=torch.float16)
        else:
            model = _diffusers_class(folder).from_pretrained(plain / folder, torch_dtype=torch.float16)
        model.save_pretrained(dest / folder, variant="fp16")
        _free(model)
    for name in _SHARED_ENTRIES:
        _link_to_plain(dest, name)


def build_release(dest: Path, variant: str = "plain", seed: int = 0) -> Path:
    """Build one release variant into ``dest`` (must not exist yet); returns ``dest``.

    ``plain`` is generated from ``seed`` (deterministic on one machine and library set). ``sharded``
    and ``fp16`` re-save the plain release that must already sit beside ``dest`` as
    ``dest.parent / "plain"`` (built with the same ``seed``); their shared entries are relative
    symlinks into it. ``plain`` takes about two minutes, 8 GB of RAM and 7.3 GB of disk;
    ``sharded`` (3.9 GB) and ``fp16`` (3.7 GB) seconds. Progress goes to stderr. Raises ValueError for an unknown variant or a plain release built
    from another seed, FileExistsError if ``dest`` exists, FileNotFoundError if the plain release
    a variant needs is missing.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown release variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists: build_release writes a new folder, remove it first")
    plain = dest.parent / "plain"
    if variant != "plain":
        report = plain / REPORT_NAME
        if not report.is_file():
            raise FileNotFoundError(f"the {variant} variant is re-saved from {plain}: build the plain variant there first")
        built_seed = json.loads(report.read_text())["seed"]
        if built_seed != seed:
            raise ValueError(f"{plain} was built with seed {built_seed}, not {seed}: rebuild it or pass seed={built_seed}")
    _log(f"building the {variant} release in {dest}")
    dest.mkdir(parents=True)
    builders: dict[str, Callable[[], None]] = {
        "plain": lambda: _build_plain(dest, seed),
        "sharded": lambda: _build_sharded(dest, plain),
        "fp16": lambda: _build_fp16(dest, plain),
    }
    builders[variant]()
    _log(f"{variant} release done")
    return dest


def cached_release(variant: str = "plain") -> Path:
    """The ``variant`` release (seed 0) under ``.cache/fixtures/release-<cache_key()>/``, built on
    first use.

    Builds run under an exclusive ``fcntl`` lock on the cache folder (concurrent callers wait,
    then reuse the result) into a temporary sibling folder renamed into place when complete, so a
    visible release is always whole. Releases of other cache keys (an older generator or library
    set) are deleted when a new one is built.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown release variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    root = FIXTURES_DIR / f"release-{cache_key()}"
    if (root / variant).is_dir():
        return root / variant
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in FIXTURES_DIR.glob("release-*"):
            if stale != root:
                _log(f"removing the outdated fixture {stale}")
                shutil.rmtree(stale)
        for needed in dict.fromkeys(("plain", variant)):
            target = root / needed
            if target.is_dir():
                continue
            for partial in root.glob(f".{needed}.tmp-*"):
                shutil.rmtree(partial)
            free = shutil.disk_usage(root).free
            if free < DISK_NEEDED[needed]:
                raise OSError(f"the {needed} release fixture needs {DISK_NEEDED[needed] / 1024**3:.1f} GB of disk in "
                              f"{root} and {free / 1024**3:.1f} GB are free: free some space (old pytest folders "
                              "under /tmp/pytest-of-*, stale clones) and run the tests again")
            temp = root / f".{needed}.tmp-{os.getpid()}"
            build_release(temp, needed, seed=0)
            temp.rename(target)
    return root / variant


if __name__ == "__main__":
    for name in sys.argv[1:] or VARIANTS:
        print(cached_release(name))
