"""Stage I data preparation: raw photos to aligned, captioned, quality-checked face crops.

Per photo under the raw folder (recursively, suffixes of
:data:`training.data.captions.IMAGE_SUFFIXES`, sorted):

1. decode it (EXIF rotation applied; grey, 16-bit, palette and RGBA photos accepted, grey ones
   marked ``"grey": true``); an undecodable file is recorded as ``corrupt`` and skipped;
2. detect faces with 68 landmarks (:func:`authface_core.faces.detect.detect_faces`); no face, or
   no face of at least ``min_face_size`` pixels (``DetectedFace.size``), rejects the photo;
3. align the largest face (or every large-enough face) with the NVlabs FFHQ recipe to a
   ``size`` x ``size`` crop (:func:`authface_core.faces.align.align_face`, method "ffhq");
4. measure the crop's quality (:func:`training.data.quality.assess`): a crop failing a
   threshold is *flagged* and written under ``flagged/`` instead of ``images/``, so it is kept for
   review but not trained on;
5. write the crop (8-bit RGB PNG), its landmarks (JSON) and a copy of the photo's caption sidecar
   (AuthFace-HQ's ``<stem>_qwen.json`` or any sidecar :mod:`training.data.captions` reads); a
   photo without a usable caption is still written and reported (``caption.problem``);
6. append one JSON line for the photo to ``report.jsonl``.

Output layout (``<rel>`` is the photo's path under the raw folder without its suffix)::

    images/<rel>.png  images/<rel>_qwen.json  images/<rel>_landmarks.json   accepted crops
    flagged/<rel>.png ...                                                   failed a quality check
    report.jsonl      one line per photo, appended as each photo finishes
    summary.json      counts over the whole report, rewritten at the end of each run

With ``faces="all"`` every face gets ``<rel>_face<k>.png`` (k in left-to-right order). Files are
written under temporary names and renamed, and a photo's report line is written after its files:
a run killed at any point loses at most the photo in progress, and a re-run skips every photo the
report already holds (whatever its outcome).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from authface_core.faces.align import align_face, similarity_scale
from authface_core.faces.detect import FaceDetector, detect_faces, get_detector
from authface_core.faces.types import DetectedFace
from authface_core.files import write_atomic
from authface_core.images import to_rgb_float

from .captions import CaptionError, compose_prompt, find_caption_file, read_caption
from .quality import QualityThresholds, assess

logger = logging.getLogger("authface.training")

REPORT_FILE = "report.jsonl"
SUMMARY_FILE = "summary.json"
ACCEPTED_DIR = "images"
FLAGGED_DIR = "flagged"
LANDMARKS_SUFFIX = "_landmarks.json"
FACE_MODES = ("largest", "all")
# Channels within this many 8-bit levels of each other everywhere make a photo grey.
_GREY_TOLERANCE = 2.0 / 255.0


@dataclass(frozen=True)
class PrepareOptions:
    """How photos become training crops.

    ``size``: crop side in pixels (the paper trains at 1024). ``min_face_size``: smallest face
    kept, in source pixels (geometric mean of the detection box sides). ``faces``: "largest"
    (one crop per photo) or "all" (one per face of at least ``min_face_size``). ``detector``
    and ``detector_options`` go to :func:`authface_core.faces.detect.get_detector` (e.g.
    ``{"upsample": 1}`` for small faces). ``quality``: thresholds of the quality check, or None
    to skip it. ``border``: how the alignment fills crop areas outside the photo.
    """

    size: int = 1024
    min_face_size: float = 256.0
    faces: str = "largest"
    detector: str = "dlib"
    detector_options: dict[str, Any] = field(default_factory=dict)
    quality: QualityThresholds | None = field(default_factory=QualityThresholds)
    border: str = "reflect"

    def validate(self) -> None:
        if int(self.size) != self.size or self.size < 64:
            raise ValueError(f"size must be an integer of at least 64 pixels, got {self.size!r}")
        if self.min_face_size < 0:
            raise ValueError(f"min_face_size must be >= 0 pixels, got {self.min_face_size}")
        if self.faces not in FACE_MODES:
            raise ValueError(f"faces must be one of {', '.join(FACE_MODES)}, got {self.faces!r}")


@dataclass
class PrepareSummary:
    """Counts over every photo in the report (``photos`` = report lines) and, for this run,
    how many photos were processed and how many were skipped as already finished."""

    photos: int = 0
    accepted: int = 0
    flagged: int = 0
    rejected: int = 0
    corrupt: int = 0
    crops_written: int = 0
    crops_flagged: int = 0
    grey: int = 0
    without_caption: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    processed_this_run: int = 0
    skipped_finished: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CorruptImageError(ValueError):
    """A file with an image suffix that cannot be decoded."""


def read_photo(path: Path) -> tuple[np.ndarray, bool]:
    """A photo as HxWx3 float32 RGB in [0, 1] and whether it is grey.

    EXIF orientation is applied. Grey ("1", "L", "LA", 16-bit "I;16*", 32-bit "I") photos are
    repeated to three channels; a colour photo whose channels all agree within two 8-bit levels
    also counts as grey. Alpha is dropped. Raises :class:`CorruptImageError` when Pillow cannot
    decode the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            handle.load()
            image = ImageOps.exif_transpose(handle)
            if image.mode.startswith("I;16"):
                array = np.array(image, dtype=np.uint16)
            elif image.mode == "I":
                array = np.clip(np.array(image), 0, 65535).astype(np.uint16)
            elif image.mode in ("1", "L", "LA"):
                array = np.array(image.convert("L"))
            else:
                array = np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise CorruptImageError(f"cannot decode {path.name}: {err}") from err
    rgb = to_rgb_float(array)
    grey = array.ndim == 2 or bool(
        np.abs(rgb[..., 0] - rgb[..., 1]).max() <= _GREY_TOLERANCE
        and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= _GREY_TOLERANCE
    )
    return rgb, grey


