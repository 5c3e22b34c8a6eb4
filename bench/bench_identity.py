"""Cost of identity scoring (AuthFace Identity Score / Pick Best) per face, next to one sampling step.

insightface's t1.jpg (six faces) aligned at ``--size`` like the workflows; timed as the median of
``--repeats`` calls after a warm-up call (bench/timing.py), dlib's embedding on CPU:

- per face, with landmarks: what Pick Best and Identity Score do with the aligned faces' landmarks
  (dlib face chip + 128-D descriptor), from a batch of 6 crops;
- per face, without landmarks: the embedder finds them in the crop first (HOG + shape predictor);
- best-of-N scoring: 6 faces x ``--candidates`` candidates against 6 references, all embedded;
- reference photo: detect, align and embed Tom_Hanks_54745.png (once per run of the node).

Each is set against one full-SDXL sampling step at 512x512 (ControlNet + UNet, CFG batch 2), the
figure bench_overhead uses (``--step-seconds`` to give your own; ``python -m bench.bench_step``
measures it). Best-of-N's sampling itself costs N times the steps of one run.

Run: ``python -m bench.bench_identity [--size 512] [--candidates 4] [--repeats 3] [--step-seconds S]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os

from authface_core.faces.align import align_faces
from authface_core.faces.detect import detect_faces
from authface_core.identity import load_embedder
from authface_core.identity_scores import score_against_references
from authface_core.reference_faces import reference_face

from .bench_overhead import DESIGN_STEP_SECONDS, DESIGN_STEP_SOURCE, _read
from .timing import median_seconds


def _image(name: str) -> str:
    return os.path.join(importlib.util.find_spec("insightface").submodule_search_locations[0], "data", "images", name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="aligned crop size (AuthFace works at 512)")
    parser.add_argument("--candidates", type=int, default=4, help="N of best-of-N")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (median reported)")
    parser.add_argument("--step-seconds", type=float, default=DESIGN_STEP_SECONDS,
                        help=f"one full-SDXL sampling step at 512 (default {DESIGN_STEP_SECONDS} s: {DESIGN_STEP_SOURCE})")
    args = parser.parse_args(argv or [])
    if args.repeats < 1 or args.candidates < 1 or args.step_seconds <= 0:
        parser.error("--repeats and --candidates must be >= 1, --step-seconds positive")

    photo = _read(_image("t1.jpg"))
    crops, faces = align_faces([photo], detect_faces([photo]), size=args.size)
    crops = list(crops)
    landmarks = [a.landmarks for a in faces.aligned]
    count = len(crops)
    embedder = load_embedder("dlib")
    hanks = _read(_image("Tom_Hanks_54745.png"))

    with_landmarks = median_seconds(lambda: embedder.embed(crops, landmarks), args.repeats) / count
    without = median_seconds(lambda: embedder.embed(crops), args.repeats) / count
    best_of = median_seconds(lambda: score_against_references(
        embedder, crops * args.candidates, crops, landmarks * args.candidates, landmarks), args.repeats)

    def reference() -> None:
        ref = reference_face(hanks, args.size)
        embedder.embed([ref.crop], [ref.aligned.landmarks])

    ref_seconds = median_seconds(reference, args.repeats)

    step = args.step_seconds
    print(f"identity scoring, dlib ResNet, {args.size} px crops of t1.jpg ({count} faces), CPU; one sampling step "
          f"(full SDXL, 512, CFG 2) = {step:.1f} s")
    for label, seconds in [
        ("per face, with the aligned landmarks", with_landmarks),
        ("per face, landmarks found in the crop", without),
        (f"best-of-{args.candidates} scoring, {count} faces ({count * args.candidates} candidates)", best_of),
        ("reference photo: detect, align, embed", ref_seconds),
    ]:
        print(f"  {label:<62} {seconds * 1000:8.1f} ms  = {100 * seconds / step:6.3f}% of one step")


if __name__ == "__main__":
    main()
