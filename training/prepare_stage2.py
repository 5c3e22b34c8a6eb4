"""Stage II data preparation: 68 landmarks and eye/mouth boxes of already-aligned HQ faces.

``python -m training.prepare_stage2 HQ_DIR OUT_DIR`` walks HQ_DIR (an FFHQ-style folder of
aligned square faces, sub-folders allowed), detects each face's 68 landmarks with the faces core
and appends one JSON line per image to ``OUT_DIR/landmarks.jsonl``::

    {"path": "00000/00001.png", "size": 512, "detector": "dlib", "score": 2.1,
     "landmarks": [[x, y], ... 68], "boxes": [[x0, y0, x1, y1], ... 3]}
    {"path": "00000/00002.png", "size": 512, "error": "no central face scoring enough found by dlib"}

Landmarks are in the image's pixels (pixel-centre convention, ``faces/types.py``); ``boxes`` are
``faces.masks.component_boxes`` of them (image-left eye, image-right eye, mouth; pixel-corner
coordinates at the image's own size, for inspection: training recomputes them from the
landmarks at its resolution). The run is resumable: images already in the file (landmarked or
failed) are skipped, and a last line cut short by a kill is dropped before appending. Failures are
listed in ``OUT_DIR/failed.txt`` and summarised at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from authface_core.faces.detect import FaceDetector, get_detector
from authface_core.faces.masks import component_boxes
from authface_core.faces.types import DetectedFace

CACHE_NAME = "landmarks.jsonl"
FAILED_NAME = "failed.txt"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Detectors that need no model folder (insightface needs its model pack's root).
DETECTORS = ("dlib", "dlib_cnn")
# Minimum detection score. On aligned 512 px crops of real faces dlib's HOG scores 1.0-2.6 (the
# 8 dlib faces of t1.jpg, Tom_Hanks_54745.png and astronaut), while a crop aligned on a false
# detection (astronaut's mission patch) scores 0.3: a non-face has no landmarks to learn from.
DEFAULT_MIN_SCORE = 0.5
# Lines are flushed to the OS after every image and fsync'ed this often: a crash loses at most
# this many results, which the next run redoes.
SYNC_EVERY = 64

logger = logging.getLogger("authface.prepare_stage2")


@dataclass(frozen=True)
class LandmarkRecord:
    """One image's entry of the cache: landmarks (68, 2) float64 in the image's pixels, or an
    ``error`` (then ``landmarks`` is None)."""

    path: str
    size: int
    landmarks: np.ndarray | None
    score: float = 0.0
    detector: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.landmarks is not None

    def to_json(self) -> str:
        if self.landmarks is None:
            return json.dumps({"path": self.path, "size": self.size, "error": self.error})
        boxes = component_boxes(self.landmarks)
        return json.dumps({
            "path": self.path,
            "size": self.size,
            "detector": self.detector,
            "score": round(self.score, 4),
            "landmarks": np.round(self.landmarks, 3).tolist(),
            "boxes": np.round(boxes.astype(np.float64), 3).tolist(),
        })

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LandmarkRecord:
        if "error" in data:
            return cls(path=data["path"], size=int(data.get("size", 0)), landmarks=None, error=str(data["error"]))
        landmarks = np.asarray(data["landmarks"], dtype=np.float64)
        if landmarks.shape != (68, 2):
            raise ValueError(f"entry for {data['path']} holds landmarks of shape {landmarks.shape}, not (68, 2)")
        return cls(path=data["path"], size=int(data["size"]), landmarks=landmarks,
                   score=float(data.get("score", 0.0)), detector=str(data.get("detector", "")))


def list_images(hq_dir: Path) -> list[str]:
    """Image files under ``hq_dir`` (recursive, :data:`IMAGE_SUFFIXES`), as sorted POSIX paths
    relative to it."""
    if not hq_dir.is_dir():
        raise FileNotFoundError(f"HQ folder {hq_dir} does not exist: pass the folder of aligned faces")
    found = [p.relative_to(hq_dir).as_posix() for p in hq_dir.rglob("*")
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def read_cache(cache: Path, repair: bool = False) -> dict[str, LandmarkRecord]:
    """Entries of a ``landmarks.jsonl`` by path (a later line for a path wins).

    A last line without its newline is what a killed run leaves: it is ignored, and with
    ``repair`` cut from the file so that appending continues cleanly. A malformed complete line
    raises ValueError naming it. A missing file gives no entries.
    """
    if not cache.is_file():
        return {}
    raw = cache.read_bytes()
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    records: dict[str, LandmarkRecord] = {}
    good_bytes = 0
    for number, line in enumerate(complete, start=1):
        if line.strip():
            try:
                record = LandmarkRecord.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{cache} line {number} is not a landmark entry ({err}); "
                                 "delete the line or the file and run again") from err
            records[record.path] = record
        good_bytes += len(line) + 1
    if tail:
        logger.warning("ignoring the incomplete last line of %s (the previous run was cut off)", cache)
    if repair and good_bytes < len(raw):
        with open(cache, "r+b") as handle:
            handle.truncate(good_bytes)
    return records


def pick_face(faces: Sequence[DetectedFace], size: int) -> DetectedFace | None:
    """The aligned face: the largest detection whose box centre lies in the middle half of the
    crop (background faces of an FFHQ crop are smaller and off-centre); None if there is none."""
    central = []
    for face in faces:
        x0, y0, x1, y1 = face.box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if size / 4 <= cx <= 3 * size / 4 and size / 4 <= cy <= 3 * size / 4:
            central.append(face)
    return max(central, key=lambda f: f.size, default=None)


def read_square_rgb(path: Path) -> np.ndarray:
    """An image file as (S, S, 3) float32 RGB in [0, 1]; ValueError if unreadable or not square."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ValueError(f"cannot read {path} as an image")
    if data.ndim == 2:
        data = cv2.cvtColor(data, cv2.COLOR_GRAY2BGR)
    scale = 65535.0 if data.dtype == np.uint16 else 255.0
    rgb = cv2.cvtColor(data[..., :3], cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(scale)
    if rgb.shape[0] != rgb.shape[1]:
        raise ValueError(f"{path} is {rgb.shape[1]}x{rgb.shape[0]}: Stage II needs square aligned faces")
    return rgb


def landmark_image(hq_dir: Path, rel: str, detectors: Sequence[FaceDetector]) -> LandmarkRecord:
    """Landmarks of one aligned face, trying ``detectors`` in order until one finds it."""
    try:
        image = read_square_rgb(hq_dir / rel)
    except ValueError as err:
        return LandmarkRecord(path=rel, size=0, landmarks=None, error=str(err))
    size = image.shape[0]
    for detector in detectors:
        face = pick_face(detector.detect(image), size)
        if face is not None:
            return LandmarkRecord(path=rel, size=size, landmarks=np.asarray(face.landmarks, dtype=np.float64),
                                  score=face.score, detector=detector.name)
    tried = ", ".join(d.name for d in detectors)
    return LandmarkRecord(path=rel, size=size, landmarks=None, error=f"no central face scoring enough found by {tried}")


_WORKER: dict[str, Any] = {}


def _worker_init(hq_dir: str, detector_specs: list[tuple[str, dict[str, Any]]]) -> None:
    _WORKER["hq_dir"] = Path(hq_dir)
    _WORKER["detectors"] = [get_detector(name, **options) for name, options in detector_specs]


def _worker_run(rel: str) -> str:
    return landmark_image(_WORKER["hq_dir"], rel, _WORKER["detectors"]).to_json()


def _results(hq_dir: Path, todo: list[str], specs: list[tuple[str, dict[str, Any]]], workers: int) -> Iterator[str]:
    if workers <= 1:
        _worker_init(str(hq_dir), specs)
        yield from map(_worker_run, todo)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers, _worker_init, (str(hq_dir), specs)) as pool:
        yield from pool.imap(_worker_run, todo, chunksize=8)


