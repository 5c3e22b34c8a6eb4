"""Command line: ``authface restore PHOTO... --model DIR --out DIR``.

Restores every face of each photo (or, with ``--aligned``, each already-aligned face crop: the
paper's setting) with the released AuthFace method and writes ``OUT/<name>.png``. Images are
read with OpenCV from bytes (so non-ASCII paths work); grey, RGB, RGBA, 8- and 16-bit inputs are
accepted; the output keeps the input's bit depth and alpha channel (grey becomes RGB). Inputs
are never overwritten. Exit status: 0 when every photo was written, 1 when any failed, 2 for
bad arguments or an unusable model folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .colorfix import COLOR_FIX_METHODS
from .errors import AuthFaceError
from .faces.detect import DETECTOR_NAMES
from .prompts import RELEASE_CFG, RELEASE_STEPS

if TYPE_CHECKING:
    from .faces.detect import FaceDetector
    from .pipeline import AuthFacePipeline

logger = logging.getLogger("authface")

DTYPES = ("fp32", "fp16", "bf16")
OUTPUT_SUFFIX = ".png"


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
        description="Detect, align, restore and paste back every face of each photo; writes OUT/<name>.png.",
    )
    restore.add_argument("photos", nargs="+", type=Path, help="input images (any format OpenCV reads)")
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


def output_paths(photos: Sequence[Path], out: Path) -> list[Path]:
    """``out/<stem>.png`` per photo. Raises CliError when two photos share a name stem or an
    output would overwrite an input."""
    targets = [out / (photo.stem + OUTPUT_SUFFIX) for photo in photos]
    seen: dict[Path, Path] = {}
    for photo, target in zip(photos, targets):
        if target in seen:
            raise CliError(f"{seen[target]} and {photo} would both be written to {target}; rename one of them")
        seen[target] = photo
    inputs = {photo.resolve() for photo in photos}
    for target in targets:
        if target.resolve() in inputs:
            raise CliError(f"writing {target} would overwrite an input image; choose another --out folder")
    return targets


def read_image(path: Path) -> np.ndarray:
    """The image as OpenCV decodes it (BGR/BGRA/grey, uint8 or uint16), read from bytes so that
    any path works. Raises CliError when the file cannot be read or decoded."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise CliError(f"cannot read {path}: {err}") from err
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise CliError(f"{path} is not an image OpenCV can decode (empty, truncated or unsupported format)")
    if image.dtype not in (np.uint8, np.uint16) and not np.issubdtype(image.dtype, np.floating):
        raise CliError(f"{path} has pixel type {image.dtype}; use 8- or 16-bit images")
    return image


def _to_rgb_layout(image: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A) channel order to RGB(A); grey is left as it is."""
    import cv2

    if image.ndim == 2 or image.shape[2] == 1:
        return image
    code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def write_png(path: Path, rgb: np.ndarray, alpha: np.ndarray | None, like: np.dtype) -> None:
    """Write float RGB (and alpha) in [0, 1] as a PNG in ``like``'s depth (16 bits for uint16
    input, else 8), clipped and rounded by :func:`authface_core.images.write_png`."""
    from .images import write_png as write_levels

    planes = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    try:
        write_levels(path, planes, bits=16 if like == np.uint16 else 8)
    except OSError as err:
        raise CliError(str(err)) from err


def _copy_through(path: Path, image: np.ndarray) -> None:
    import cv2

    ok, encoded = cv2.imencode(OUTPUT_SUFFIX, image)
    if not ok:
        raise CliError(f"OpenCV could not encode {path}")
    encoded.tofile(str(path))


def _restore_aligned(
    rgb: np.ndarray, pipeline: AuthFacePipeline, args: argparse.Namespace, progress: Callable[[int, int], None]
) -> np.ndarray:
    """One aligned crop restored at ``--size`` and brought back to its own size."""
    import cv2
    import torch

    height, width = rgb.shape[:2]
    if height != width:
        raise CliError(f"--aligned inputs must be square face crops, got {width}x{height}")
    size = args.size
    crop = rgb if height == size else cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if height > size else cv2.INTER_CUBIC)
    restored = pipeline.restore(
        torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None],
        steps=args.steps,
        cfg=args.cfg,
        seed=args.seed,
        sampler=args.sampler,
        color_fix=args.color_fix,
        batch_size=args.batch_size,
        progress=progress,
    )[0].permute(1, 2, 0).numpy()
    if height == size:
        return restored
    back = cv2.resize(restored, (width, height), interpolation=cv2.INTER_AREA if size > height else cv2.INTER_CUBIC)
    return np.clip(back, 0.0, 1.0)


def _restore_one(
    photo: Path, target: Path, pipeline: AuthFacePipeline, detector: FaceDetector | None, args: argparse.Namespace
) -> None:
    from tqdm import tqdm

    from .images import split_alpha
    from .pipeline import restore_photo

    decoded = read_image(photo)
    rgb, alpha = split_alpha(_to_rgb_layout(decoded))
    with tqdm(total=args.steps, desc=photo.name, unit="step", leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        if args.aligned:
            restored = _restore_aligned(rgb, pipeline, args, progress)
        else:
            restored, faces = restore_photo(
                rgb,
                pipeline,
                detector,
                args.size,
                steps=args.steps,
                cfg=args.cfg,
                seed=args.seed,
                sampler=args.sampler,
                color_fix=args.color_fix,
                batch_size=args.batch_size,
                progress=progress,
            )
            if not faces.faces:
                logger.warning("no face found in %s: copied through unchanged to %s", photo, target)
                _copy_through(target, decoded)
                return
    write_png(target, restored, alpha, decoded.dtype)
    logger.info("wrote %s", target)


def _run_restore(args: argparse.Namespace) -> int:
    from .pipeline import AuthFacePipeline

    missing = [str(p) for p in args.photos if not p.is_file()]
    if missing:
        raise CliError(f"input image(s) not found: {', '.join(missing)}")
    if args.steps < 1 or args.batch_size < 1:
        raise CliError("--steps and --batch-size must be at least 1")
    if args.size < 8 or args.size % 8:
        raise CliError(f"--size must be a positive multiple of 8 (the VAE's scale), got {args.size}")
    if args.detector == "insightface" and not args.aligned and args.insightface_root is None:
        raise CliError("--detector insightface needs --insightface-root DIR, the folder holding models/<pack>/")
    targets = output_paths(args.photos, args.out)
    _check_device(args.device)
    detector = None
    if not args.aligned:
        from .faces.detect import get_detector

        options = {"root": args.insightface_root} if args.detector == "insightface" else {}
        detector = get_detector(args.detector, **options)
    pipeline = AuthFacePipeline.from_release(args.model, device=args.device, dtype=_torch_dtype(args.dtype))
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for photo, target in zip(args.photos, targets):
        try:
            _restore_one(photo, target, pipeline, detector, args)
        except (AuthFaceError, ValueError) as err:
            failures += 1
            logger.error("%s: %s", photo, err)
    if failures:
        logger.error("%d of %d image(s) failed", failures, len(targets))
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
