"""Face alignment: similarity warps of detected faces to square crops.

Two recipes, both giving a source-to-crop similarity matrix (OpenCV pixel-centre convention,
see ``types.py``):

- ``ffhq``: the NVlabs FFHQ recipe from 68 landmarks (what the AuthFace paper uses for its data);
- ``five_point``: least-squares similarity from the 5 points to the 512 px five-point template of
  GFPGAN/CodeFormer/facexlib.

Warps are anti-aliased: when a warp shrinks the source, the needed source region is first
area-averaged to the output's pixel pitch (``cv2.INTER_AREA``) and the remaining near-unit-scale
similarity is sampled with bicubic interpolation; a plain bicubic warp aliases (moire on hair,
fabric, JPEG blocks) once it shrinks by more than ~1.25x.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .types import (
    LEFT_EYE_68,
    MOUTH_LEFT_68,
    MOUTH_RIGHT_68,
    RIGHT_EYE_68,
    AlignedFace,
    DetectedFace,
    FaceSet,
)

METHODS = ("ffhq", "five_point")

# "reflect" mirrors without repeating the edge pixel, like numpy's "reflect" padding of the
# FFHQ recipe; "constant" fills with black.
BORDER_MODES = {
    "reflect": cv2.BORDER_REFLECT_101,
    "constant": cv2.BORDER_CONSTANT,
    "replicate": cv2.BORDER_REPLICATE,
}

# Five-point template for a 512 x 512 crop (image-left eye, image-right eye, nose tip, image-left
# and image-right mouth corner), from facexlib's utils/face_restoration_helper.py
# (FaceRestoreHelper.face_template), as used by GFPGAN and CodeFormer.
FIVE_POINT_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

# Warps whose scale (output pixels per source pixel) is below this are area-prefiltered.
# Measured with rotated sine gratings above the output Nyquist frequency (0.7-0.9 cycles per
# output pixel): a plain bicubic warp keeps 56-64% of their amplitude as moire at scales 0.8-0.9
# and 57-103% at 0.3-0.7; with the prefilter 9-21% at every scale, while passing 85-92% of a
# 0.25 cycles/px grating. On the faces of t1.jpg against an 8x supersampled, area-averaged
# reference the prefilter gains 3.9 dB at scale 0.27, 0.3 dB at 0.73 and loses 0.8 dB at 0.91,
# hence the switch at 0.8 (above it, only the top 20% of the band can alias).
ANTIALIAS_BELOW_SCALE = 0.8


def check_rgb_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """``image`` as a contiguous float32 H x W x 3 array; ValueError if it is not a float RGB image."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{what} must be an H x W x 3 RGB array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{what} must be float with values in [0, 1], got dtype {array.dtype}: divide uint8 images by 255"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def _border_flag(border: str) -> int:
    try:
        return BORDER_MODES[border]
    except KeyError:
        raise ValueError(f"unknown border mode {border!r}: use one of {sorted(BORDER_MODES)}") from None


def _check_size(size: int) -> int:
    if int(size) != size or size < 8:
        raise ValueError(f"crop size must be an integer of at least 8 pixels, got {size!r}")
    return int(size)


