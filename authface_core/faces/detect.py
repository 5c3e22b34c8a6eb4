"""Face detection front door: the detector interface, detector lookup and batch detection."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..images import to_rgb_float
from .select import sort_faces
from .types import DetectedFace, FaceSet

logger = logging.getLogger("authface")

DETECTOR_NAMES: tuple[str, ...] = ("dlib", "dlib_cnn", "insightface")


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces with 68 landmarks in one image.

    ``detect`` takes an HxWx3 float32 RGB image in [0, 1] and returns the faces found (possibly
    none), each with ``image_index`` set to the given value, box/landmarks/points5 in that
    image's pixels. It must not raise because no face is found.
    """

    name: str

    def detect(self, image: np.ndarray, image_index: int = 0) -> list[DetectedFace]: ...


def get_detector(name: str = "dlib", retry_padded: bool = True, **options: Any) -> FaceDetector:
    """A detector by name, configured by ``options``.

    With ``retry_padded`` (the default) a photo in which the detector finds no face is searched
    again on padded copies (and, for small photos, enlarged ones), so that tight portrait crops
    whose forehead and chin are cut off are found: see
    :class:`~authface_core.faces.detect_retry.PaddedRetryDetector`. The enlarging is left out
    when ``upsample=0`` asks the detector not to look for small faces.

    - "dlib": dlib's HOG detector + 68-point shape predictor (default; CPU, about 0.1 s for a
      1280 px photo). Options: see :class:`~authface_core.faces.detect_dlib.DlibDetector`.
    - "dlib_cnn": dlib's MMOD CNN detector + the same shape predictor: finds rotated and
      profile faces HOG misses, but is slow on CPU (2 cores, 1280 px photo: 8 s, 36 s with
      upsample=1).
    - "insightface": insightface's SCRFD detector + 1k3d68 landmarks; needs ``root`` (the
      folder holding ``models/<pack>/``). Options: see
      :class:`~authface_core.faces.detect_insightface.InsightFaceDetector`.

    Models load on first use and are shared between detectors. Raises ValueError for an unknown
    name, TypeError for an unknown option, MissingDependencyError / ModelFileError when the
    backend or its model files are missing.
    """
    detector: FaceDetector
    if name == "dlib" or name == "dlib_cnn":
        from .detect_dlib import DlibDetector

        detector = DlibDetector(cnn=name == "dlib_cnn", **options)
    elif name == "insightface":
        from .detect_insightface import InsightFaceDetector

        detector = InsightFaceDetector(**options)
    else:
        raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")
    if not retry_padded:
        return detector
    from .detect_retry import PaddedRetryDetector

    return PaddedRetryDetector(detector, upscale=options.get("upsample") != 0)


def _batch_images(images: Sequence[np.ndarray] | np.ndarray) -> Sequence[np.ndarray]:
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(
                f"an array of images must be a batch of shape BxHxWxC, got shape {images.shape}; "
                "for one image pass [image]"
            )
        return list(images)
    return images


def detect_faces(
    images: Sequence[np.ndarray] | np.ndarray,
    detector: FaceDetector | str = "dlib",
    **options: Any,
) -> FaceSet:
    """Faces of every image of a batch.

    ``images``: a sequence of images in any layout :func:`authface_core.images.to_rgb_float`
    accepts, or one BxHxWxC array. ``detector``: a detector or a name for
    :func:`get_detector`, which then receives ``options`` (options with a detector object are a
    ValueError: configure the object instead).

    Returns a FaceSet whose ``image_sizes`` holds (height, width) of every image and whose
    ``faces`` lists each image's faces left to right (box centre x, then y), images in batch
    order, ``image_index`` set. An image with no face contributes none and is reported on the
    "authface" logger at WARNING level; no face is never an error.
    """
    if isinstance(detector, str):
        detector = get_detector(detector, **options)
    elif options:
        raise ValueError(
            f"detector options {sorted(options)} are only used with a detector name; "
            "pass them to get_detector() instead"
        )
    batch = _batch_images(images)
    result = FaceSet(image_sizes=[])
    for index, image in enumerate(batch):
        rgb = to_rgb_float(image)
        height, width = rgb.shape[:2]
        result.image_sizes.append((height, width))
        found = sort_faces(detector.detect(rgb, image_index=index))
        if not found:
            logger.warning(
                "no face found in image %d of %d (%dx%d) by detector %r; it contributes no faces. "
                "Small faces need more upsampling (dlib: upsample=1 or 2) or another detector.",
                index,
                len(batch),
                width,
                height,
                detector.name,
            )
        result.faces.extend(found)
    return result
