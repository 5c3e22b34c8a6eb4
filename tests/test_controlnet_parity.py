"""The ComfyUI ControlNet's residuals match diffusers' ``ControlNetModel`` on the same weights and
inputs on both guidance branches.

One classifier-free-guidance batch of 2 (row 0 = negative branch, row 1 = positive branch: different
text context and pooled vectors, the same latent, timestep and hint) goes through

- ComfyUI (each supported host, in a subprocess run inside the host): the release's controlnet/
  loaded by ``comfy.controlnet.load_controlnet_state_dict``, its ``cldm.ControlNet`` called as
  ``ControlNet.get_control`` calls it (``x`` = the scaled model input, ``timesteps`` = the DDPM
  timestep, ``y`` = ``encode_adm`` of pooled text + size [H, W, 0, 0, H, W] of ComfyUI's model
  class for the preset it detects from the release's UNet);
- diffusers: ``ControlNetModel.from_pretrained(<release>/controlnet)`` on the same ``x``,
  timestep, ``encoder_hidden_states``, ``controlnet_cond`` and ``added_cond_kwargs``.

Every residual (9 down, 1 mid) of every branch is compared; tensors cross the process boundary as
safetensors files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
import torch
from safetensors.torch import load_file, save_file

from authface_core.release import find_weight_files
from comfy_host import HOST_VERSIONS, host_dir, host_env
from release_fixture import cached_release

IMAGE_SIZE = 256  # latent 32x32: the whole network at a cheap size
TIMESTEP = 621.0  # one of the release's 50 "leading" DDPM timesteps (981, 961, ..., 1)
CONTEXT_TOKENS = 77
SEED = 7
# fp32 on both sides, the same weights and inputs: what remains is summation order (ComfyUI and
# diffusers use different attention/linear kernels). fp32 rounds at 6e-8; a dot product of
# K <= 11520 terms (3x3 conv on 1280 channels) reorders to ~sqrt(K) * 6e-8 ~ 6e-6 of its magnitude,
# and ~20 sequential layers, renormalised by GroupNorm/LayerNorm in between, stay around 1e-5 of the
# residual's RMS (measured: at most 5.4e-6 on the worst element, 0 before the first attention).
# 1e-4 leaves 10x headroom. Real mismatches are far larger (measured with diffusers on these
# inputs, max error / RMS, every residual but the first): a hint in [-1, 1] instead of [0, 1] > 1.3;
# time ids [0, 0, H, W, H, W] or for 512 px > 0.14; the timestep off by one > 0.04.
TOLERANCE = 1e-4
BRANCH_MIN_CHANGE = 100 * TOLERANCE
# Residual 0 is zero_conv(conv_in(x) + hint embedding): neither text nor time reaches it, so it is
# the same on both branches by design.
TEXT_FREE_RESIDUALS = 1

# Runs inside a host's folder with that host's `comfy` package.
HOST_SCRIPT = r"""
import json, logging, sys
host, unet_file, controlnet_file, inputs_file, out_file = sys.argv[1:6]
sys.argv = ["main.py", "--cpu"]
sys.path.insert(0, host)
records = []

class Capture(logging.Handler):
    def emit(self, record):
        records.append(f"{record.levelname}: {record.getMessage()}")

import comfy.options
comfy.options.enable_args_parsing()
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
import comfy.cldm.cldm, comfy.controlnet, comfy.model_detection
import comfyui_version

