"""Face detection + 68 landmarks on a large photo (CPU).

insightface's t1.jpg (six faces) scaled x3 to 3840x2658. Times, per detector: model loading,
then the median of ``--repeats`` calls of ``detect_faces`` (float image in, FaceSet out:
conversion, detection, landmarks). dlib HOG runs with the default ``detect_max_side`` (1600)
and at full resolution; dlib CNN only with ``--cnn`` (about 16 s per call); insightface
only with ``--insightface-root`` (a folder holding ``models/buffalo_l/``).
Run: ``python -m bench.bench_detect [--cnn] [--insightface-root DIR]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from typing import Any

import cv2
import numpy as np

from authface_core.faces.detect import detect_faces, get_detector
from authface_core.images import to_rgb_float

SCALE = 3


def _photo() -> np.ndarray:
    root = importlib.util.find_spec("insightface").submodule_search_locations[0]
    bgr = cv2.imread(os.path.join(root, "data", "images", "t1.jpg"))
    big = cv2.resize(bgr, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC)
    return to_rgb_float(cv2.cvtColor(big, cv2.COLOR_BGR2RGB))


def _run(label: str, image: np.ndarray, repeats: int, name: str, **options: Any) -> None:
    start = time.perf_counter()
    detector = get_detector(name, **options)
    faces = detect_faces([image], detector)  # first call loads the models
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        faces = detect_faces([image], detector)
        times.append(time.perf_counter() - start)
    print(
        f"{label:<34} {len(faces.faces)} faces   first call {first:6.2f} s   "
        f"median {statistics.median(times):6.2f} s   (min {min(times):.2f}, {repeats} runs)"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the timings; ``argv`` are the command-line options (none: defaults, as when run by
    ``python -m bench``)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cnn", action="store_true", help="also time dlib's CNN detector (slow)")
    parser.add_argument("--insightface-root", help="folder holding models/buffalo_l/ (optional)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv or [])

    image = _photo()
    height, width = image.shape[:2]
    print(f"t1.jpg x{SCALE}: {width}x{height}, float32 RGB; {os.cpu_count()} CPU cores")
    _run("dlib HOG (detect_max_side 1600)", image, args.repeats, "dlib")
    _run("dlib HOG (full resolution)", image, args.repeats, "dlib", detect_max_side=None)
    if args.cnn:
        _run("dlib CNN (detect_max_side 1600)", image, 1, "dlib_cnn")
    if args.insightface_root:
        _run(
            "insightface buffalo_l (det 640)",
            image,
            args.repeats,
            "insightface",
            root=args.insightface_root,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
