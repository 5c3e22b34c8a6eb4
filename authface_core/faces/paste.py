"""Paste-back: inverse-warp processed face crops into their photo with soft, order-free blending.

Cost is proportional to the faces' area: each crop is warped only into the bounding box of its
footprint in the photo (clipped to the photo), and its blend weight is computed there in closed
form from the crop coordinates instead of warping full-image masks.

Blend. Face i gives colour f_i and weight w_i in [0, 1] at each pixel (zero outside its crop
square). With num = sum w_i f_i, den = sum w_i and coverage a = 1 - prod(1 - w_i):
    out = a * num / den + (1 - a) * background.
One face gives the usual w f + (1 - w) bg; where faces overlap their colours are averaged by
weight and the background shows through only as much as no face covers it. Sums and products
commute, so the result does not depend on the order of the faces. Faces whose squares overlap
are accumulated together; a face that overlaps none is blended on its own (the same formula).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .align import check_rgb_image, resize_matrix, to_homogeneous, warp_affine
from .masks import region_mask
from .types import AlignedFace

MASKS = ("square", "face")

# Blend-weight geometry as fractions of the crop's side measured in photo pixels (the face
# size): the weight is 0 within SQUARE_ERODE of the crop's edge, then rises over
# feather * SQUARE_FEATHER with a smoothstep. Close to facexlib's paste-back, whose mask reaches
# 0.5 at ~1/20 of the side and ramps over about +-1/33.
SQUARE_ERODE = 0.02
SQUARE_FEATHER = 0.06


Box = tuple[int, int, int, int]


class _Placed(NamedTuple):
    crop: np.ndarray
    info: AlignedFace
    to_crop: np.ndarray  # (3, 3) photo pixels -> pixels of this crop (of its own size)
    quad: np.ndarray  # (4, 2) the crop square's outline in the photo
    box: Box  # its bounding box in the photo, clipped


def _footprint(to_crop: np.ndarray, side: int, height: int, width: int) -> tuple[np.ndarray, Box | None]:
    """The crop square's outline in the photo, (4, 2) corners in order around it, and the
    bounding box (x0, y0, x1, y1), end-exclusive and clipped to the photo, of the photo pixels
    whose centres can fall inside it (None when it misses the photo)."""
    inverse = np.linalg.inv(to_crop)[:2]
    corners = np.array([[-0.5, -0.5], [side - 0.5, -0.5], [side - 0.5, side - 0.5], [-0.5, side - 0.5]])
    quad = corners @ inverse[:, :2].T + inverse[:, 2]
    x0 = max(int(np.floor(quad[:, 0].min())), 0)
    y0 = max(int(np.floor(quad[:, 1].min())), 0)
    x1 = min(int(np.ceil(quad[:, 0].max())) + 1, width)
    y1 = min(int(np.ceil(quad[:, 1].max())) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return quad, None
    return quad, (x0, y0, x1, y1)


def _quads_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two convex quadrilaterals (4, 2) intersect (separating axis test)."""
    for quad in (a, b):
        edges = np.roll(quad, -1, axis=0) - quad
        for normal in np.stack([-edges[:, 1], edges[:, 0]], axis=1):
            pa, pb = a @ normal, b @ normal
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def _square_weight(local: np.ndarray, side: int, shape: tuple[int, int], feather: float) -> np.ndarray:
    """Blend weight of the crop square over a box of ``shape`` (h, w) whose pixels map to crop
    pixels by ``local`` (2, 3): 0 within SQUARE_ERODE of the square's edge, then a smoothstep
    over feather * SQUARE_FEATHER (both fractions of the side, the same in crop and photo)."""
    h, w = shape
    # Crop coordinates relative to the square's centre, in units of its side: edges at +-0.5.
    a = np.asarray(local, dtype=np.float64).copy()
    a[:, 2] -= (side - 1) / 2.0
    a = (a / side).astype(np.float32)
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    offset = np.abs(a[0, 0] * xs + a[0, 1] * ys + a[0, 2])
    np.maximum(offset, np.abs(a[1, 0] * xs + a[1, 1] * ys + a[1, 2]), out=offset)
    inner = 0.5 - SQUARE_ERODE
    if feather <= 0:
        return (offset < inner).astype(np.float32)
    t = offset
    t -= inner
    t *= -1.0 / (feather * SQUARE_FEATHER)
    np.clip(t, 0.0, 1.0, out=t)
    squared = t * t
    t *= -2.0
    t += 3.0
    t *= squared  # smoothstep 3 t^2 - 2 t^3
    return t