inputs = load_file(inputs_file)
size = int(inputs["size"])
with torch.inference_mode():
    # encode_adm uses no UNet weight: ComfyUI's model class for the preset it detects from the UNet's
    # tensor shapes (read from the file header), built without its diffusion model, computes what
    # comfy.sd.load_diffusion_model_state_dict's model would, without loading 3 GB.
    with safe_open(unet_file, "pt") as f:
        shapes = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    model_config = comfy.model_detection.model_config_from_diffusers_unet(shapes)
    model_config.unet_config["disable_unet_model_creation"] = True
    sdxl = model_config.get_model({})
    # What the sampler puts in cond["y"] for each branch (BaseModel.extra_conds -> encode_adm).
    y = torch.cat([sdxl.encode_adm(pooled_output=pooled[None], width=size, height=size) for pooled in inputs["pooled"]])

    capture = Capture(logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(capture)
    control = comfy.controlnet.load_controlnet_state_dict(load_file(controlnet_file),
                                                          model_options={"dtype": torch.float32})
    root.removeHandler(capture)
    root.setLevel(level)
    model = control.control_model
    out = model(x=inputs["x"], hint=inputs["hint"], timesteps=inputs["timesteps"], context=inputs["context"], y=y)

tensors = {f"down_{i}": r.contiguous() for i, r in enumerate(out["output"])}
tensors["mid"] = out["middle"][0].contiguous()
tensors["y"] = y.contiguous()
save_file(tensors, out_file)
print(json.dumps({"version": comfyui_version.__version__, "unet_config": type(model_config).__name__,
                  "model_class": type(sdxl).__name__, "control_class": type(control).__name__,
                  "model_is_cldm": isinstance(model, comfy.cldm.cldm.ControlNet),
                  "dtype": str(next(model.parameters()).dtype),
                  "controlnet_log": records}))
"""

# Phrases ComfyUI's ControlNet loader logs when it drops or lacks weights ("missing controlnet keys",
# "unexpected controlnet keys", "leftover keys").
DROP_PHRASES = ("missing", "unexpected", "leftover")


def _hint(size: int) -> torch.Tensor:
    """scikit-image's astronaut photo, (1, 3, size, size) float32 RGB in [0, 1]."""
    from skimage import data

    photo = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="module")
def release() -> Path:
    return cached_release("plain")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CFG batch of 2 at IMAGE_SIZE: shared x, timestep and hint; rows of context and pooled differ
    (row 0 negative, row 1 positive), both with the unit scale of the release's text features."""
    g = torch.Generator().manual_seed(SEED)
    latent = IMAGE_SIZE // 8
    x = torch.randn(1, 4, latent, latent, generator=g).repeat(2, 1, 1, 1)
    tensors = {
        "x": x,
        "timesteps": torch.full((2,), TIMESTEP),
        "context": torch.randn(2, CONTEXT_TOKENS, 2048, generator=g),
        "pooled": torch.randn(2, 1280, generator=g),
        "hint": _hint(IMAGE_SIZE).repeat(2, 1, 1, 1),
        "size": torch.tensor(IMAGE_SIZE),
    }
    path = tmp_path_factory.mktemp("controlnet_parity") / "inputs.safetensors"
    save_file(tensors, path)
    return path


@dataclass
class DiffusersOutput:
    """``residuals``: the 9 down residuals then the mid residual; ``adm``: the input of the
    ControlNet's ``add_embedding`` (pooled text, then the Fourier features of the 6 time ids),
    what ComfyUI calls ``y``."""

    residuals: list[torch.Tensor]
    adm: torch.Tensor


@pytest.fixture(scope="module")
def diffusers_output(release: Path, inputs: Path) -> DiffusersOutput:
    from diffusers import ControlNetModel

    data = load_file(inputs)
    model = ControlNetModel.from_pretrained(release / "controlnet", torch_dtype=torch.float32).eval()
    time_ids = torch.tensor([[IMAGE_SIZE, IMAGE_SIZE, 0, 0, IMAGE_SIZE, IMAGE_SIZE]], dtype=torch.float32).repeat(2, 1)
    with torch.inference_mode():
        down, mid = model(data["x"], data["timesteps"], encoder_hidden_states=data["context"],
                          controlnet_cond=data["hint"], conditioning_scale=1.0,
                          added_cond_kwargs={"text_embeds": data["pooled"], "time_ids": time_ids},
                          return_dict=False)
        time_features = model.add_time_proj(time_ids.flatten()).reshape(2, -1)
    model.to("meta")
    return DiffusersOutput(residuals=[*down, mid], adm=torch.cat([data["pooled"], time_features], dim=-1))


