"""68 landmarks of the face in a face crop, for embedders given a crop without its landmarks."""

from __future__ import annotations

import numpy as np

from ..faces.detect_dlib import DlibDetector, _import_dlib, _shape_predictor
from ..images import to_uint8_rgb

# Where dlib's HOG detector puts the face box in an FFHQ-aligned crop, as fractions of the crop
# side (left, top, right, bottom): the mean over the 7 faces of insightface's t1.jpg and
# Tom_Hanks_54745.png aligned at 128 and 512 px (std 0.02-0.04). Used when the detector finds
# nothing in a crop (a small, blurred or partly restored face), so the shape predictor still
# starts from where an aligned crop's face is.
FFHQ_CROP_FACE_BOX = (0.19, 0.26, 0.81, 0.89)

_detector: DlibDetector | None = None


def crop_landmarks(crop: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG landmarks, in crop pixels, of the face in ``crop`` (HxWx3 RGB).

    dlib's HOG detector runs on the crop and the detection nearest the crop's centre is kept;
    when it finds none, dlib's 68-point shape predictor runs on ``FFHQ_CROP_FACE_BOX`` (the crop
    is taken to be FFHQ-aligned, as authface_core.faces.align makes them).
    """
    global _detector
    if _detector is None:
        _detector = DlibDetector()
    image = to_uint8_rgb(crop)
    height, width = image.shape[:2]
    faces = _detector.detect(image)
    if faces:
        centre = np.array([width, height]) / 2.0

        def offset(face) -> float:
            x0, y0, x1, y1 = face.box
            return float(np.hypot((x0 + x1) / 2 - centre[0], (y0 + y1) / 2 - centre[1]))

        return min(faces, key=offset).landmarks
    dlib = _import_dlib()
    left, top, right, bottom = FFHQ_CROP_FACE_BOX
    rect = dlib.rectangle(
        round(left * width), round(top * height), round(right * width), round(bottom * height)
    )
    predictor, lock = _shape_predictor()
    with lock:
        shape = predictor(image, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
