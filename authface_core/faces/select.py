"""Choosing which detected faces to restore, image by image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from .types import DetectedFace, FaceSet

SelectMode = Literal["all", "largest", "index"]
FaceOrder = Literal["left_to_right", "size", "track"]

SELECT_MODES: tuple[str, ...] = ("all", "largest", "index")
FACE_ORDERS: tuple[str, ...] = ("left_to_right", "size", "track")


def _left_to_right_key(face: DetectedFace) -> tuple[float, float]:
    x0, y0, x1, y1 = face.box
    return ((x0 + x1) / 2.0, (y0 + y1) / 2.0)


def sort_faces(
    faces: Sequence[DetectedFace], order: FaceOrder = "left_to_right"
) -> list[DetectedFace]:
    """The faces in a stable order: "left_to_right" by box centre x, then centre y;
    "size" largest first (``DetectedFace.size``), ties keeping their left-to-right order; "track"
    by ``track_id`` (faces of a video tracked by ``authface_core.video.tracking``)."""
    return [faces[i] for i in _order_positions(faces, order)]


def _order_positions(faces: Sequence[DetectedFace], order: str) -> list[int]:
    if order not in FACE_ORDERS:
        raise ValueError(f"unknown face order {order!r}; choose one of {', '.join(FACE_ORDERS)}")
    positions = sorted(range(len(faces)), key=lambda i: _left_to_right_key(faces[i]))
    if order == "size":
        positions.sort(key=lambda i: -faces[i].size)
    elif order == "track":
        positions.sort(key=lambda i: faces[i].track_id)
    return positions


def select_faces(
    faces: FaceSet,
    mode: SelectMode = "all",
    count: int = 0,
    indices: Sequence[int] = (),
    min_size: float = 0.0,
    order: FaceOrder = "left_to_right",
) -> FaceSet:
    """The faces to keep, chosen separately in each image of the batch.

    Per image: faces smaller than ``min_size`` pixels (``DetectedFace.size``, the geometric mean
    of the box sides) are dropped, the rest are put in ``order`` ("left_to_right": box centre x
    then y; "size": largest first), then ``mode`` picks:

    - "all": every face, the first ``count`` in that order when ``count`` > 0;
    - "largest": the largest face, or the ``count`` largest when ``count`` > 0;
    - "index": the faces at positions ``indices`` of that order (0 = first; negative counts from
      the end, as in Python). Positions an image does not have are skipped for that image, so
      one index list serves a batch whose images hold different numbers of faces. ``count`` > 0
      caps the number kept. With order "track" the indices are track ids, so a person stays
      chosen in every frame whoever else is missed. ``indices`` is ignored by the other modes.

    The result lists the kept faces image by image (ascending ``image_index``), each image's
    faces in ``order``; ``image_sizes`` is copied and ``aligned`` entries, when present, follow
    their faces. Raises ValueError for an unknown mode or order, a negative count or min_size,
    "index" without indices, or an ``aligned`` list that does not match ``faces``.
    """
    if mode not in SELECT_MODES:
        raise ValueError(
            f"unknown selection mode {mode!r}; choose one of {', '.join(SELECT_MODES)}"
        )
    if order not in FACE_ORDERS:
        raise ValueError(f"unknown face order {order!r}; choose one of {', '.join(FACE_ORDERS)}")
    if count < 0:
        raise ValueError(f"count must be >= 0 (0 = no limit), got {count}")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0 pixels, got {min_size}")
    if mode == "index" and len(indices) == 0:
        raise ValueError('mode "index" needs at least one face index, e.g. indices=(0,)')
    if faces.aligned and len(faces.aligned) != len(faces.faces):
        raise ValueError(
            f"FaceSet has {len(faces.faces)} faces but {len(faces.aligned)} aligned entries; "
            "aligned must be empty or hold one entry per face"
        )

    kept: list[int] = []
    for image_index in sorted({f.image_index for f in faces.faces}):
        candidates = [
            p for p in faces.faces_of_image(image_index) if faces.faces[p].size >= min_size
        ]
        ranked = [
            candidates[i] for i in _order_positions([faces.faces[p] for p in candidates], order)
        ]
        kept.extend(_pick(ranked, [faces.faces[p] for p in ranked], mode, count, indices, order))

    return FaceSet(
        image_sizes=list(faces.image_sizes),
        faces=[faces.faces[p] for p in kept],
        aligned=[faces.aligned[p] for p in kept] if faces.aligned else [],
    )


def _pick(
    ranked: list[int],
    ranked_faces: list[DetectedFace],
    mode: str,
    count: int,
    indices: Sequence[int],
    order: str = "left_to_right",
) -> list[int]:
    """Positions chosen from ``ranked`` (one image's faces, already in the requested order)."""
    if mode == "all":
        return ranked[:count] if count else ranked
    if mode == "largest":
        by_size = sorted(range(len(ranked)), key=lambda i: -ranked_faces[i].size)
        chosen = set(by_size[: count or 1])
        return [p for i, p in enumerate(ranked) if i in chosen]
    if order == "track":
        picked = [p for p, face in zip(ranked, ranked_faces) if face.track_id in set(indices)]
        return picked[:count] if count else picked
    n = len(ranked)
    wanted = {i % n for i in indices if -n <= i < n}
    picked = [p for i, p in enumerate(ranked) if i in wanted]
    return picked[:count] if count else picked
