"""Eye, mouth and face regions from 68 landmarks: boxes for Stage II's latent crops and masks.

Conventions. Landmarks are in the pixel-centre convention of ``types.py`` (pixel i covers
[i - 0.5, i + 0.5)). Boxes returned by ``component_boxes`` are in the pixel-CORNER convention
(pixel i covers [i, i + 1)), i.e. landmark + 0.5, then multiplied by ``scale``: this is what
``torchvision.ops.roi_align(..., aligned=True)`` expects. Latent cell j of an 8x-downsampled
latent covers image corner coordinates [8 j, 8 j + 8), so corner coordinates simply divide by 8:
give ``roi_align`` the scale-1 boxes with ``spatial_scale=1/8`` (or boxes made with
``scale=1/8`` and ``spatial_scale=1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .align import apply_affine, resize_matrix
from .types import LEFT_EYE_68, MOUTH_68, MOUTH_LEFT_68, MOUTH_RIGHT_68, RIGHT_EYE_68, AlignedFace

# Order of the boxes along the "component" axis of ``component_boxes``; "left" is the image's
# left (the subject's right eye), as in types.LEFT_EYE_68.
COMPONENTS = ("left_eye", "right_eye", "mouth")
COMPONENT_LANDMARKS = (LEFT_EYE_68, RIGHT_EYE_68, MOUTH_68)

# Box side = max(landmark extent * margin, minimum * face side), where the face side is the FFHQ
# crop side of the landmarks (see ``face_side``; 512 for an FFHQ-aligned 512 crop). Measured on
# the 8 dlib faces of t1.jpg, astronaut and Tom_Hanks_54745.png, FFHQ-aligned at 512: eye widths
# 22-57 px (median 49; 22 is the far eye of a turned head), mouth widths 70-145 px (median 120;
# the 5-point template's mouth is 112). With these margins the latent (1/8) eye box side is
# 7.7-10.7 (median 9.2) and the mouth's 12.8-19.9 (median 16.5; 15.4 for the template's mouth):
# docs/method.md's "eye ~9, mouth ~14" at 512, the mouth a little larger for these smiling faces.
EYE_MARGIN = 1.5
MOUTH_MARGIN = 1.1
EYE_MIN_FRACTION = 0.12
MOUTH_MIN_FRACTION = 0.2

REGIONS = ("eyes", "mouth", "face")
RESOLUTIONS = ("pixel", "latent")

# Eye and mouth masks are their landmark hulls grown by this fraction of the face side (10 px at
# 512, 1.3 latent px), so that every landmark, which lies ON the hull, is well inside the mask.
FEATURE_DILATION = 0.02
# The face mask adds a forehead: the brow points (17-26) moved up by this fraction of the
# brow-to-chin distance (the hairline-to-brow third of a face is about half of the other two).
FOREHEAD_FRACTION = 0.5
_BROWS_68 = tuple(range(17, 27))
_CHIN_68 = 8
_DRAW_SHIFT = 4  # sub-pixel bits for cv2.fillConvexPoly


def _as_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim < 2 or lm.shape[-2:] != (68, 2):
        raise ValueError(f"expected 68 landmarks of shape (68, 2) or (N, 68, 2), got {lm.shape}")
    return lm


def face_side(landmarks: np.ndarray) -> np.ndarray:
    """Side of the FFHQ crop square of the landmarks (..., 68, 2) -> (...): 2 max(2 |eye_to_eye|,
    1.8 |eye_to_mouth|), the scale of ``align.ffhq_quad``. Robust to head turns and closed eyes."""
    lm = _as_landmarks(landmarks)
    eye_left = lm[..., list(LEFT_EYE_68), :].mean(axis=-2)
    eye_right = lm[..., list(RIGHT_EYE_68), :].mean(axis=-2)
    mouth = (lm[..., MOUTH_LEFT_68, :] + lm[..., MOUTH_RIGHT_68, :]) * 0.5
    eye_to_eye = np.linalg.norm(eye_right - eye_left, axis=-1)
    eye_to_mouth = np.linalg.norm(mouth - (eye_left + eye_right) * 0.5, axis=-1)
    return 2.0 * np.maximum(eye_to_eye * 2.0, eye_to_mouth * 1.8)


def component_boxes(
    landmarks: np.ndarray,
    scale: float = 1.0,
    eye_margin: float = EYE_MARGIN,
    mouth_margin: float = MOUTH_MARGIN,
    eye_min_fraction: float = EYE_MIN_FRACTION,
    mouth_min_fraction: float = MOUTH_MIN_FRACTION,
) -> np.ndarray:
    """Square boxes around the left eye, right eye and mouth (order ``COMPONENTS``).

    ``landmarks`` (68, 2) or (N, 68, 2) in pixel-centre coordinates. Each box is centred on the
    centre of its landmark group's bounding box, side = max(max(width, height) * margin,
    min_fraction * ``face_side``). Margins must be >= 1 so that every landmark of the group is
    inside its box. Returns float32 (..., 3, 4) boxes (x0, y0, x1, y1) in pixel-CORNER
    coordinates times ``scale`` (module docstring: use ``roi_align(aligned=True)``).
    """
    if min(eye_margin, mouth_margin) < 1.0:
        raise ValueError("box margins must be >= 1 (a smaller box would cut landmarks off)")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    lm = _as_landmarks(landmarks)
    side_of_face = face_side(lm)
    boxes = []
    for idx, margin, min_fraction in zip(
        COMPONENT_LANDMARKS,
        (eye_margin, eye_margin, mouth_margin),
        (eye_min_fraction, eye_min_fraction, mouth_min_fraction),
    ):
        pts = lm[..., list(idx), :]
        lo, hi = pts.min(axis=-2), pts.max(axis=-2)
        centre = (lo + hi) * 0.5 + 0.5
        side = np.maximum((hi - lo).max(axis=-1) * margin, side_of_face * min_fraction)
        half = side[..., None] * 0.5
        boxes.append(np.concatenate([centre - half, centre + half], axis=-1))
    return (np.stack(boxes, axis=-2) * scale).astype(np.float32)


def _dilated_hull(points: np.ndarray, radius: float) -> np.ndarray:
    """Convex hull of ``points`` grown by ``radius`` (Minkowski sum with a 32-gon), (K, 2)."""
    angles = np.linspace(0.0, 2.0 * np.pi, 32, endpoint=False)
    disc = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    grown = (points[:, None, :] + disc[None, :, :]).reshape(-1, 2) if radius > 0 else points
    return cv2.convexHull(grown.astype(np.float32))[:, 0, :].astype(np.float64)


def _face_outline(lm: np.ndarray) -> np.ndarray:
    """All 68 landmarks plus forehead points (brows moved up the face's chin-to-brow axis)."""
    brows = lm[list(_BROWS_68)]
    up = brows.mean(axis=0) - lm[_CHIN_68]
    return np.vstack([lm, brows + up * FOREHEAD_FRACTION])


def _fill(mask: np.ndarray, polygon: np.ndarray) -> None:
    # Pixel-centre coordinates are cv2's drawing coordinates; the shift keeps 1/16 px precision.
    pts = np.round(polygon * (1 << _DRAW_SHIFT)).astype(np.int32)
    cv2.fillConvexPoly(mask, pts, 1, lineType=cv2.LINE_8, shift=_DRAW_SHIFT)


def region_mask(
    aligned: AlignedFace | np.ndarray,
    size: int,
    regions: Sequence[str] = ("eyes", "mouth"),
    resolution: str = "pixel",
    latent_factor: int = 8,
    feather: float = 0.0,
) -> np.ndarray:
    """Mask of facial regions of an aligned ``size`` x ``size`` crop, float32 in [0, 1].

    ``aligned`` is an AlignedFace (its crop landmarks are rescaled if its size differs from
    ``size``, e.g. a 1024 restoration of a 512 alignment) or (68, 2) landmarks in the crop's
    pixels. ``regions`` is a non-empty subset of ``REGIONS``:

    - "eyes": both eye hulls (36-41, 42-47) grown by ``FEATURE_DILATION`` of the face side;
    - "mouth": the mouth hull (48-67) grown the same way;
    - "face": the hull of all 68 landmarks and a forehead (``FOREHEAD_FRACTION``), not grown.

    ``feather`` is a Gaussian sigma in crop pixels applied to the pixel mask. ``resolution``
    "pixel" gives (size, size); "latent" gives (size // latent_factor,) * 2, each value the
    fraction of its latent cell covered (mean of the pixel mask over the cell); ``size`` must
    then be a multiple of ``latent_factor``.
    """
    if isinstance(aligned, AlignedFace):
        lm = apply_affine(resize_matrix(aligned.size, size), _as_landmarks(aligned.landmarks))
    else:
        lm = _as_landmarks(aligned)
    if lm.shape != (68, 2):
        raise ValueError(f"region_mask takes the landmarks of one face, (68, 2), got {lm.shape}")
    chosen = list(regions)
    unknown = sorted(set(chosen) - set(REGIONS))
    if not chosen or unknown:
        raise ValueError(f"regions must be a non-empty subset of {list(REGIONS)}, got {chosen}")
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {list(RESOLUTIONS)}, got {resolution!r}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    size = int(size)
    if resolution == "latent" and (latent_factor < 1 or size % latent_factor):
        raise ValueError(
            f"a latent mask needs a size divisible by latent_factor: {size} is not a multiple of "
            f"{latent_factor}; align to a multiple of {latent_factor} px"
        )
    if feather < 0:
        raise ValueError(f"feather must be >= 0, got {feather}")

    radius = FEATURE_DILATION * float(face_side(lm))
    polygons = []
    if "eyes" in chosen:
        polygons += [_dilated_hull(lm[list(eye)], radius) for eye in (LEFT_EYE_68, RIGHT_EYE_68)]
    if "mouth" in chosen:
        polygons.append(_dilated_hull(lm[list(MOUTH_68)], radius))
    if "face" in chosen:
        polygons.append(_dilated_hull(_face_outline(lm), 0.0))
    canvas = np.zeros((size, size), dtype=np.uint8)
    for polygon in polygons:
        _fill(canvas, polygon)
    mask = canvas.astype(np.float32)
    if feather > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=float(feather), borderType=cv2.BORDER_REPLICATE)
    if resolution == "latent":
        cells = size // latent_factor
        mask = mask.reshape(cells, latent_factor, cells, latent_factor).mean(axis=(1, 3))
    return np.clip(mask, 0.0, 1.0).astype(np.float32)
