"""Data carried between face detection, alignment, region masks and paste-back.

Coordinates are (x, y) in pixels with pixel centres at integer positions (OpenCV's convention),
so ``cv2.warpAffine`` with these matrices maps exactly. Landmarks use the iBUG-300W 68-point
order (jaw 0-16, brows 17-26, nose 27-35, eyes 36-41 and 42-47, mouth 48-67).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Indices into the 68 points: eyes and mouth as the paper uses them (docs/method.md).
LEFT_EYE_68 = tuple(range(36, 42))  # the eye on the image's left (the subject's right eye)
RIGHT_EYE_68 = tuple(range(42, 48))
MOUTH_68 = tuple(range(48, 68))
NOSE_TIP_68 = 30
MOUTH_LEFT_68 = 48
MOUTH_RIGHT_68 = 54


def five_points_from_68(landmarks: np.ndarray) -> np.ndarray:
    """The 5 points (image-left eye centre, image-right eye centre, nose tip, image-left and
    image-right mouth corner) from 68 iBUG landmarks, shape (5, 2) float64."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks of shape (68, 2), got {pts.shape}")
    return np.stack(
        [
            pts[list(LEFT_EYE_68)].mean(axis=0),
            pts[list(RIGHT_EYE_68)].mean(axis=0),
            pts[NOSE_TIP_68],
            pts[MOUTH_LEFT_68],
            pts[MOUTH_RIGHT_68],
        ]
    )


@dataclass(frozen=True)
class FixedAlignment:
    """A source-to-crop ``matrix`` (2, 3) decided before alignment for ``size`` px crops made with
    ``method`` (e.g. a video track's smoothed alignment): alignment uses it, rescaled to its own
    crop size, instead of deriving one from the landmarks."""

    size: int
    method: str
    matrix: np.ndarray


@dataclass(frozen=True)
class DetectedFace:
    """One face found in one image of a batch.

    ``box`` is (x0, y0, x1, y1) in the source image's pixels; ``landmarks`` (68, 2) and
    ``points5`` (5, 2) are in the same pixels; ``image_index`` is the batch index of the image.
    ``track_id`` names the person across the frames of a video (``authface_core.video.tracking``),
    -1 when the face was not tracked; ``coasting`` marks a tracked face the detector missed in this
    frame, carried from the track's last detection. ``fixed_alignment``, when set, is the matrix
    alignment uses.
    """

    image_index: int
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    points5: np.ndarray
    detector: str = "dlib"
    track_id: int = -1
    coasting: bool = False
    fixed_alignment: FixedAlignment | None = None

    @property
    def size(self) -> float:
        """Face size in pixels: the geometric mean of the box sides."""
        x0, y0, x1, y1 = self.box
        return float(np.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0)))


@dataclass(frozen=True)
class AlignedFace:
    """A face warped to a ``size`` x ``size`` crop.

    ``matrix`` (2, 3) maps source pixels to crop pixels; ``landmarks``/``points5`` are in crop
    pixels. ``face`` keeps the detection (and so the source image index).
    """

    face: DetectedFace
    size: int
    matrix: np.ndarray
    method: str
    landmarks: np.ndarray
    points5: np.ndarray

    @property
    def inverse_matrix(self) -> np.ndarray:
        """(2, 3) affine mapping crop pixels back to source pixels."""
        full = np.vstack([self.matrix, [0.0, 0.0, 1.0]])
        return np.linalg.inv(full)[:2]


@dataclass
class FaceSet:
    """Faces of a batch of images: what the ComfyUI nodes pass along as ``AUTHFACE_FACES``.

    ``image_sizes`` holds (height, width) per batch image. ``aligned`` is empty until the faces
    are aligned, then holds one entry per face in ``faces`` order, matching the crop batch;
    ``crop_size`` is the alignment's crop side (0 before alignment), known even with no faces.
    """

    image_sizes: list[tuple[int, int]]
    faces: list[DetectedFace] = field(default_factory=list)
    aligned: list[AlignedFace] = field(default_factory=list)
    crop_size: int = 0

    def faces_of_image(self, index: int) -> list[int]:
        """Positions (in ``faces``) of the faces found in batch image ``index``."""
        return [i for i, f in enumerate(self.faces) if f.image_index == index]