@dataclass(frozen=True)
class PrepareSummary:
    total: int
    skipped: int
    landmarked: int
    failed: list[str]


def detector_specs(detector: str, fallback: str | None,
                   min_score: float = DEFAULT_MIN_SCORE) -> list[tuple[str, dict[str, Any]]]:
    """(name, options) of the detectors to try, each keeping detections scoring ``min_score`` or
    more. dlib runs without upsampling: an aligned face fills half the crop, far above the
    detectors' 80 px window."""
    specs = []
    for name in (detector, fallback):
        if name is None:
            continue
        if name not in DETECTORS:
            raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
        specs.append((name, {"upsample": 0, "threshold": float(min_score)}))
    return specs


def prepare(hq_dir: Path, out_dir: Path, detector: str = "dlib", fallback: str | None = None,
            workers: int = 1, retry_failed: bool = False, min_score: float = DEFAULT_MIN_SCORE) -> PrepareSummary:
    """Landmark every image of ``hq_dir`` not yet in ``out_dir/landmarks.jsonl`` (see the module
    docstring); returns counts and the paths that could not be landmarked (all of them, this run's
    and earlier ones'), also written to ``out_dir/failed.txt``. ``retry_failed`` re-runs images
    an earlier run could not landmark; ``min_score`` is the detection score a face needs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = out_dir / CACHE_NAME
    images = list_images(hq_dir)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {hq_dir}")
    done = read_cache(cache, repair=True)
    wanted = set(images)
    todo = [rel for rel in images if rel not in done or (retry_failed and not done[rel].ok)]
    specs = detector_specs(detector, fallback, min_score)
    with open(cache, "a", encoding="utf-8") as handle:
        for count, line in enumerate(_results(hq_dir, todo, specs, workers), start=1):
            handle.write(line + "\n")
            handle.flush()
            record = LandmarkRecord.from_json(json.loads(line))
            done[record.path] = record
            if not record.ok:
                logger.warning("%s: %s", record.path, record.error)
            if count % SYNC_EVERY == 0:
                os.fsync(handle.fileno())
                logger.info("%d / %d images landmarked", count, len(todo))
        os.fsync(handle.fileno())
    failed = sorted(rel for rel, record in done.items() if rel in wanted and not record.ok)
    (out_dir / FAILED_NAME).write_text("".join(f"{rel}\n" for rel in failed), encoding="utf-8")
    landmarked = sum(1 for rel, record in done.items() if rel in wanted and record.ok)
    return PrepareSummary(total=len(images), skipped=len(images) - len(todo), landmarked=landmarked, failed=failed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.prepare_stage2",
        description="Cache 68 landmarks and eye/mouth boxes of aligned HQ faces for Stage II training.")
    parser.add_argument("hq_dir", type=Path, help="folder of aligned square HQ faces (FFHQ-style, recursive)")
    parser.add_argument("out_dir", type=Path, help=f"where {CACHE_NAME} and {FAILED_NAME} go")
    parser.add_argument("--detector", default="dlib", choices=DETECTORS)
    parser.add_argument("--fallback-detector", default=None, choices=DETECTORS,
                        help="tried on faces the first detector misses (e.g. dlib_cnn: slow, finds turned faces)")
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                        help="detection score a face needs (dlib HOG: real aligned faces score 1-3)")
    parser.add_argument("--workers", type=int, default=1, help="processes detecting in parallel")
    parser.add_argument("--retry-failed", action="store_true", help="retry images an earlier run could not landmark")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    summary = prepare(args.hq_dir, args.out_dir, args.detector, args.fallback_detector, args.workers,
                      args.retry_failed, args.min_score)
    print(f"{summary.total} images: {summary.landmarked} landmarked, {len(summary.failed)} without landmarks, "
          f"{summary.skipped} already done before this run")
    if summary.failed:
        shown = ", ".join(summary.failed[:10]) + (" ..." if len(summary.failed) > 10 else "")
        print(f"could not landmark: {shown} (full list in {args.out_dir / FAILED_NAME}); they are left out of training")
    return 0 if summary.landmarked else 1


if __name__ == "__main__":
    sys.exit(main())
