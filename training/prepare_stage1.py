"""``python -m training.prepare_stage1 RAW_DIR OUT_DIR``: raw photos to Stage I training crops.

Detects faces, drops photos without a large-enough face, aligns with the FFHQ recipe, flags crops
that fail the quality checks, carries captions over and appends a JSON line per photo to
``OUT_DIR/report.jsonl`` (see :mod:`training.data.prepare_faces`). Re-running skips finished
photos. Train on ``OUT_DIR/images``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from authface_core.errors import AuthFaceError
from authface_core.faces.detect import DETECTOR_NAMES

from .data.prepare_faces import ACCEPTED_DIR, FACE_MODES, REPORT_FILE, PrepareOptions, prepare_dataset
from .data.quality import QualityThresholds


def _threshold(text: str) -> float | None:
    """A threshold value, or None for "off"."""
    return None if text.lower() in ("off", "none") else float(text)


def build_parser() -> argparse.ArgumentParser:
    defaults = PrepareOptions()
    limits = QualityThresholds()
    parser = argparse.ArgumentParser(prog="python -m training.prepare_stage1", description=__doc__.split("\n\n")[0])
    parser.add_argument("raw_dir", type=Path, help="folder of photos (searched recursively) with caption sidecars")
    parser.add_argument("out_dir", type=Path, help="output folder (created; re-runs continue it)")
    parser.add_argument("--size", type=int, default=defaults.size, help="crop side in pixels (default %(default)s)")
    parser.add_argument("--min-face-size", type=float, default=defaults.min_face_size,
                        help="smallest face kept, source pixels (default %(default)s)")
    parser.add_argument("--faces", choices=FACE_MODES, default=defaults.faces,
                        help="crop the largest face of each photo, or every large-enough face (default %(default)s)")
    parser.add_argument("--detector", choices=DETECTOR_NAMES, default=defaults.detector)
    parser.add_argument("--upsample", type=int, default=None,
                        help="dlib upsampling for small faces (default: automatic)")
    parser.add_argument("--detect-max-side", type=int, default=None,
                        help="dlib: detect on a copy downscaled to this long side (default 1600)")
    parser.add_argument("--insightface-root", default=None,
                        help="insightface: the folder holding models/<pack>/")
    parser.add_argument("--border", choices=("reflect", "replicate", "constant"), default=defaults.border)
    parser.add_argument("--no-quality-check", action="store_true", help="write every crop to images/")
    parser.add_argument("--min-sharpness", type=_threshold, default=limits.min_sharpness,
                        help="variance of the Laplacian at 512 px, grey levels^2; 'off' disables (default %(default)s)")
    parser.add_argument("--max-noise", type=_threshold, default=limits.max_noise_sigma * 255,
                        help="Gaussian noise sigma in 8-bit levels; 'off' disables (default %(default)s)")
    parser.add_argument("--max-salt-pepper", type=_threshold, default=limits.max_salt_pepper_fraction,
                        help="fraction of impulse-noise pixels; 'off' disables (default %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def options_from_args(args: argparse.Namespace) -> PrepareOptions:
    detector_options: dict[str, object] = {}
    if args.upsample is not None:
        detector_options["upsample"] = args.upsample
    if args.detect_max_side is not None:
        detector_options["detect_max_side"] = args.detect_max_side
    if args.insightface_root is not None:
        detector_options["root"] = args.insightface_root
    quality = None if args.no_quality_check else QualityThresholds(
        min_sharpness=args.min_sharpness,
        max_noise_sigma=None if args.max_noise is None else args.max_noise / 255.0,
        max_salt_pepper_fraction=args.max_salt_pepper,
    )
    return PrepareOptions(size=args.size, min_face_size=args.min_face_size, faces=args.faces,
                          detector=args.detector, detector_options=detector_options, quality=quality,
                          border=args.border)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)

    def progress(photos: Iterator[Path], total: int) -> Iterator[Path]:
        from tqdm.auto import tqdm

        return iter(tqdm(photos, total=total, desc="prepare", unit="photo", disable=args.quiet))

    try:
        summary = prepare_dataset(args.raw_dir, args.out_dir, options_from_args(args), progress)
    except (AuthFaceError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary.to_dict(), indent=2))
    print(f"report: {args.out_dir / REPORT_FILE}; train on {args.out_dir / ACCEPTED_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
