"""Finding faces that fill or overflow the frame: detection retried on padded (and, for small
photos, upscaled) copies.

Face detectors learn faces with some context around them (dlib's HOG scans an 80x80 window over
the whole head outline), so a portrait cropped so tight that the forehead and chin are cut off
is often not found at all, and the photo would pass through unrestored. When the wrapped detector
finds no face, :class:`PaddedRetryDetector` looks again on copies of the photo with a border of
:data:`PAD_FRACTION` of its long side on every side: first a constant border (the photo's mean
colour), then a mirrored one (OpenCV's reflect-101). A copy whose long side is under
:data:`UPSCALE_TO` pixels is enlarged to it (bicubic), so that a small tight crop's face is
big enough for the detector's window. The first copy that yields a face wins.

Faces found are mapped back to the photo's pixels: their boxes and landmarks then reach past the
photo's border where the face does, as for any face cut by the border, and alignment fills that
part of the crop with its border mode. A face is kept only when the centre of its landmarks lies
inside the photo (a mirrored border can hold a mirrored half-face).

Measured here (``tests/test_detect_tight_crops.py`` prints it): of 64 tight crops of the eight
faces of t1.jpg, Tom_Hanks_54745.png and scikit-image's astronaut (60-110 px wide), dlib alone
misses 31; the retry finds 29 of them, its 68 landmarks a median 1.8% (at most 6.9%) of the face
size from where dlib puts them on the whole photo, about 2 px. It finds nothing in scikit-image's
coffee, cat, rocket and brick photos, whole or shrunk to 96 px.
"""

from __future__ import annotations

import dataclasses
import logging

import cv2
import numpy as np

from ..images import to_rgb_float
from .types import DetectedFace, five_points_from_68

logger = logging.getLogger("authface")

# Border added on every side, as a fraction of the photo's long side. A quarter recovered the
# most crops in the measurement above (half: fewer, the face becoming small in the copy).
PAD_FRACTION = 0.25
# Padded copies with a shorter long side are enlarged to this many pixels.
UPSCALE_TO = 512
# The borders tried, in order: constant (the photo's mean colour) finds most faces with the
# smallest landmark error; the mirrored border finds some of the rest.
BORDERS: tuple[str, ...] = ("constant", "reflect")
_CV_BORDERS = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}


class PaddedRetryDetector:
    """A :class:`~authface_core.faces.detect.FaceDetector` that asks ``detector`` again on
    padded copies when it finds no face in a photo (module docstring).

    ``upscale``: also enlarge padded copies smaller than :data:`UPSCALE_TO` (off when the caller
    turned the detector's own upsampling off: it asked not to look for faces that small). The
    faces' ``detector`` and ``score`` are the wrapped detector's."""

    def __init__(self, detector: object, upscale: bool = True) -> None:
        self.detector = detector
        self.name: str = detector.name  # type: ignore[attr-defined]
        self.upscale = bool(upscale)

    def detect(self, image: np.ndarray, image_index: int = 0) -> list[DetectedFace]:
        """Faces in ``image`` (HxWx3 RGB, float32 in [0, 1]); see the detector interface."""
        found = self.detector.detect(image, image_index)  # type: ignore[attr-defined]
        if found:
            return found
        rgb = to_rgb_float(image)
        height, width = rgb.shape[:2]
        for border in BORDERS:
            copy, pad, scale = padded_copy(rgb, border, self.upscale)
            faces = [face for face in (map_back(f, pad, scale) for f in self.detector.detect(copy, image_index))
                     if _centre_inside(face, width, height)]
            if faces:
                logger.info("found %d face(s) in image %d (%dx%d) only on a copy with a %s border of %d px%s: "
                            "a tight crop", len(faces), image_index, width, height, border, pad,
                            f", enlarged {scale:.2f}x" if scale != 1.0 else "")
                return faces
        return []


def padded_copy(image: np.ndarray, border: str, upscale: bool) -> tuple[np.ndarray, int, float]:
    """``image`` (HxWx3 float32 in [0, 1]) with a border of :data:`PAD_FRACTION` of its long
    side ("constant": its mean colour; "reflect": mirrored), enlarged to :data:`UPSCALE_TO`
    when smaller and ``upscale``. Returns the copy, the border in source pixels and the scale."""
    height, width = image.shape[:2]
    pad = max(1, round(PAD_FRACTION * max(height, width)))
    value = tuple(float(v) for v in image.reshape(-1, 3).mean(axis=0))
    copy = cv2.copyMakeBorder(image, pad, pad, pad, pad, _CV_BORDERS[border], value=value)
    scale = 1.0
    side = max(copy.shape[:2])
    if upscale and side < UPSCALE_TO:
        scale = UPSCALE_TO / side
        size = (round(copy.shape[1] * scale), round(copy.shape[0] * scale))
        copy = np.clip(cv2.resize(copy, size, interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    return np.ascontiguousarray(copy, dtype=np.float32), pad, scale


def map_back(face: DetectedFace, pad: int, scale: float) -> DetectedFace:
    """``face`` found in a copy made by :func:`padded_copy` in the source photo's pixels.

    Pixel centres map as x = (x' + 0.5) / scale - 0.5 - pad; a box's right and bottom (the last
    pixel inside) as x = (x' + 1) / scale - 1 - pad, so the box covers the same area."""
    landmarks = (face.landmarks + 0.5) / scale - 0.5 - pad
    x0, y0, x1, y1 = face.box
    box = (x0 / scale - pad, y0 / scale - pad, (x1 + 1) / scale - 1 - pad, (y1 + 1) / scale - 1 - pad)
    return dataclasses.replace(face, box=box, landmarks=landmarks, points5=five_points_from_68(landmarks))


def _centre_inside(face: DetectedFace, width: int, height: int) -> bool:
    x, y = face.landmarks.mean(axis=0)
    return -0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5
