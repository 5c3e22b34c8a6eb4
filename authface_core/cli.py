"""Command line: ``authface restore PHOTO_OR_FOLDER... --model DIR --out DIR``.

Restores every face of each photo (or, with ``--aligned``, each already-aligned face crop: the
paper's setting) with the released AuthFace method and writes ``OUT/<relative path>.png``;
folders are walked recursively. The work itself lives in :mod:`authface_core.archive` (batching
across photos, resumable manifest, one process per GPU under torchrun / accelerate launch; see
there for image formats). Inputs are never overwritten. Exit status: 0 when every photo was
written, 1 when any failed, 2 for bad arguments or an unusable model folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .colorfix import COLOR_FIX_METHODS
from .errors import AuthFaceError
from .faces.detect import DETECTOR_NAMES
from .prompts import RELEASE_CFG, RELEASE_STEPS

if TYPE_CHECKING:
    from .archive import ArchiveSettings, InputFile, Rank
    from .identity.base import FaceEmbedder
    from .faces.detect import FaceDetector
    from .pipeline import AuthFacePipeline
    from .video.restore import VideoSummary

logger = logging.getLogger("authface")

DTYPES = ("fp32", "fp16", "bf16")


class CliError(AuthFaceError):
    """A problem with the command's arguments; the message says what to change."""


def build_parser() -> argparse.ArgumentParser:
    """The ``authface`` argument parser (``restore``; ``degrade`` and ``evaluate`` from cli_eval)."""
    from .pipeline.sampling import SAMPLERS

    parser = argparse.ArgumentParser(prog="authface", description="AuthFace blind face restoration (SDXL + ControlNet).")
    commands = parser.add_subparsers(dest="command", required=True)
    restore = commands.add_parser(
        "restore",
        help="restore the faces of photos",
        description="Detect, align, restore and paste back every face of each photo; writes OUT/<relative path>.png "
        "and OUT/manifest.jsonl. Folders are walked recursively; a rerun skips finished photos. Under torchrun or "
        "accelerate launch each process restores its own share of the photos.",
    )
    restore.add_argument(
        "photos", nargs="+", type=Path,
        help="input images (any format OpenCV reads), folders of them (walked recursively; other files are "
        "skipped with a note) or videos (.mp4 .mov .m4v .mkv .webm .avi: faces tracked, "
        "written as OUT/<name>.mp4 or .mkv with the source's frame rate, size and audio)",
    )
    restore.add_argument("--model", required=True, type=Path, help="AuthFace release folder (diffusers layout)")
    restore.add_argument("--out", required=True, type=Path, help="output folder (created if needed)")
    restore.add_argument("--steps", type=int, default=RELEASE_STEPS, help=f"sampling steps (default {RELEASE_STEPS})")
    restore.add_argument("--cfg", type=float, default=RELEASE_CFG, help=f"guidance scale (default {RELEASE_CFG:g})")
    restore.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    restore.add_argument("--size", type=int, default=512, help="working size of the face crops (default 512)")
    restore.add_argument("--detector", choices=DETECTOR_NAMES, default="dlib", help="face detector (default dlib)")
    restore.add_argument(
        "--insightface-root", type=Path, help="folder holding models/<pack>/*.onnx (for --detector insightface)"
    )
    restore.add_argument("--color-fix", choices=COLOR_FIX_METHODS, default="wavelet", help="colour fix (default wavelet)")
    restore.add_argument("--sampler", choices=SAMPLERS, default="ddpm", help="sampler (default ddpm, the release's)")
    restore.add_argument("--batch-size", type=int, default=4, help="faces per model call (default 4)")
    restore.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default cpu)")
    restore.add_argument("--dtype", choices=DTYPES, default="fp32", help="UNet/ControlNet/text precision (default fp32)")
    restore.add_argument(
        "--aligned", action="store_true", help="inputs are aligned square face crops: restore them directly"
    )
    restore.add_argument(
        "--report", action="store_true",
        help="score each restored face against its input face with an identity embedding (in manifest.jsonl)",
    )
    restore.add_argument(
        "--candidates", type=int, default=1, metavar="N",
        help="restore each face of a photo N times from different seeds and keep the one whose identity "
        "(dlib embedding) is closest to the input face; costs N times the model time (default 1: the plain restore; "
        "videos always take one, since a pick per frame would flicker)",
    )
    restore.add_argument(
        "--dry-run", action="store_true",
        help="count the photos and faces still to restore and estimate the time; writes nothing",
    )
    from .cli_eval import add_eval_commands

    add_eval_commands(commands)
    return parser


