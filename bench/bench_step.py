"""One sampling step of full-size SDXL + ControlNet: ComfyUI's sampler against our diffusers pipeline.

Random weights with SDXL base's UNet shape (2.6B parameters, ``torch.manual_seed`` + the library's
default init) and ``ControlNetModel.from_unet`` of it (1.25B) are saved as safetensors in a
temporary folder (about 15 GB in fp32, deleted at the end). Each side then runs in its own
process, one after the other (each holds ~15 GB of weights; the development machine has 24 GB):

- ComfyUI (``--comfyui``, a ComfyUI folder; default: the current test host): the weights loaded
  by ``comfy.sd.load_diffusion_model_state_dict`` and ``comfy.controlnet.load_controlnet_state_dict``
  (ComfyUI picks the dtype: float32 on CPU) the way AuthFace Model Loader hands them over
  (``--loader streamed``: ComfyUI builds from placeholders, then the weights are read into its
  parameters tensor by tensor, :func:`authface_core.release.host.load_streamed`) or as a
  memory-mapped state dict that ComfyUI copies (``--loader state_dict``, the loader before), the
  ControlNet attached to both conditionings by ``ControlNetApplyAdvanced``, then
  ``comfy.samplers.CFGGuider(...).sample`` with the "ddim" sampler on ``ddim_uniform`` sigmas;
- diffusers: ``UNet2DConditionModel`` / ``ControlNetModel.from_pretrained(low_cpu_mem_usage=True)``
  in float32 and :class:`~authface_core.pipeline.AuthFacePipeline`'s per-step work (ControlNet +
  UNet on the CFG batch of 2, guidance, DDIM scheduler step).

Both sample from the same inputs (CFG 8, random text context and pooled vectors for the two
branches, scikit-image's astronaut as the [0, 1] hint, time ids [S, S, 0, 0, S, S]) starting at
timestep 981 of the release's 50-step schedule. Each side runs one warm-up step (which also does
ComfyUI's lazy model loading), then ``--steps`` timed steps. The table gives load time, warm-up,
seconds per step and peak RSS (``ru_maxrss``: includes the memory-mapped weight files while they
are read) of each process side by side, the ratios ComfyUI / diffusers (target: step ratio <= 1.0), and the
difference of the two sides' guided epsilon on the first step, to show both computed the same
thing. The ControlNet's zero convolutions are zero at this init, so its residuals are zero:
the work is the same as with trained weights, the eps check covers the UNet path only.

On CPU ComfyUI picks sub-quadratic attention unless started with ``--use-pytorch-cross-attention``
(on NVIDIA GPUs PyTorch's is its default); ``--comfyui-args`` times one ComfyUI configuration per
use, e.g. ``--comfyui-args= --comfyui-args=--use-pytorch-cross-attention`` for both.

Run: ``python -m bench.bench_step [--size 512] [--steps 1] [--comfyui DIR] [--comfyui-args=FLAGS]
[--loader streamed --loader state_dict] [--tmp DIR]`` (Linux: RSS from ``/proc`` and ``ru_maxrss``). ``--size 256`` is about 3x quicker
per step; weight generation and loading take a few minutes either way.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from authface_core.prompts import RELEASE_CFG, RELEASE_STEPS

from .sdxl_shapes import SDXL_UNET_CONFIG

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HOST = REPO / ".cache" / "hosts" / "comfyui-0.30.0"
WORKERS = ("generate", "comfyui", "diffusers")
LOADERS = ("streamed", "state_dict")
SEED = 0
CONTEXT_TOKENS = 77
# The AuthFace ControlNet's hint encoder (docs/method.md).
CONDITIONING_CHANNELS = (16, 32, 96, 256)
# Single files: ComfyUI's side reads them as the AuthFace loader does; diffusers would shard at 10 GB.
MAX_SHARD_SIZE = "40GB"


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _rss_gb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _hint(size: int) -> torch.Tensor:
    """scikit-image's astronaut, (1, 3, size, size) float32 RGB in [0, 1]."""
    import cv2
    from skimage import data

    photo = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    return (torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255.0).contiguous()


