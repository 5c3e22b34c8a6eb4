"""A few real training steps of Stage I and/or Stage II on a GPU: seconds per step and peak memory,
next to the memory plans of ``bench.bench_stage1`` / ``bench.bench_stage2``.

For a user with an NVIDIA GPU, SDXL (or an AuthFace release) in diffusers layout and a folder of
aligned square face crops::

    python -m bench.gpu_train --model /models/sdxl --faces DIR [--stage both] [--steps 10] \
        [--batch 1] [--resolution-1 1024] [--resolution-2 512] [--mixed-precision bf16] \
        [--gradient-checkpointing] [--use-8bit-adam] [--use-ema]

Stage I trains the whole UNet on the faces (each with its caption sidecar when it has one, else
a generic face caption); Stage II landmarks the faces with ``training.prepare_stage2`` and trains
the ControlNet with the facial loss. Both run in this process through the real trainers
(``training.stage1.loop.train``, ``training.stage2.loop.train``) into ``--work-dir`` (a temporary
folder by default), with one checkpoint at the end (so its cost shows in the wall time, not in
the step times). Printed per stage: the median seconds per optimizer step after the first two,
and ``torch.cuda.max_memory_allocated`` (weights, state and activations) next to the planned
weights and training state. Without CUDA it says so and exits with code 2; ``--cpu`` runs the
same on the CPU (what the test suite does with a tiny model), without memory figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

NO_CUDA_EXIT = 2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
GENERIC_CAPTION = "a close-up portrait photo of a face, natural lighting, sharp focus, detailed skin texture"
# The first steps include CUDA kernel selection and allocator growth.
WARMUP_STEPS = 2
GIB = 1024**3


def _faces(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SystemExit(f"--faces {folder} is not a folder: pass a folder of aligned square face crops")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"--faces {folder} holds no image ({', '.join(IMAGE_SUFFIXES)} files)")
    return files


def stage1_data(faces: list[Path], root: Path, dest: Path) -> Path:
    """``dest`` with a link to every face and a caption: its own sidecar when it has one, else
    :data:`GENERIC_CAPTION` as a ``.txt``."""
    from training.data.captions import find_caption_file

    for face in faces:
        target = dest / face.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(face.resolve())
        sidecar = find_caption_file(face)
        if sidecar is not None:
            (target.parent / sidecar.name).symlink_to(sidecar.resolve())
        else:
            target.with_suffix(".txt").write_text(GENERIC_CAPTION + "\n", encoding="utf-8")
    return dest


def _median_after_warmup(values: list[float]) -> float | None:
    kept = values[WARMUP_STEPS:] or values
    return statistics.median(kept) if kept else None


def _peak_gib(cuda: bool) -> float | None:
    return torch.cuda.max_memory_allocated() / GIB if cuda else None


def _reset_peak(cuda: bool) -> None:
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_stage1(args: argparse.Namespace, faces: list[Path], work: Path, cuda: bool) -> dict[str, Any]:
    """Train ``args.steps`` Stage I steps; returns seconds per step, peak GiB and wall seconds."""
    from training.stage1.config import Stage1Config
    from training.stage1.loop import METRICS_FILE, train

    data = stage1_data(faces, args.faces, work / "stage1_data")
    output = work / "stage1"
    config = Stage1Config(
        pretrained_model=str(args.model), data_dir=str(data), output_dir=str(output),
        resolution=args.resolution_1, train_batch_size=args.batch, total_batch_size=args.batch,
        max_train_steps=args.steps, mixed_precision=args.mixed_precision, cpu=not cuda,
        gradient_checkpointing=args.gradient_checkpointing, use_8bit_adam=args.use_8bit_adam, use_ema=args.use_ema,
        checkpointing_steps=args.steps, validation_steps=10**9, validation_sampling_steps=1,
        validation_resolution=min(args.resolution_1, 256), validation_loss_samples=0, report_to="none",
        resume_from_checkpoint="none", dataloader_num_workers=2,
    )
    _reset_peak(cuda)
    started = time.perf_counter()
    train(config)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (output / METRICS_FILE).read_text().splitlines()]
    seconds = [r["seconds"] for r in records if r["kind"] == "train"]
    return {"seconds_per_step": _median_after_warmup(seconds), "peak_gib": _peak_gib(cuda), "wall_seconds": wall,
            "steps": len(seconds)}


def run_stage2(args: argparse.Namespace, work: Path, cuda: bool) -> dict[str, Any]:
    """Landmark the faces, then train ``args.steps`` Stage II steps; returns the same figures."""
    from training.prepare_stage2 import main as prepare
    from training.stage2.config import Stage2Config
    from training.stage2.loop import METRICS_FILE, train

    landmarks = work / "stage2_landmarks"
    if prepare([str(args.faces), str(landmarks)]) != 0:
        raise SystemExit(f"no face of --faces {args.faces} could be landmarked: see {landmarks / 'failed.txt'}")
    output = work / "stage2"
    config = Stage2Config(
        base=str(args.model), unet=None if args.unet is None else str(args.unet), data_dir=str(args.faces),
        landmarks=str(landmarks), output_dir=str(output), resolution=args.resolution_2,
        train_batch_size=args.batch, max_train_steps=args.steps, mixed_precision=args.mixed_precision,
        cpu=not cuda, gradient_checkpointing=args.gradient_checkpointing, checkpointing_steps=args.steps,
        log_every=1, resume_from_checkpoint="none", dataloader_num_workers=2,
    )
    _reset_peak(cuda)
    started = time.perf_counter()
    train(config)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (output / METRICS_FILE).read_text().splitlines()]
    seconds = [r["time/seconds_per_step"] for r in records if "time/seconds_per_step" in r]
    return {"seconds_per_step": _median_after_warmup(seconds), "peak_gib": _peak_gib(cuda), "wall_seconds": wall,
            "steps": len(seconds)}


def _report(stage: str, figures: dict[str, Any], plan: str) -> None:
    step = figures["seconds_per_step"]
    peak = figures["peak_gib"]
    print(f"{stage}: {figures['steps']} steps, {step:.3f} s/step (median after {WARMUP_STEPS} warm-up steps), "
          f"wall {figures['wall_seconds']:.1f} s with loading and one checkpoint")
    print(f"  peak GPU memory {peak:.2f} GiB (weights, state and activations)" if peak is not None
          else "  peak GPU memory: not measured on the CPU")
    print(f"  plan for the full SDXL configuration: {plan}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True,
                        help="diffusers SDXL folder or AuthFace release (unet, vae, text encoders, tokenizers)")
    parser.add_argument("--faces", type=Path, required=True, help="folder of aligned square face crops")
    parser.add_argument("--unet", type=Path, help="Stage II's frozen UNet folder, when not MODEL/unet")
    parser.add_argument("--stage", choices=("1", "2", "both"), default="both")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per stage")
    parser.add_argument("--batch", type=int, default=1, help="images per step")
    parser.add_argument("--resolution-1", type=int, default=1024, help="Stage I resolution (paper: 1024)")
    parser.add_argument("--resolution-2", type=int, default=512, help="Stage II resolution (paper: 512)")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="bf16")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--use-8bit-adam", action="store_true", help="Stage I: bitsandbytes AdamW8bit")
    parser.add_argument("--use-ema", action="store_true", help="Stage I: keep an EMA of the UNet")
    parser.add_argument("--work-dir", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (no memory figures)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda and not args.cpu:
        print("no CUDA GPU: this check measures GPU training (pass --cpu to run it on the CPU anyway)",
              file=sys.stderr)
        return NO_CUDA_EXIT
    if args.steps <= WARMUP_STEPS:
        raise SystemExit(f"--steps must be more than the {WARMUP_STEPS} warm-up steps")
    faces = _faces(args.faces)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="authface-gpu-train-"))
    work.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if cuda else "CPU"
    checkpointing = "on" if args.gradient_checkpointing else "off"
    print(f"{device}, torch {torch.__version__}, {len(faces)} faces, batch {args.batch}, "
          f"{args.mixed_precision} mixed precision, gradient checkpointing {checkpointing}")
    try:
        if args.stage in ("1", "both"):
            optimizer = "8-bit AdamW" if args.use_8bit_adam else "AdamW"
            precision = "fp32" if args.mixed_precision == "no" else "bf16 mixed"  # fp16 keeps the same bytes
            plan = (f"`python -m bench.bench_stage1` row '1 GPU / DDP, {precision}, {optimizer}"
                    f"{', EMA' if args.use_ema else ''}' (weights and state only)")
            _report("Stage I", run_stage1(args, faces, work, cuda), plan)
        if args.stage in ("2", "both"):
            plan = (f"`python -m bench.bench_stage2 --batch {args.batch}` (weights and state, plus activations "
                    f"{'with' if args.gradient_checkpointing else 'without'} gradient checkpointing)")
            _report("Stage II", run_stage2(args, work, cuda), plan)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