def to_homogeneous(matrix: np.ndarray) -> np.ndarray:
    """(3, 3) float64 form of a (2, 3) affine matrix."""
    return np.vstack([np.asarray(matrix, dtype=np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (..., 2) mapped by a (2, 3) affine matrix, float64."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def resize_matrix(from_size: float, to_size: float) -> np.ndarray:
    """(2, 3) matrix mapping pixel coordinates of a square of ``from_size`` px onto the same
    content at ``to_size`` px. Pixel corners scale, so centres map by x' = (x + 0.5) k - 0.5."""
    k = float(to_size) / float(from_size)
    offset = 0.5 * k - 0.5
    return np.array([[k, 0.0, offset], [0.0, k, offset]])


def similarity_scale(matrix: np.ndarray) -> float:
    """Linear scale of a (2, 3) similarity: output pixels per input pixel."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix, dtype=np.float64)[:, :2]))))


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping
    ``src`` (N, 2) onto ``dst`` (N, 2), N >= 2, as a (2, 3) float64 matrix.

    Closed form of Umeyama, "Least-squares estimation of transformation parameters between two
    point patterns", IEEE TPAMI 13(4), 1991 (eqs. 40-42). Raises ValueError when ``src`` has no
    spread (all points equal).
    """
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2 or s.shape != d.shape or len(s) < 2:
        raise ValueError(f"expected two (N, 2) point arrays with N >= 2, got {s.shape} and {d.shape}")
    mean_s, mean_d = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - mean_s, d - mean_d
    var_s = float((sc**2).sum() / len(s))
    if var_s <= 1e-12:
        raise ValueError("cannot fit a similarity: the source points all coincide (bad landmarks)")
    cov = dc.T @ sc / len(s)
    u, sing, vt = np.linalg.svd(cov)
    # Umeyama's S: forbid a reflection when the best orthogonal fit would be one.
    flip = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rot = u @ flip @ vt
    scale = float(np.trace(np.diag(sing) @ flip)) / var_s
    shift = mean_d - scale * rot @ mean_s
    return np.hstack([scale * rot, shift[:, None]])


def five_point_template(size: int) -> np.ndarray:
    """The facexlib 5-point template for a ``size`` px crop, (5, 2) float64 (the 512 px values
    carried over with the pixel-corner scaling of ``resize_matrix``)."""
    return apply_affine(resize_matrix(512, _check_size(size)), FIVE_POINT_TEMPLATE_512)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square in source pixels, (4, 2) float64: corners top-left, bottom-left,
    bottom-right, top-right of the crop (pixel-corner points of the output square).

    The recipe of NVlabs/ffhq-dataset ``download_ffhq.py`` (``recreate_aligned_images``), from the
    68 iBUG landmarks: eye centres, mouth corners, an oriented square of half-side
    max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|) centred 0.1 eye_to_mouth below the eye midpoint.
    The recipe passes ``quad + 0.5`` to PIL, whose coordinates put pixel corners at integers: in
    the pixel-centre convention of our landmarks the quad itself is the corner outline. Only the
    geometry is reproduced; the recipe's blurred reflect-padding is left to the warp's border mode.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(
            f"the ffhq alignment needs 68 landmarks of shape (68, 2), got {lm.shape}: "
            "use a 68-point detector or method='five_point'"
        )
    eye_left = lm[list(LEFT_EYE_68)].mean(axis=0)
    eye_right = lm[list(RIGHT_EYE_68)].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[MOUTH_LEFT_68] + lm[MOUTH_RIGHT_68]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1.0, 1.0]
    norm = np.hypot(*x)
    if norm <= 1e-9:
        raise ValueError("cannot align: the eye and mouth landmarks coincide (bad landmarks)")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1.0, 1.0]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def ffhq_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) source-to-crop similarity of the FFHQ recipe for a ``size`` px crop."""
    size = _check_size(size)
    quad = ffhq_quad(landmarks)
    # Crop pixel centre (u, v) sits at corner coordinate (u + 0.5, v + 0.5) of the square whose
    # corner (0, 0) is quad[0], whose x edge is quad[3] - quad[0] and y edge quad[1] - quad[0].
    ex = (quad[3] - quad[0]) / size
    ey = (quad[1] - quad[0]) / size
    crop_to_source = np.array(
        [
            [ex[0], ey[0], quad[0][0] + 0.5 * (ex[0] + ey[0])],
            [ex[1], ey[1], quad[0][1] + 0.5 * (ex[1] + ey[1])],
        ]
    )
    return np.linalg.inv(to_homogeneous(crop_to_source))[:2]


def five_point_matrix(points5: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) least-squares similarity taking the 5 points onto ``five_point_template(size)``."""
    pts = np.asarray(points5, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"the five_point alignment needs points5 of shape (5, 2), got {pts.shape}")
    return estimate_similarity(pts, five_point_template(size))


def alignment_matrix(face: DetectedFace, size: int = 512, method: str = "ffhq") -> np.ndarray:
    """(2, 3) source-to-crop matrix aligning ``face`` to a ``size`` px crop with ``method``: its
    ``fixed_alignment`` when it has one, rescaled to ``size`` (both recipes scale exactly so;
    ValueError when it was fixed for another method), else derived from its landmarks."""
    fixed = face.fixed_alignment
    if fixed is not None:
        if fixed.method != method:
            raise ValueError(f"this face's alignment was fixed for '{fixed.method}' crops (AuthFace Smooth Tracks) "
                             f"but is now aligned with '{method}': set the same method on both nodes")
        return (to_homogeneous(resize_matrix(fixed.size, size)) @ to_homogeneous(fixed.matrix))[:2]
    if method == "ffhq":
        return ffhq_matrix(face.landmarks, size)
    if method == "five_point":
        return five_point_matrix(face.points5, size)
    raise ValueError(f"unknown alignment method {method!r}: use one of {list(METHODS)}")


def warp_affine(
    image: np.ndarray,
    matrix: np.ndarray,
    out_size: tuple[int, int],
    border: str = "reflect",
) -> np.ndarray:
    """Anti-aliased affine warp: output pixel p takes the source at ``matrix^-1 p``.

    ``image`` (H, W, C) or (H, W) float32; ``matrix`` (2, 3) maps source pixels to output pixels
    (pixel-centre convention); ``out_size`` is (width, height). Bicubic sampling; when the warp
    shrinks by more than ``1 / ANTIALIAS_BELOW_SCALE``, only the source region the output needs is
    area-resized to the output's pixel pitch first. Returns float32 of shape (height, width[, C]).
    """
    flag = _border_flag(border)
    width, height = int(out_size[0]), int(out_size[1])
    m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale <= 0.0:
        raise ValueError("the warp matrix is singular")
    src, m = _area_prefilter(image, m, scale, width, height) if scale < ANTIALIAS_BELOW_SCALE else (image, m)
    return cv2.warpAffine(src, m, (width, height), flags=cv2.INTER_CUBIC, borderMode=flag, borderValue=0.0)