# --------------------------------------------------------------------------- workers


def generate(work: Path, size: int) -> dict[str, Any]:
    """Random SDXL UNet + ControlNet in ``work/unet`` and ``work/controlnet`` (diffusers folders),
    and the shared inputs in ``work/inputs.safetensors``: ``latent`` (1, 4, S/8, S/8) unit
    variance, ``context`` (2, 77, 2048) and ``pooled`` (2, 1280), rows [negative, positive],
    ``hint`` (1, 3, S, S) in [0, 1]."""
    from diffusers import ControlNetModel, UNet2DConditionModel
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(**SDXL_UNET_CONFIG).eval()
    unet_params = sum(p.numel() for p in unet.parameters())
    unet.save_pretrained(work / "unet", max_shard_size=MAX_SHARD_SIZE)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS)
    del unet
    gc.collect()
    controlnet_params = sum(p.numel() for p in controlnet.parameters())
    controlnet.save_pretrained(work / "controlnet", max_shard_size=MAX_SHARD_SIZE)
    del controlnet

    g = torch.Generator().manual_seed(SEED + 1)
    latent = size // 8
    save_file({
        "latent": torch.randn(1, 4, latent, latent, generator=g),
        "context": torch.randn(2, CONTEXT_TOKENS, 2048, generator=g),
        "pooled": torch.randn(2, 1280, generator=g),
        "hint": _hint(size),
    }, work / "inputs.safetensors")
    return {"unet_params": unet_params, "controlnet_params": controlnet_params}


def run_comfyui(work: Path, size: int, steps: int, host: Path, flags: list[str],
                loader: str) -> tuple[dict[str, Any], torch.Tensor]:
    """ComfyUI's side (run with ``host`` as working directory, started as ``main.py --cpu
    *flags``, weights handed over as ``loader`` says): timings and the guided eps of the first
    step, (1, 4, S/8, S/8)."""
    sys.argv = ["main.py", "--cpu", *flags]
    sys.path.insert(0, str(host))
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.controlnet
    import comfy.ldm.modules.attention
    import comfy.samplers
    import comfy.sd
    import comfyui_version
    import nodes
    from safetensors.torch import load_file

    from authface_core.release import load_component_state_dict
    from authface_core.release.files import select_weights
    from authface_core.release.host import load_streamed

    def load() -> tuple[Any, Any]:
        if loader == "state_dict":
            model = comfy.sd.load_diffusion_model_state_dict(load_component_state_dict(work, "unet"))
            control = comfy.controlnet.load_controlnet_state_dict(load_component_state_dict(work, "controlnet"))
            return model, control
        model = load_streamed("UNet", select_weights("unet", work / "unet", False),
                              comfy.sd.load_diffusion_model_state_dict, lambda patcher: patcher.model.diffusion_model)
        control = load_streamed("ControlNet", select_weights("controlnet", work / "controlnet", False),
                                comfy.controlnet.load_controlnet_state_dict, lambda control: control.control_model)
        return model, control

    load_seconds, (patcher, control_net) = _timed(load)
    load_peak_gb = _peak_rss_gb()
    if patcher is None or control_net is None:
        raise RuntimeError(f"ComfyUI in {host} did not recognise the SDXL UNet or ControlNet")
    data = load_file(work / "inputs.safetensors")

    def conditioning(row: int) -> list:
        sizes = {"width": size, "height": size, "crop_w": 0, "crop_h": 0, "target_width": size, "target_height": size}
        return [[data["context"][row:row + 1], {"pooled_output": data["pooled"][row:row + 1], **sizes}]]

    positive, negative = nodes.ControlNetApplyAdvanced().apply_controlnet(
        conditioning(1), conditioning(0), control_net, data["hint"].permute(0, 2, 3, 1), 1.0, 0.0, 1.0)
    guider = comfy.samplers.CFGGuider(patcher)
    guider.set_conds(positive, negative)
    guider.set_cfg(RELEASE_CFG)
    sampler = comfy.samplers.sampler_object("ddim")
    sigmas = comfy.samplers.calculate_sigmas(patcher.get_model_object("model_sampling"), "ddim_uniform", RELEASE_STEPS)
    # The sampler starts from noise * sigmas[0] below sigma_max (docs/faithfulness.md, cause 2);
    # this noise makes the model input x / sqrt(1 + sigma^2) exactly the shared unit-variance latent.
    sigma0 = float(sigmas[0])
    noise = data["latent"] * math.sqrt(1.0 + sigma0**2) / sigma0
    empty = torch.zeros_like(data["latent"])

    first_eps: list[torch.Tensor] = []

    def observe(args: dict[str, Any]) -> torch.Tensor:
        if not first_eps:
            first_eps.append((args["input"] - args["denoised"]) / args["sigma"].reshape(-1, 1, 1, 1))
        return args["denoised"]

    patcher.set_model_sampler_post_cfg_function(observe)
    batches: list[int] = []
    diffusion_model = patcher.model.diffusion_model
    diffusion_model.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(int((args[0] if args else kwargs["x"]).shape[0])), with_kwargs=True)

    def sample(count: int) -> torch.Tensor:
        return guider.sample(noise, empty, sampler, sigmas[:count + 1], disable_pbar=True, seed=SEED)

    with torch.inference_mode():
        warmup_seconds, _ = _timed(lambda: sample(1))
        warmup_batches = list(batches)
        total, _ = _timed(lambda: sample(steps))
    return {
        "label": f"ComfyUI {comfyui_version.__version__}",
        "dtype": f"{str(patcher.model.get_dtype()).removeprefix('torch.')} / "
                 f"{str(control_net.control_model.dtype).removeprefix('torch.')}",
        "model": f"{type(patcher.model.model_config).__name__} + {type(control_net).__name__}",
        "attention": comfy.ldm.modules.attention.optimized_attention.__name__, "flags": flags, "loader": loader,
        "load_seconds": load_seconds, "warmup_seconds": warmup_seconds, "step_seconds": total / steps,
        "load_peak_rss_gb": load_peak_gb, "peak_rss_gb": _peak_rss_gb(), "rss_gb": _rss_gb(), "batches_per_step": warmup_batches,
    }, first_eps[0]