def _write_png(path: Path, crop: np.ndarray) -> None:
    """Write an HxWx3 float RGB crop in [0, 1] as an 8-bit PNG (rounded)."""
    pixels = np.rint(crop * 255.0).astype(np.uint8)

    def write(temp: Path) -> None:
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels[..., ::-1]))
        if not ok:
            raise OSError(f"OpenCV could not encode {path} as PNG")
        temp.write_bytes(encoded.tobytes())

    write_atomic(path, write)


def _list_photos(raw: Path) -> list[Path]:
    from .captions import IMAGE_SUFFIXES

    return sorted(p for p in raw.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_report(out_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``out_dir/report.jsonl`` (empty when there is none). A last line cut
    short by a killed run is dropped from the file."""
    path = Path(out_dir) / REPORT_FILE
    if not path.is_file():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        keep = raw[: raw.rfind(b"\n") + 1]
        with open(path, "r+b") as handle:
            handle.truncate(len(keep))
        raw = keep
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def _append_report(out_dir: Path, record: dict[str, Any]) -> None:
    with open(out_dir / REPORT_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _caption_info(photo: Path) -> dict[str, Any]:
    """Where the caption is and whether it is usable (``problem`` None when it is)."""
    source = find_caption_file(photo)
    try:
        caption = read_caption(photo)
    except CaptionError as err:
        return {"sidecar": None if source is None else source.name, "problem": str(err), "prompt": None}
    prompt = compose_prompt(caption)
    return {"sidecar": source.name if source else None, "problem": None if prompt else f"empty caption in {source}",
            "prompt": prompt or None}


def _landmarks_record(face: DetectedFace, info: Any, source: str, photo_size: tuple[int, int]) -> dict[str, Any]:
    return {
        "source": source, "source_size": list(photo_size), "crop_size": info.size, "method": info.method,
        "matrix": info.matrix.tolist(), "landmarks_68": info.landmarks.tolist(), "points5": info.points5.tolist(),
        "source_box": list(face.box), "source_landmarks_68": face.landmarks.tolist(), "score": face.score,
        "detector": face.detector,
    }


class FacePreparer:
    """Prepares photos one by one into an output folder (see the module docstring)."""

    def __init__(self, raw_dir: str | Path, out_dir: str | Path, options: PrepareOptions,
                 detector: FaceDetector | None = None) -> None:
        options.validate()
        self.raw = Path(raw_dir)
        self.out = Path(out_dir)
        if not self.raw.is_dir():
            raise ValueError(f"raw photo folder {self.raw} does not exist")
        if self.out.resolve() == self.raw.resolve() or self.raw.resolve() in self.out.resolve().parents:
            raise ValueError(f"the output folder {self.out} must not be inside the raw folder {self.raw}")
        self.options = options
        self.detector = detector or get_detector(options.detector, **options.detector_options)

    def _faces(self, rgb: np.ndarray) -> tuple[list[DetectedFace], str | None]:
        """The faces to crop, or a rejection reason."""
        found = detect_faces([rgb], self.detector).faces
        if not found:
            return [], "no face found"
        large = [f for f in found if f.size >= self.options.min_face_size]
        if not large:
            biggest = max(f.size for f in found)
            return [], (f"face too small: the largest of {len(found)} face(s) is {biggest:.0f} px, "
                        f"min_face_size is {self.options.min_face_size:g} px")
        if self.options.faces == "largest":
            return [max(large, key=lambda f: f.size)], None
        return large, None

    def _write_crop(self, photo: Path, rel: Path, crop_name: str, crop: np.ndarray, landmarks: dict[str, Any],
                    passed: bool) -> dict[str, str]:
        folder = self.out / (ACCEPTED_DIR if passed else FLAGGED_DIR) / rel.parent
        image_path = folder / f"{crop_name}.png"
        _write_png(image_path, crop)
        landmarks_path = folder / f"{crop_name}{LANDMARKS_SUFFIX}"
        text = json.dumps(landmarks) + "\n"
        write_atomic(landmarks_path, lambda temp: temp.write_text(text, encoding="utf-8"))
        written = {"image": str(image_path.relative_to(self.out)),
                   "landmarks": str(landmarks_path.relative_to(self.out))}
        sidecar = find_caption_file(photo)
        if sidecar is not None:
            target = folder / (crop_name + sidecar.name[len(photo.stem):])
            write_atomic(target, lambda temp: shutil.copyfile(sidecar, temp))
            written["caption"] = str(target.relative_to(self.out))
        return written

    def process(self, photo: Path) -> dict[str, Any]:
        """Prepare one photo and return its report record (not yet appended)."""
        started = time.perf_counter()
        rel = photo.relative_to(self.raw)
        record: dict[str, Any] = {"source": rel.as_posix()}
        try:
            rgb, grey = read_photo(photo)
        except CorruptImageError as err:
            record.update(status="corrupt", reason=str(err))
            return record
        height, width = rgb.shape[:2]
        record.update(width=width, height=height, grey=grey, caption=_caption_info(photo))
        faces, reason = self._faces(rgb)
        if reason is not None:
            record.update(status="rejected", reason=reason, seconds=round(time.perf_counter() - started, 3))
            return record
        stem = rel.with_suffix("")
        entries = []
        for number, face in enumerate(faces):
            crop, info = align_face(rgb, face, size=self.options.size, method="ffhq", border=self.options.border)
            crop = np.clip(crop, 0.0, 1.0, out=crop)  # bicubic overshoot
            quality = None if self.options.quality is None else assess(crop, self.options.quality)
            passed = quality is None or quality.passed
            crop_name = stem.name if self.options.faces == "largest" else f"{stem.name}_face{number}"
            written = self._write_crop(photo, stem, crop_name, crop,
                                       _landmarks_record(face, info, rel.as_posix(), (height, width)), passed)
            entries.append({
                "status": "accepted" if passed else "flagged", "face_size": round(face.size, 1),
                "score": face.score, "scale": similarity_scale(info.matrix), **written,
                "quality": None if quality is None else {
                    "sharpness": quality.sharpness, "noise_sigma": quality.noise_sigma,
                    "salt_pepper_fraction": quality.salt_pepper_fraction, "reasons": quality.reasons},
            })
        accepted = any(e["status"] == "accepted" for e in entries)
        record.update(status="accepted" if accepted else "flagged", faces=entries,
                      reason=None if accepted else "; ".join(r for e in entries for r in e["quality"]["reasons"]),
                      seconds=round(time.perf_counter() - started, 3))
        return record

    def run(self, progress: Callable[[Iterator[Path], int], Iterator[Path]] | None = None) -> PrepareSummary:
        """Prepare every photo not yet in the report, appending its record as it finishes;
        returns the summary over the whole report (also written to ``summary.json``).
        ``progress`` wraps the iteration over pending photos (e.g. a tqdm)."""
        self.out.mkdir(parents=True, exist_ok=True)
        done = {record["source"] for record in read_report(self.out)}
        photos = _list_photos(self.raw)
        pending = [p for p in photos if p.relative_to(self.raw).as_posix() not in done]
        iterator: Iterator[Path] = iter(pending) if progress is None else progress(iter(pending), len(pending))
        for photo in iterator:
            record = self.process(photo)
            _append_report(self.out, record)
            if record["status"] in ("rejected", "corrupt"):
                logger.info("%s: %s (%s)", record["source"], record["status"], record["reason"])
        summary = summarise(read_report(self.out))
        summary.processed_this_run = len(pending)
        summary.skipped_finished = len(photos) - len(pending)
        (self.out / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
        return summary


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0]


def summarise(records: list[dict[str, Any]]) -> PrepareSummary:
    """Counts over report records (the last record of a photo counts when it appears twice)."""
    latest = {record["source"]: record for record in records}
    summary = PrepareSummary(photos=len(latest))
    reasons: Counter[str] = Counter()
    for record in latest.values():
        status = record["status"]
        setattr(summary, status, getattr(summary, status) + 1)
        if status == "rejected":
            reasons[_reason_kind(record["reason"])] += 1
        if status == "corrupt":
            continue
        summary.grey += bool(record.get("grey"))
        faces = record.get("faces", [])
        summary.crops_written += sum(face["status"] == "accepted" for face in faces)
        summary.crops_flagged += sum(face["status"] == "flagged" for face in faces)
        if faces and record["caption"]["problem"] is not None:
            summary.without_caption += 1
    summary.reject_reasons = dict(sorted(reasons.items()))
    return summary


def prepare_dataset(raw_dir: str | Path, out_dir: str | Path, options: PrepareOptions | None = None,
                    progress: Callable[[Iterator[Path], int], Iterator[Path]] | None = None) -> PrepareSummary:
    """Prepare every photo under ``raw_dir`` into ``out_dir`` (see the module docstring);
    re-running skips the photos already in the report. Raises ValueError for bad options or
    folders, MissingDependencyError / ModelFileError when the face detector is unavailable."""
    return FacePreparer(raw_dir, out_dir, options or PrepareOptions()).run(progress)
