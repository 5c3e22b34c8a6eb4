"""Reference photos for identity checks: find the person's face, align it like the restored faces.

A reference photo is meant to show one person. With several faces the largest is used (the
usual portrait); with none the photo cannot serve and the error says why and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .faces.align import align_face
from .faces.detect import FaceDetector, detect_faces
from .faces.types import AlignedFace
from .images import to_rgb_float


@dataclass(frozen=True)
class ReferenceFace:
    """The aligned face of one reference photo: ``crop`` (size x size x 3 float32 RGB), its
    ``aligned`` record (crop-space landmarks) and ``note``, which face was used and why."""

    crop: np.ndarray
    aligned: AlignedFace
    note: str


def reference_face(photo: np.ndarray, size: int, detector: FaceDetector | str = "dlib",
                   label: str = "the reference photo") -> ReferenceFace:
    """Detect the faces of ``photo``, keep the largest and align it to ``size`` with the FFHQ recipe
    (AuthFace Align Faces' default). ValueError naming ``label`` when the photo has no face."""
    rgb = to_rgb_float(photo)
    faces = detect_faces([rgb], detector=detector).faces
    height, width = rgb.shape[:2]
    if not faces:
        raise ValueError(f"{label} ({width}x{height}) has no face the detector could find: give a photo "
                         "where the person's face is visible, frontal and at least about 80 px wide, or use "
                         "the low-quality aligned crops as the reference")
    # faces come left to right: the number in the note is the one the detection preview shows.
    largest = max(range(len(faces)), key=lambda i: faces[i].size)
    face = faces[largest]
    box = ", ".join(f"{v:.0f}" for v in face.box)
    if len(faces) == 1:
        note = f"{label}: its one face (box {box})"
    else:
        note = (f"{label} has {len(faces)} faces; using the largest, face {largest} from the left "
                f"(box {box}, {face.size:.0f} px): crop the photo to the person if that is not them")
    crop, aligned = align_face(rgb, face, size=size)
    return ReferenceFace(crop=crop, aligned=aligned, note=note)


def reference_faces(photos: Sequence[np.ndarray], faces: int, size: int,
                    detector: FaceDetector | str = "dlib") -> list[ReferenceFace]:
    """One reference per face: one photo serves every face, or photo i serves face i."""
    if len(photos) not in (1, faces):
        raise ValueError(f"got {len(photos)} reference photos for {faces} faces: give one photo for every "
                         "face, or one per face in the faces' order")
    if len(photos) == 1:
        return [reference_face(photos[0], size, detector)] * faces
    return [reference_face(photo, size, detector, label=f"reference photo {i} (for face {i})")
            for i, photo in enumerate(photos)]