def _run_in_host(version: str, release: Path, inputs: Path, work: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Runs HOST_SCRIPT in ComfyUI ``version``: its JSON summary and its tensors (down_0..down_8,
    mid, y)."""
    home = host_dir(version)
    env = host_env(version)
    (unet_file,) = find_weight_files(release / "unet")
    (controlnet_file,) = find_weight_files(release / "controlnet")
    out = work / f"comfyui-{version}.safetensors"
    done = subprocess.run(
        [sys.executable, "-c", HOST_SCRIPT, str(home), str(unet_file), str(controlnet_file), str(inputs), str(out)],
        cwd=home, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"ComfyUI {version} failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1]), load_file(out)


def _relative_max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / RMS(b), in float64."""
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.pow(2).mean().sqrt())


@pytest.mark.parametrize("version", HOST_VERSIONS, ids=lambda v: f"comfyui-{v}")
def test_comfyui_controlnet_residuals_match_diffusers_on_both_branches(
        version: str, release: Path, inputs: Path, diffusers_output: DiffusersOutput, tmp_path: Path) -> None:
    info, tensors = _run_in_host(version, release, inputs, tmp_path)
    assert info["version"] == version
    assert info["unet_config"] == "Segmind_Vega" and info["model_class"] == "SDXL"  # SDXL's encode_adm made y
    assert info["control_class"] == "ControlNet" and info["model_is_cldm"]
    assert info["dtype"] == "torch.float32"
    dropped = [line for line in info["controlnet_log"] if any(p in line.lower() for p in DROP_PHRASES)]
    assert dropped == [], f"ComfyUI {version} left out ControlNet weights: {dropped}"

    # The class/size vector both networks embed: pooled text + sinusoidal features of [H, W, 0, 0, H, W].
    assert _relative_max_error(tensors["y"], diffusers_output.adm) < TOLERANCE

    diffusers_residuals = diffusers_output.residuals
    count = sum(1 for key in tensors if key.startswith("down_"))
    comfy_residuals = [*(tensors[f"down_{i}"] for i in range(count)), tensors["mid"]]
    assert len(comfy_residuals) == len(diffusers_residuals) == 10
    errors = []  # [residual][branch]
    for index, (ours, theirs) in enumerate(zip(comfy_residuals, diffusers_residuals, strict=True)):
        assert ours.shape == theirs.shape, f"residual {index}: {tuple(ours.shape)} vs {tuple(theirs.shape)}"
        assert theirs.abs().max() > 0, f"residual {index} is all zeros: the fixture's ControlNet is inert"
        errors.append([_relative_max_error(ours[branch], theirs[branch]) for branch in range(2)])
    branch_change = [_relative_max_error(theirs[0], theirs[1]) for theirs in diffusers_residuals]
    worst = max(max(pair) for pair in errors)
    where = max(range(len(errors)), key=lambda i: max(errors[i]))
    print(f"ComfyUI {version}: worst max|ComfyUI - diffusers| / RMS = {worst:.2e} (residual {where}; "
          f"per residual [negative, positive]: {[[f'{e:.1e}' for e in pair] for pair in errors]}); "
          f"branch change per residual: {[f'{c:.2f}' for c in branch_change]}")

    assert worst < TOLERANCE, errors
    # The branches really are different inputs wherever text reaches the residual, by far more than
    # the tolerance: a ComfyUI run that mixed up or merged the branches would fail above.
    assert all(change > BRANCH_MIN_CHANGE for change in branch_change[TEXT_FREE_RESIDUALS:]), branch_change
    assert all(change < TOLERANCE for change in branch_change[:TEXT_FREE_RESIDUALS]), branch_change
