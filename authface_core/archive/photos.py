"""One photo of an archive on its way through ``authface restore``: read, faces cut out as crops
(:func:`prepare_photo`), the restored crops put back and encoded (:func:`finish_photo`).

Images are read with OpenCV from bytes (any path works); grey, RGB, RGBA, 8- and 16-bit inputs
are accepted; the output is a PNG in the input's bit depth (16 bits for 16-bit input, else 8)
that keeps its alpha channel (grey becomes RGB). A photo with no face is written unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AuthFaceError
from ..faces.detect import FaceDetector
from ..faces.types import FaceSet
from ..images import read_image_file, rgb_channel_order
from .discovery import InputFile
from .ranks import face_seed

# The alignment and paste-back restore_photo uses (authface_core.pipeline.photo): the release's
# FFHQ alignment, the default feathered square.
ALIGN_METHOD = "ffhq"


class PhotoError(AuthFaceError):
    """A photo cannot be restored (unreadable, wrong shape); the rest of the run goes on."""


@dataclass(eq=False)
class PreparedPhoto:
    """A photo with its faces cut out. ``crops`` (N, size, size, 3) float32 RGB in [0, 1], one per
    face, ``seeds`` one per face; ``faces`` is None for an ``--aligned`` crop (the whole image is
    the face). ``restored`` fills in as batches finish; with best-of-N, ``picks`` holds per face
    the candidate kept and every candidate's identity similarity to the face's input crop."""

    file: InputFile
    target: Path
    decoded: np.ndarray
    rgb: np.ndarray
    alpha: np.ndarray | None
    faces: FaceSet | None
    crops: np.ndarray
    seeds: list[int]
    prepare_seconds: float
    restored: dict[int, np.ndarray] = field(default_factory=dict)
    picks: dict[int, tuple[int, list[float]]] = field(default_factory=dict)
    model_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @property
    def face_count(self) -> int:
        return len(self.crops)

    @property
    def complete(self) -> bool:
        return len(self.restored) == self.face_count

    def boxes(self) -> list[list[float]]:
        """Face boxes (x0, y0, x1, y1) in source pixels, rounded to 0.1 px."""
        if self.faces is None:
            height, width = self.rgb.shape[:2]
            return [[0.0, 0.0, float(width), float(height)]]
        return [[round(float(v), 1) for v in face.box] for face in self.faces.faces]


def _resize(image: np.ndarray, side: tuple[int, int]) -> np.ndarray:
    """Area averaging to shrink, bicubic to enlarge (OpenCV's advice for each direction)."""
    import cv2

    shrinking = side[0] < image.shape[1]
    return cv2.resize(image, side, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def prepare_photo(
    file: InputFile, target: Path, detector: FaceDetector | None, size: int, base_seed: int
) -> PreparedPhoto:
    """Read ``file`` and cut out its faces as ``size`` crops: detected and aligned, or with
    ``detector`` None the whole image as one ``--aligned`` face crop (square, resized to
    ``size``). Face n's seed is :func:`~authface_core.archive.ranks.face_seed` of ``base_seed``,
    the relative path and n. Raises PhotoError for unreadable or (aligned) non-square input."""
    from ..faces.align import align_faces
    from ..faces.detect import detect_faces
    from ..images import split_alpha

    start = time.perf_counter()
    decoded = read_image_file(file.source)
    rgb, alpha = split_alpha(rgb_channel_order(decoded))
    if detector is None:
        height, width = rgb.shape[:2]
        if height != width:
            raise PhotoError(f"{file.source}: --aligned inputs must be square face crops, got {width}x{height}")
        crops, faces = (rgb if height == size else _resize(rgb, (size, size)))[None], None
    else:
        faces = detect_faces([rgb], detector)
        crops, faces = align_faces([rgb], faces, size, ALIGN_METHOD)
    seeds = [face_seed(base_seed, file.relative, n) for n in range(len(crops))]
    return PreparedPhoto(file, target, decoded, rgb, alpha, faces, np.ascontiguousarray(crops, dtype=np.float32),
                         seeds, time.perf_counter() - start, started=start)


def finish_photo(photo: PreparedPhoto) -> bytes:
    """The output PNG bytes: restored faces pasted back (or the aligned crop brought back to its
    own size), in the input's bit depth with its alpha; a photo with no face unchanged."""
    import cv2

    from ..faces.paste import paste_faces

    if photo.face_count == 0:
        ok, encoded = cv2.imencode(".png", photo.decoded)
        if not ok:
            raise PhotoError(f"OpenCV could not encode {photo.target}")
        return encoded.tobytes()
    crops = np.stack([photo.restored[n] for n in range(photo.face_count)])
    if photo.faces is None:
        height, width = photo.rgb.shape[:2]
        rgb = crops[0] if crops.shape[1] == height else np.clip(_resize(crops[0], (width, height)), 0.0, 1.0)
    else:
        rgb = paste_faces(photo.rgb, crops, photo.faces.aligned)
    return encode_output(rgb, photo.alpha, photo.decoded.dtype)


def encode_output(rgb: np.ndarray, alpha: np.ndarray | None, like: np.dtype) -> bytes:
    """Float RGB (and alpha) in [0, 1] as PNG bytes in ``like``'s depth (16 bits for uint16
    input, else 8), clipped and rounded by :func:`authface_core.images.encode_png`."""
    from ..images import encode_png

    planes = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    return encode_png(planes, bits=16 if like == np.uint16 else 8)


def face_landmarks(photo: PreparedPhoto) -> list[np.ndarray] | None:
    """The 68 landmarks of each face in crop pixels, None for an aligned crop (the identity
    embedder then finds them itself)."""
    if photo.faces is None:
        return None
    return [aligned.landmarks for aligned in photo.faces.aligned]