def run_diffusers(work: Path, size: int, steps: int) -> tuple[dict[str, Any], torch.Tensor]:
    """Our pipeline's side: timings and the guided eps of the first step, (1, 4, S/8, S/8)."""
    from diffusers import ControlNetModel, UNet2DConditionModel
    from safetensors.torch import load_file

    from authface_core.pipeline import AuthFacePipeline
    from authface_core.pipeline.loading import ReleaseModels
    from authface_core.pipeline.sampling import read_schedule

    def load() -> tuple[Any, Any]:
        unet = UNet2DConditionModel.from_pretrained(work / "unet", low_cpu_mem_usage=True, torch_dtype=torch.float32)
        controlnet = ControlNetModel.from_pretrained(work / "controlnet", low_cpu_mem_usage=True,
                                                     torch_dtype=torch.float32)
        return unet.eval().requires_grad_(False), controlnet.eval().requires_grad_(False)

    load_seconds, (unet, controlnet) = _timed(load)
    load_peak_gb = _peak_rss_gb()
    models = ReleaseModels(unet=unet, controlnet=controlnet, vae=None, text_encoder=None, text_encoder_2=None,
                           tokenizer=None, tokenizer_2=None)
    pipeline = AuthFacePipeline(models, read_schedule(None), "cpu")
    scheduler = pipeline.make_scheduler("ddim", RELEASE_STEPS)
    data = load_file(work / "inputs.safetensors")
    text = (data["context"], data["pooled"])  # rows [negative, positive], as restore() encodes them
    time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32)

    def sample(count: int) -> torch.Tensor:
        """The per-step work of AuthFacePipeline.restore: guided eps (ControlNet + UNet on the CFG
        batch of 2) and the scheduler step. Residuals stay fp32 (restore rounds them to fp16 by
        default: two casts, nothing measurable) so that both sides compute the same eps."""
        latents, first = data["latent"], None
        for timestep in scheduler.timesteps[:count]:
            eps = pipeline._predict_noise(latents, timestep, data["hint"], text, time_ids, RELEASE_CFG, 1.0, False)
            first = eps if first is None else first
            latents = scheduler.step(eps, timestep, latents, eta=0.0, return_dict=False)[0]
        return first

    with torch.inference_mode():
        warmup_seconds, first_eps = _timed(lambda: sample(1))
        total, _ = _timed(lambda: sample(steps))
    return {
        "label": "diffusers (AuthFacePipeline)",
        "dtype": f"{str(unet.dtype).removeprefix('torch.')} / {str(controlnet.dtype).removeprefix('torch.')}",
        "model": f"{type(unet).__name__} + {type(controlnet).__name__}",
        "load_seconds": load_seconds, "warmup_seconds": warmup_seconds, "step_seconds": total / steps,
        "load_peak_rss_gb": load_peak_gb, "peak_rss_gb": _peak_rss_gb(), "rss_gb": _rss_gb(),
    }, first_eps