def _face_layer(face: _Placed, feather: float, mask: str) -> tuple[np.ndarray, np.ndarray]:
    """Colour (h, w, 3) and blend weight (h, w) of one crop over its photo box."""
    x0, y0, x1, y1 = face.box
    side = face.crop.shape[0]
    local = face.to_crop @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    shape = (y1 - y0, x1 - x0)
    to_box = np.linalg.inv(local)[:2]
    colour = warp_affine(face.crop, to_box, shape[::-1], border="replicate")
    weight = _square_weight(local[:2], side, shape, feather)
    if mask == "face":
        # A Gaussian whose +-2 sigma spans the square's ramp, in crop pixels.
        sigma = feather * SQUARE_FEATHER * side / 4.0
        hull = region_mask(face.info, side, ("face",), feather=sigma)
        weight *= np.clip(warp_affine(hull, to_box, shape[::-1], border="constant"), 0.0, 1.0)
    return colour, weight


def _overlap_groups(quads: list[np.ndarray]) -> list[list[int]]:
    """Indices of ``quads`` grouped into connected sets of overlapping quadrilaterals."""
    parent = list(range(len(quads)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(quads)):
        for j in range(i):
            if _quads_overlap(quads[i], quads[j]):
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(quads)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def paste_faces(
    image: np.ndarray,
    crops: Sequence[np.ndarray] | np.ndarray,
    aligned: Sequence[AlignedFace],
    feather: float = 1.0,
    mask: str = "square",
) -> np.ndarray:
    """Paste processed crops back into ``image``.

    ``image`` H x W x 3 float in [0, 1]; ``crops`` N square S' x S' x 3 float crops (any S': a
    1024 restoration of a 512 alignment maps through the composed scale), one per ``aligned``
    face, same order. ``feather`` scales the default edge softness (0 = hard edge at the eroded
    square; 1 = ``SQUARE_FEATHER`` of the face size). ``mask`` "square" blends the crop square;
    "face" also limits it to the face hull with forehead (``masks.region_mask``), softened by
    the same width. Faces partly outside the photo are pasted where they overlap it. Returns a
    new H x W x 3 float32 array clipped to [0, 1]; pixels no crop reaches keep the (clipped) input.
    """
    photo = check_rgb_image(image)
    if mask not in MASKS:
        raise ValueError(f"unknown paste mask {mask!r}: use one of {list(MASKS)}")
    if feather < 0:
        raise ValueError(f"feather must be >= 0, got {feather}")
    if len(crops) != len(aligned):
        raise ValueError(
            f"got {len(crops)} crops for {len(aligned)} aligned faces: "
            "pass one crop per face, in the same order"
        )
    height, width = photo.shape[:2]
    placed = []
    for index, (crop, info) in enumerate(zip(crops, aligned)):
        crop = check_rgb_image(crop, f"crop {index}")
        side = crop.shape[0]
        if crop.shape[1] != side:
            raise ValueError(f"crop {index} must be square, got {crop.shape[1]}x{side} (W x H)")
        to_crop = to_homogeneous(resize_matrix(info.size, side)) @ to_homogeneous(info.matrix)
        quad, box = _footprint(to_crop, side, height, width)
        if box is not None:
            placed.append(_Placed(crop, info, to_crop, quad, box))

    out = np.clip(photo, 0.0, 1.0)
    # A face's weight is zero outside its crop square, so faces whose squares are disjoint blend
    # on their own (even where their bounding boxes overlap), each composed over ``out``.
    for group in _overlap_groups([p.quad for p in placed]):
        if len(group) == 1:
            face = placed[group[0]]
            x0, y0, x1, y1 = face.box
            colour, weight = _face_layer(face, feather, mask)
            background = out[y0:y1, x0:x1]
            colour -= background
            colour *= weight[..., None]
            colour += background
            np.clip(colour, 0.0, 1.0, out=background)
            continue
        boxes = np.array([placed[i].box for i in group])
        gx0, gy0 = boxes[:, :2].min(axis=0)
        gx1, gy1 = boxes[:, 2:].max(axis=0)
        num = np.zeros((gy1 - gy0, gx1 - gx0, 3), dtype=np.float32)
        den = np.zeros((gy1 - gy0, gx1 - gx0), dtype=np.float32)
        cover = np.zeros_like(den)
        for i in group:
            x0, y0, x1, y1 = placed[i].box
            colour, weight = _face_layer(placed[i], feather, mask)
            sl = (slice(y0 - gy0, y1 - gy0), slice(x0 - gx0, x1 - gx0))
            num[sl] += weight[..., None] * colour
            den[sl] += weight
            cover[sl] += weight - cover[sl] * weight
        blended = np.divide(num, den[..., None], out=np.zeros_like(num), where=den[..., None] > 0)
        background = out[gy0:gy1, gx0:gx1]
        alpha = cover[..., None]
        np.clip(alpha * blended + (1.0 - alpha) * background, 0.0, 1.0, out=background)
    return out