def _area_prefilter(
    image: np.ndarray, matrix: np.ndarray, scale: float, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """The source region needed by a shrinking warp, area-resized by ``scale``, and the matrix
    from that resized region to the output."""
    inverse = np.linalg.inv(to_homogeneous(matrix))[:2]
    corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5], [width - 0.5, height - 0.5]])
    footprint = apply_affine(inverse, corners)
    # Bicubic taps reach 2 output pixels = 2 / scale source pixels beyond the footprint.
    margin = 2.0 / scale + 2.0
    h, w = image.shape[:2]
    x0 = max(int(np.floor(footprint[:, 0].min() - margin)), 0)
    y0 = max(int(np.floor(footprint[:, 1].min() - margin)), 0)
    x1 = min(int(np.ceil(footprint[:, 0].max() + margin)) + 1, w)
    y1 = min(int(np.ceil(footprint[:, 1].max() + margin)) + 1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        # The output lies outside the source: only the border mode fills it.
        return image, matrix
    region = image[y0:y1, x0:x1]
    new_w = max(int(round((x1 - x0) * scale)), 1)
    new_h = max(int(round((y1 - y0) * scale)), 1)
    small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
    fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
    # Source centre x -> resized centre (x - x0 + 0.5) fx - 0.5 (pixel corners scale).
    to_small = np.array([[fx, 0.0, (0.5 - x0) * fx - 0.5], [0.0, fy, (0.5 - y0) * fy - 0.5]])
    return small, (to_homogeneous(matrix) @ np.linalg.inv(to_homogeneous(to_small)))[:2]


def align_face(
    image: np.ndarray,
    face: DetectedFace,
    size: int = 512,
    method: str = "ffhq",
    border: str = "reflect",
) -> tuple[np.ndarray, AlignedFace]:
    """Warp one face of ``image`` (H x W x 3 float32 in [0, 1]) to a ``size`` x ``size`` crop.

    ``method`` is "ffhq" (68 landmarks) or "five_point" (``face.points5``); ``border`` ("reflect",
    "constant" = black, "replicate") fills crop areas outside the image. Returns the crop
    (size, size, 3) float32 and its ``AlignedFace`` (source-to-crop matrix, crop-space landmarks
    and 5 points). Raises ValueError on a bad image, method, border, size or landmarks.
    """
    array = check_rgb_image(image)
    size = _check_size(size)
    _border_flag(border)
    matrix = alignment_matrix(face, size, method)
    crop = warp_affine(array, matrix, (size, size), border)
    info = AlignedFace(
        face=face,
        size=size,
        matrix=matrix,
        method=method,
        landmarks=apply_affine(matrix, face.landmarks),
        points5=apply_affine(matrix, face.points5),
    )
    return crop, info


def align_faces(
    images: Sequence[np.ndarray] | np.ndarray,
    faces: FaceSet,
    size: int = 512,
    method: str = "ffhq",
    border: str = "reflect",
) -> tuple[np.ndarray, FaceSet]:
    """Align every face of a batch: each face is cut from ``images[face.image_index]``.

    ``images`` is a sequence of H x W x 3 float arrays or a B x H x W x 3 array whose sizes match
    ``faces.image_sizes``. Returns the crops (N, size, size, 3) float32 in ``faces.faces`` order
    (N = 0 gives shape (0, size, size, 3)) and a new FaceSet with ``aligned`` and ``crop_size``
    filled.
    """
    size = _check_size(size)
    if len(images) != len(faces.image_sizes):
        raise ValueError(
            f"the faces were found in {len(faces.image_sizes)} images but {len(images)} images were given: "
            "pass the same image batch that went into detection"
        )
    for index, (img, expected) in enumerate(zip(images, faces.image_sizes)):
        if tuple(np.shape(img)[:2]) != tuple(expected):
            raise ValueError(
                f"image {index} is {np.shape(img)[:2]} (H, W) but its faces were found in a "
                f"{tuple(expected)} image: align on the detection's images, not a resized copy"
            )
    crops = np.zeros((len(faces.faces), size, size, 3), dtype=np.float32)
    aligned = []
    for n, face in enumerate(faces.faces):
        if not 0 <= face.image_index < len(images):
            raise ValueError(
                f"face {n} refers to image {face.image_index}, but the batch has {len(images)} images"
            )
        crops[n], info = align_face(images[face.image_index], face, size, method, border)
        aligned.append(info)
    return crops, FaceSet(
        image_sizes=list(faces.image_sizes), faces=list(faces.faces), aligned=aligned, crop_size=size
    )
