"""Whole-photo overhead around the diffusion model: detect, align, colour fix, paste back (CPU).

insightface's t1.jpg (1280x886, six faces), the stages of :func:`authface_core.pipeline.restore_photo`
other than sampling and VAE decoding, each timed as the median of ``--repeats`` calls after a
warm-up call:

- read + convert: ``cv2.imread`` and :func:`~authface_core.images.to_rgb_float`;
- detect: dlib HOG + 68 landmarks (:func:`~authface_core.faces.detect.detect_faces`; the first
  call, which loads the models, is reported apart);
- align: :func:`~authface_core.faces.align.align_faces`, FFHQ alignment to ``--size`` crops;
- colour fix: wavelet fix of the 6 crops against the low-quality crops (the crops stand in for
  the restored faces: the cost does not depend on the pixel values);
- paste back: :func:`~authface_core.faces.paste.paste_faces` of the 6 crops, square mask (the
  default) and face mask.

The total is set against one full-SDXL sampling step at 512x512 (ControlNet + UNet, CFG batch 2)
and against a whole restoration of the photo's faces (``--steps`` steps per face, cost taken as
linear in the number of faces). The step time is ``--step-seconds``; its default, 31.4 s, is
what docs/machine.md gives for the development machine (diffusers, fp32, CPU: ControlNet
10.3 s + UNet 21.1 s). ``python -m bench.bench_step`` measures it.

Run: ``python -m bench.bench_overhead [--size 512] [--repeats 5] [--step-seconds S] [--steps 50]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import cv2
import numpy as np
import torch

from authface_core.colorfix import color_fix
from authface_core.faces.align import align_faces
from authface_core.faces.detect import detect_faces, get_detector
from authface_core.faces.paste import paste_faces
from authface_core.images import to_rgb_float
from authface_core.prompts import RELEASE_STEPS

from .timing import median_seconds

DESIGN_STEP_SECONDS = 31.4  # docs/machine.md: ControlNet 10.3 s + UNet 21.1 s, 512x512, this machine
DESIGN_STEP_SOURCE = "docs/machine.md, this machine, diffusers fp32 CPU: ControlNet 10.3 s + UNet 21.1 s"


def _t1_path() -> str:
    root = importlib.util.find_spec("insightface").submodule_search_locations[0]
    return os.path.join(root, "data", "images", "t1.jpg")


def _read(path: str) -> np.ndarray:
    bgr = cv2.imread(path)
    if bgr is None:
        raise FileNotFoundError(f"cannot read {path}")
    return to_rgb_float(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def main(argv: list[str] | None = None) -> None:
    """Run the timings; ``argv`` are the command-line options (none: defaults, as when run by
    ``python -m bench``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="aligned crop size (AuthFace works at 512)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per stage (median reported)")
    parser.add_argument("--step-seconds", type=float, default=None,
                        help=f"one full-SDXL sampling step at 512 (default {DESIGN_STEP_SECONDS} s: "
                        f"{DESIGN_STEP_SOURCE})")
    parser.add_argument("--steps", type=int, default=RELEASE_STEPS,
                        help="sampling steps of a restoration (release: 50)")
    args = parser.parse_args(argv or [])
    if args.repeats < 1 or args.steps < 1 or args.size < 64 or args.size % 8:
        parser.error("--repeats and --steps must be >= 1, --size a multiple of 8 and >= 64")
    if args.step_seconds is not None and args.step_seconds <= 0:
        parser.error(f"--step-seconds must be positive, got {args.step_seconds}")
    step_seconds = DESIGN_STEP_SECONDS if args.step_seconds is None else args.step_seconds
    step_source = DESIGN_STEP_SOURCE if args.step_seconds is None else "given with --step-seconds"

    path = _t1_path()
    photo = _read(path)
    height, width = photo.shape[:2]
    start = time.perf_counter()
    detector = get_detector("dlib")
    faces = detect_faces([photo], detector)
    first_detect = time.perf_counter() - start
    count = len(faces.faces)
    if count == 0:
        raise SystemExit(f"no face found in {path}: the detector set-up is broken")
    crops, aligned = align_faces([photo], faces, size=args.size, method="ffhq")
    lq = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
    restored = lq.clone()

    stages = {
        "read + convert": median_seconds(lambda: _read(path), args.repeats),
        "detect (dlib HOG + 68 landmarks)": median_seconds(lambda: detect_faces([photo], detector), args.repeats),
        f"align ({count} x {args.size} crops, FFHQ)": median_seconds(
            lambda: align_faces([photo], faces, size=args.size, method="ffhq"), args.repeats),
        "colour fix (wavelet)": median_seconds(lambda: color_fix(restored, lq, "wavelet"), args.repeats),
        "paste back (square mask)": median_seconds(lambda: paste_faces(photo, crops, aligned.aligned), args.repeats),
    }
    face_mask_paste = median_seconds(lambda: paste_faces(photo, crops, aligned.aligned, mask="face"), args.repeats)
    total = sum(stages.values())

    print(f"t1.jpg {width}x{height}, {count} faces, crops {args.size}x{args.size}; {torch.get_num_threads()} CPU "
          f"threads; median of {args.repeats} calls after a warm-up")
    print(f"{'stage':<36} {'ms':>9} {'ms / face':>10} {'% of a step':>12}")
    for name, seconds in stages.items():
        share = seconds / step_seconds * 100
        print(f"{name:<36} {seconds * 1000:>9.1f} {seconds * 1000 / count:>10.1f} {share:>12.3f}")
    print(f"{'total':<36} {total * 1000:>9.1f} {total * 1000 / count:>10.1f} {total / step_seconds * 100:>12.3f}")
    print(f"(first detection call, loading dlib's models: {first_detect * 1000:.0f} ms; paste back with the face "
          f"mask instead: {face_mask_paste * 1000:.1f} ms)")
    restore_seconds = count * args.steps * step_seconds
    print(f"one full-SDXL sampling step at 512: {step_seconds:g} s ({step_source})")
    print(f"overhead = {total / step_seconds * 100:.2f}% of one step; {total / restore_seconds * 100:.4f}% of "
          f"restoring all {count} faces ({count} faces x {args.steps} steps x {step_seconds:g} s = "
          f"{restore_seconds / 60:.0f} min, cost taken as linear in the faces)")


if __name__ == "__main__":
    main(sys.argv[1:])