def _worker(args: argparse.Namespace) -> None:
    """One side in this process; writes ``<name>.json`` (figures) and ``<name>_eps.safetensors``
    (first-step eps) into ``args.work``, ``name`` = ``args.worker`` plus ``args.tag``."""
    from safetensors.torch import save_file

    work = Path(args.work)
    name = f"{args.worker}{args.tag}"
    if args.worker == "generate":
        result = generate(work, args.size)
    else:
        if args.worker == "comfyui":
            flags = shlex.split(args.comfyui_args[0]) if args.comfyui_args else []
            result, eps = run_comfyui(work, args.size, args.steps, Path(args.comfyui), flags, args.loader[0])
        else:
            result, eps = run_diffusers(work, args.size, args.steps)
        save_file({"eps": eps.float().contiguous()}, work / f"{name}_eps.safetensors")
    (work / f"{name}.json").write_text(json.dumps(result), encoding="utf-8")


# --------------------------------------------------------------------------- orchestration


def _launch(role: str, args: argparse.Namespace, work: Path, tag: str = "", comfyui_args: str = "",
            loader: str = LOADERS[0]) -> dict[str, Any]:
    """Run one worker in a fresh interpreter; returns its figures, with its first-step eps under
    "eps"."""
    from safetensors.torch import load_file

    host = Path(args.comfyui).resolve()
    env = dict(os.environ)
    paths = [str(REPO)]
    if role == "comfyui" and (host / "overlay").is_dir():  # the oldest test host's frontend pins
        paths.insert(0, str(host / "overlay"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "bench.bench_step", "--worker", role, "--tag", tag, "--work", str(work),
               "--size", str(args.size), "--steps", str(args.steps), "--comfyui", str(host),
               f"--comfyui-args={comfyui_args}", "--loader", loader]
    done = subprocess.run(command, cwd=host if role == "comfyui" else REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {role} process failed (exit {done.returncode}):\n{done.stderr[-5000:]}")
    result = json.loads((work / f"{role}{tag}.json").read_text(encoding="utf-8"))
    if role != "generate":
        result["eps"] = load_file(work / f"{role}{tag}_eps.safetensors")["eps"]
    return result


def _relative_max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / RMS(b)."""
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.pow(2).mean().sqrt())


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (multiple of 8); 512 = AuthFace's")
    parser.add_argument("--steps", type=int, default=1, help="timed sampling steps after the warm-up step (1-49)")
    parser.add_argument("--comfyui", default=str(DEFAULT_HOST), help="ComfyUI folder (holding main.py and comfy/)")
    parser.add_argument("--comfyui-args", action="append",
                        help="ComfyUI start-up flags after --cpu; repeat to time several configurations, e.g. "
                        "--comfyui-args= --comfyui-args=--use-pytorch-cross-attention (on CPU ComfyUI "
                        "defaults to sub-quadratic attention, on NVIDIA GPUs to PyTorch's); default: none")
    parser.add_argument("--loader", action="append", choices=LOADERS,
                        help="how ComfyUI gets the weights: 'streamed' (AuthFace Model Loader's way) or "
                        "'state_dict' (a whole state dict ComfyUI copies); repeat for both; default: streamed")
    parser.add_argument("--tmp", default=None,
                        help="where to write the ~15 GB of temporary weights (default: system temp)")
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.loader = args.loader or [LOADERS[0]]
    if args.size < 64 or args.size % 8:
        parser.error(f"--size must be a multiple of 8 and at least 64, got {args.size}")
    if not 1 <= args.steps < RELEASE_STEPS:
        parser.error(f"--steps must be between 1 and {RELEASE_STEPS - 1}, got {args.steps}")
    if not (Path(args.comfyui) / "comfy").is_dir():
        parser.error(f"--comfyui {args.comfyui} is not a ComfyUI folder (no comfy/ inside); run `make setup` "
                     "for the test host or pass your ComfyUI folder")
    return args


def _label(side: dict[str, Any]) -> str:
    if "attention" not in side:
        return side["label"]
    return f"{side['label']} {' '.join(side['flags']) or '(defaults)'}, {side['attention']}, {side['loader']} loading"


def _report(args: argparse.Namespace, comfy_sides: list[dict[str, Any]], ref: dict[str, Any]) -> None:
    print(f"\nfull SDXL shape, {args.size}x{args.size}, CFG {RELEASE_CFG:g} (batch of 2), ControlNet on both branches, "
          f"{torch.get_num_threads()} CPU threads; one warm-up step, then {args.steps} timed")
    sides = [*comfy_sides, ref]
    width = max(len(_label(side)) for side in sides)
    header = (f"{'side':<{width}} {'dtype (UNet/CN)':<17} {'load s':>7} {'warm-up s':>10} {'s / step':>9} "
              f"{'load peak GB':>13} {'peak RSS GB':>12} {'RSS after GB':>13} {'step ratio':>11}")
    print(header)
    print("-" * len(header))
    for side in sides:
        print(f"{_label(side):<{width}} {side['dtype']:<17} {side['load_seconds']:>7.1f} "
              f"{side['warmup_seconds']:>10.1f} {side['step_seconds']:>9.2f} {side['load_peak_rss_gb']:>13.1f} "
              f"{side['peak_rss_gb']:>12.1f} "
              f"{side['rss_gb']:>13.1f} {side['step_seconds'] / ref['step_seconds']:>11.2f}")
    print("step ratio = seconds per step / diffusers' (target for ComfyUI: <= 1.0); load peak = peak RSS once "
          "the weights are loaded (diffusers maps the files and reads them in the first step); peak RSS (target "
          "for ComfyUI: <= diffusers') includes the memory-mapped weight files while they are mapped")
    for side in comfy_sides:
        print(f"{_label(side)}: model {side['model']}, model calls in the warm-up step by batch size "
              f"{side['batches_per_step']}, first-step guided eps vs diffusers max |diff| / RMS = "
              f"{_relative_max_error(side['eps'], ref['eps']):.1e}")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; ``argv`` are the command-line options (none: defaults, as ``python -m
    bench`` runs it)."""
    args = _parse(argv or [])
    if args.worker:
        _worker(args)
        return

    with tempfile.TemporaryDirectory(prefix="authface-bench-step-", dir=args.tmp) as temp:
        work = Path(temp)
        print(f"generating random full-SDXL weights in {work} ...", flush=True)
        seconds, made = _timed(lambda: _launch("generate", args, work))
        print(f"  UNet {made['unet_params'] / 1e9:.2f}B + ControlNet {made['controlnet_params'] / 1e9:.2f}B parameters "
              f"in {seconds:.0f} s", flush=True)
        comfy_sides = []
        runs = [(flags, loader) for flags in args.comfyui_args or [""] for loader in args.loader]
        for index, (flags, loader) in enumerate(runs):
            print(f"running ComfyUI (--cpu {flags}, {loader} loading) ...", flush=True)
            comfy_sides.append(_launch("comfyui", args, work, tag=f"-{index}", comfyui_args=flags, loader=loader))
        print("running diffusers ...", flush=True)
        ref = _launch("diffusers", args, work)
    _report(args, comfy_sides, ref)


if __name__ == "__main__":
    main(sys.argv[1:])