def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _check_device(device: str) -> None:
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError as err:
        raise CliError(f"--device {device!r} is not a torch device ({err}); use cpu or cuda") from err
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {device} asked for CUDA, but torch sees no CUDA GPU here; use --device cpu")


def _archive_settings(args: argparse.Namespace) -> ArchiveSettings:
    from .archive import ArchiveSettings

    return ArchiveSettings(
        model=str(args.model.resolve()), steps=args.steps, cfg=args.cfg, seed=args.seed, sampler=args.sampler,
        color_fix=args.color_fix, size=args.size, aligned=args.aligned, dtype=args.dtype, candidates=args.candidates,
    )


def _restore_videos(videos: Sequence[InputFile], pipeline: AuthFacePipeline, detector: FaceDetector | None,
                    settings: ArchiveSettings, rank: Rank, args: argparse.Namespace) -> int:
    """Restore this rank's unfinished videos, recording them in the manifest; returns how many failed."""
    from .archive.videos import restore_archive_videos
    from .video.command import restore_video_file

    if videos and settings.candidates > 1:
        logger.info("videos are restored with one candidate per face: a pick per frame would flicker")

    def restore(video: InputFile) -> tuple[Path, VideoSummary]:
        return restore_video_file(video.source, (args.out / video.relative).parent, pipeline, detector, args)

    _, failures = restore_archive_videos(videos, args.out, asdict(settings), rank, restore)
    return failures


def _report_embedder() -> FaceEmbedder:
    """The identity embedding ``--report`` scores with and ``--candidates`` picks with: dlib's,
    which works offline."""
    from .identity import load_embedder

    return load_embedder("dlib")


def _run_restore(args: argparse.Namespace) -> int:
    from .archive import ArchiveRun, Rank, attach_rank_log, discover, dry_run

    if args.steps < 1 or args.batch_size < 1 or args.candidates < 1:
        raise CliError("--steps, --batch-size and --candidates must be at least 1")
    if args.size < 8 or args.size % 8:
        raise CliError(f"--size must be a positive multiple of 8 (the VAE's scale), got {args.size}")
    if args.detector == "insightface" and not args.aligned and args.insightface_root is None:
        raise CliError("--detector insightface needs --insightface-root DIR, the folder holding models/<pack>/")
    inputs = discover(args.photos, args.out)
    if inputs.skipped:
        logger.warning("skipped %d file(s) that are neither images nor videos: %s", len(inputs.skipped),
                       ", ".join(str(p) for p in inputs.skipped[:10]) + (" ..." if len(inputs.skipped) > 10 else ""))
    rank = Rank.from_env()
    settings = _archive_settings(args)
    detector = None
    if not args.aligned:
        from .faces.detect import get_detector

        options = {"root": args.insightface_root} if args.detector == "insightface" else {}
        detector = get_detector(args.detector, **options)

    def load_pipeline() -> AuthFacePipeline:
        from .pipeline import AuthFacePipeline

        _check_device(args.device)
        return AuthFacePipeline.from_release(args.model, device=args.device, dtype=_torch_dtype(args.dtype))

    if args.dry_run:
        if rank.is_main:
            estimate = dry_run(inputs.of_kind("image"), detector, settings, args.out, args.batch_size, load_pipeline)
            print(estimate.describe())
        return 0
    pipeline = load_pipeline()
    embedder = _report_embedder() if args.report or args.candidates > 1 else None
    args.out.mkdir(parents=True, exist_ok=True)
    handler = attach_rank_log(args.out, rank, logger)
    try:
        run = ArchiveRun(pipeline, detector, settings, args.out, rank, args.batch_size,
                         embedder if args.report else None, picker=embedder if args.candidates > 1 else None)
        failures = run.run(inputs.of_kind("image")).failed
        failures += _restore_videos(rank.share(inputs.of_kind("video")), pipeline, detector, settings, rank, args)
    finally:
        logger.removeHandler(handler)
        handler.close()
    if failures:
        logger.error("%d input(s) failed; rerun the same command to retry them", failures)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``authface`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="authface: %(levelname)s: %(message)s", level=logging.WARNING)
    logger.setLevel(logging.INFO)
    try:
        return getattr(args, "handler", _run_restore)(args)
    except (AuthFaceError, ValueError) as err:
        print(f"authface: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
