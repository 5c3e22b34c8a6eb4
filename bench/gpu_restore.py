"""Seconds per 512x512 face of the AuthFace restore on a GPU, next to the paper's figure.

For a user with an NVIDIA GPU and the real release (``huggingface-cli download
Ethanliang99/AuthFace --local-dir DIR``)::

    python -m bench.gpu_restore --model /path/to/AuthFace --images DIR [--steps 50] [--dtype fp16]

``DIR`` holds aligned face crops (png/jpg/webp/bmp; other sizes are resized to ``--size``). The
standalone :class:`~authface_core.pipeline.AuthFacePipeline` (UNet and ControlNet in ``--dtype``,
VAE in fp32, the release's 50-step DDPM, CFG 8, wavelet colour fix) restores one face to warm up,
then every face once, one at a time; it prints the seconds of each (CUDA-synchronised) and the
peak GPU memory (``torch.cuda.max_memory_allocated``, weights included), next to the paper's
5.25 s per 512x512 image on one NVIDIA L40S (AuthFace paper, appendix D, table 6).
``--output DIR`` also saves the restored faces. Without CUDA it says so and exits with code 2.

Against a running ComfyUI that has the release in ``models/authface/<name>/`` (``--release
name``)::

    python -m bench.gpu_restore --comfyui http://127.0.0.1:8188 --release AuthFace --images DIR

queues the pack's ``workflows/api/authface_restore_aligned.json`` once per face (crops of
``--size``, uploaded through ``/upload/image``; model release, weight dtype, steps, size and a
distinct noise seed per run set in the workflow, so ComfyUI's cache cannot skip the sampling), the first run
as warm-up (it loads the models), and times each run from its ``/history`` entry: the
``execution_start`` to ``execution_success`` timestamps, i.e. the server's own execution time
without queueing or upload. GPU memory comes from ``/system_stats`` (in use after the runs, not
a peak). This mode needs no local GPU and no torch beyond the pack's imports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "workflows" / "api" / "authface_restore_aligned.json"
PAPER_SECONDS = 5.25  # AuthFace paper, appendix D, table 6: one 512x512 image, one NVIDIA L40S
PAPER_SOURCE = "paper, appendix D table 6: 512x512, one NVIDIA L40S"
DTYPES = ("fp16", "bf16", "fp32")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
NO_CUDA_EXIT = 2
UPLOAD_SUBFOLDER = "authface-bench"


def _face_files(folder: str) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise SystemExit(f"--images {folder} is not a folder: pass a folder of aligned face crops")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"--images {folder} holds no image ({', '.join(IMAGE_SUFFIXES)} files)")
    return files


def _summary(seconds: list[float]) -> str:
    mean = statistics.fmean(seconds)
    return (f"{len(seconds)} faces: mean {mean:.2f} s / face, median {statistics.median(seconds):.2f}, "
            f"min {min(seconds):.2f}, max {max(seconds):.2f}; paper {PAPER_SECONDS} s ({PAPER_SOURCE}): "
            f"ratio {mean / PAPER_SECONDS:.2f}")


# --------------------------------------------------------------------------- standalone pipeline


def _read_face(path: Path, size: int) -> Any:
    """(1, 3, size, size) float32 RGB tensor in [0, 1]."""
    import cv2
    import torch

    from authface_core.images import to_rgb_float

    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise SystemExit(f"cannot read {path} as an image")
    if bgr.ndim == 3 and bgr.shape[2] >= 3:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB if bgr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    rgb = to_rgb_float(bgr)
    if rgb.shape[:2] != (size, size):
        print(f"  {path.name}: {rgb.shape[1]}x{rgb.shape[0]}, resized to {size}x{size}")
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_CUBIC)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()


def run_standalone(args: argparse.Namespace) -> int:
    """Time the standalone pipeline; returns the exit code."""
    import torch

    if not torch.cuda.is_available():
        print(f"CUDA is not available on this machine (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}, {torch.cuda.device_count()} GPU(s) visible): this benchmark times the "
              "restore on an NVIDIA GPU. Run it where one is, or use --comfyui URL to time a ComfyUI server "
              "that has one.", file=sys.stderr)
        return NO_CUDA_EXIT
    import cv2

    from authface_core.pipeline import AuthFacePipeline

    files = _face_files(args.images)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    device = torch.device("cuda")
    print(f"GPU: {torch.cuda.get_device_name(device)}; torch {torch.__version__}; {args.dtype}, steps {args.steps}, "
          f"{args.size}x{args.size}")
    start = time.perf_counter()
    pipeline = AuthFacePipeline.from_release(args.model, device=device, dtype=dtype, prefer_fp16=args.dtype == "fp16")
    print(f"release loaded in {time.perf_counter() - start:.1f} s")
    faces = [_read_face(path, args.size) for path in files]

    def restore(face: Any) -> tuple[float, Any]:
        torch.cuda.synchronize(device)
        begin = time.perf_counter()
        out = pipeline.restore(face.to(device), steps=args.steps, seed=args.seed)
        torch.cuda.synchronize(device)
        return time.perf_counter() - begin, out

    warmup, _ = restore(faces[0])
    print(f"warm-up ({files[0].name}): {warmup:.2f} s")
    seconds = []
    for path, face in zip(files, faces, strict=True):
        elapsed, out = restore(face)
        seconds.append(elapsed)
        print(f"  {path.name}: {elapsed:.2f} s")
        if args.output:
            target = Path(args.output) / f"{path.stem}_authface.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            rgb = (out[0].permute(1, 2, 0).float().cpu().numpy() * 255.0).round().astype("uint8")
            cv2.imwrite(str(target), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    print(_summary(seconds))
    print(f"peak GPU memory (torch.cuda.max_memory_allocated, weights included): "
          f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    return 0


# --------------------------------------------------------------------------- ComfyUI server


class _Server:
    """The few ComfyUI HTTP endpoints used: /upload/image, /prompt, /history/<id>, /system_stats."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _open(self, request: urllib.request.Request | str, timeout: float = 60.0) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:4000]
            raise SystemExit(f"ComfyUI at {self.url} answered {err.code}: {detail}") from err
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            raise SystemExit(f"cannot reach ComfyUI at {self.url} ({err}); start it, e.g. "
                             "`python main.py --listen 127.0.0.1 --port 8188`, and pass its address") from err
        return json.loads(body) if body.strip() else None

    def get(self, path: str) -> Any:
        return self._open(self.url + path)

    def post_json(self, path: str, payload: object) -> Any:
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        return self._open(urllib.request.Request(self.url + path, data=data, headers=headers))

    def upload(self, path: Path) -> str:
        """Upload an image to the input folder; returns the value LoadImage takes."""
        boundary = uuid.uuid4().hex
        fields = [(b'name="overwrite"', b"true"), (b'name="type"', b"input"),
                  (b'name="subfolder"', UPLOAD_SUBFOLDER.encode()),
                  (f'name="image"; filename="{path.name}"'.encode(), path.read_bytes())]
        body = b"".join(b"--%s\r\nContent-Disposition: form-data; %s\r\n\r\n%s\r\n" % (boundary.encode(), head, value)
                        for head, value in fields) + f"--{boundary}--\r\n".encode()
        request = urllib.request.Request(self.url + "/upload/image", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        answer = self._open(request)
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def run(self, prompt: dict[str, Any], timeout: float) -> tuple[float, float]:
        """Queue ``prompt`` and wait; returns (server execution seconds, wall seconds)."""
        begin = time.perf_counter()
        prompt_id = self.post_json("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})["prompt_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry is not None:
                wall = time.perf_counter() - begin
                status = entry.get("status", {})
                if status.get("status_str") != "success":
                    raise SystemExit(f"the workflow failed on the server: {json.dumps(status)[:4000]}")
                stamps = {event: data.get("timestamp") for event, data in status.get("messages", [])}
                if stamps.get("execution_start") and stamps.get("execution_success"):
                    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0, wall
                return wall, wall
            time.sleep(0.2)
        raise SystemExit(f"prompt {prompt_id} did not finish within {timeout:.0f} s")


def _node(workflow: dict[str, Any], class_type: str) -> dict[str, Any]:
    nodes = [node for node in workflow.values() if node.get("class_type") == class_type]
    if len(nodes) != 1:
        raise SystemExit(f"{WORKFLOW} must hold exactly one {class_type} node, found {len(nodes)}")
    return nodes[0]


def run_comfyui(args: argparse.Namespace) -> int:
    """Time the pack's aligned-face workflow on a ComfyUI server; returns the exit code."""
    files = _face_files(args.images)
    workflow = json.loads(WORKFLOW.read_text(encoding="utf-8"))
    loader, image, conditioning, scheduler, noise = (_node(workflow, name) for name in (
        "AuthFaceModelLoader", "LoadImage", "AuthFaceConditioning", "BasicScheduler", "AuthFaceReleaseNoise"))
    loader["inputs"].update(release=args.release, weight_dtype=args.dtype)
    conditioning["inputs"].update(width=args.size, height=args.size)
    scheduler["inputs"]["steps"] = args.steps
    server = _Server(args.comfyui)
    stats = server.get("/system_stats")
    devices = stats.get("devices", [])
    print(f"ComfyUI {stats.get('system', {}).get('comfyui_version', '?')} at {server.url}, device(s): "
          f"{', '.join(d.get('name', '?') for d in devices) or 'none reported'}; release {args.release!r}, "
          f"{args.dtype}, steps {args.steps}")
    names = [server.upload(path) for path in files]

    def run(index: int, name: str) -> tuple[float, float]:
        image["inputs"]["image"] = name
        noise["inputs"]["noise_seed"] = args.seed + index
        return server.run(workflow, args.timeout)

    executed, wall = run(0, names[0])
    print(f"warm-up ({files[0].name}, loads the models): {executed:.2f} s on the server, {wall:.2f} s wall")
    seconds = []
    for index, (path, name) in enumerate(zip(files, names, strict=True), start=1):
        executed, wall = run(index, name)
        seconds.append(executed)
        print(f"  {path.name}: {executed:.2f} s on the server ({wall:.2f} s wall)")
    print(_summary(seconds))
    for device in server.get("/system_stats").get("devices", []):
        used = device.get("vram_total", 0) - device.get("vram_free", 0)
        print(f"device memory in use after the runs on {device.get('name', '?')}: {used / 2**30:.2f} GiB of "
              f"{device.get('vram_total', 0) / 2**30:.2f} GiB (ComfyUI reports no peak)")
    return 0


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="the AuthFace release folder (unet/, controlnet/, vae/, text_encoder/, ...)")
    parser.add_argument("--images", required=True, help="folder of aligned face crops")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (the release: 50)")
    parser.add_argument("--dtype", choices=DTYPES, default="fp16", help="UNet / ControlNet weights (VAE stays fp32)")
    parser.add_argument("--size", type=int, default=512,
                        help="working size; standalone: crops of another size are resized, "
                        "--comfyui: crops must be this size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="standalone mode: also save the restored faces here")
    parser.add_argument("--comfyui", metavar="URL", help="time the workflow on this ComfyUI server instead")
    parser.add_argument("--release", default="AuthFace", help="--comfyui: the release folder name in models/authface/")
    parser.add_argument("--timeout", type=float, default=1800.0, help="--comfyui: seconds to wait for one run")
    args = parser.parse_args(argv)
    if args.comfyui is None and args.model is None:
        parser.error("pass --model (the release folder) to time the standalone pipeline, or --comfyui URL")
    if args.comfyui is not None and not args.comfyui.startswith(("http://", "https://")):
        parser.error(f"--comfyui must be an http(s) URL such as http://127.0.0.1:8188, got {args.comfyui!r}")
    if not 1 <= args.steps <= 1000:
        parser.error(f"--steps must be between 1 and 1000, got {args.steps}")
    if args.size < 64 or args.size % 8:
        parser.error(f"--size must be a multiple of 8 and at least 64, got {args.size}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the timing; returns the exit code (2: no CUDA for the standalone pipeline)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_comfyui(args) if args.comfyui else run_standalone(args)


if __name__ == "__main__":
    sys.exit(main())
