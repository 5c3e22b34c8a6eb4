"""select_faces / sort_faces: per-image choice and stable ordering of detected faces."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from authface_core.faces.detect import detect_faces
from authface_core.faces.select import select_faces, sort_faces
from authface_core.faces.types import AlignedFace, DetectedFace, FaceSet, five_points_from_68


def _face(image_index: int, x: float, y: float, side: float) -> DetectedFace:
    """A face of the given box; landmarks spread over the box so the data is well formed."""
    grid = np.stack(np.meshgrid(np.linspace(0.1, 0.9, 17), np.linspace(0.1, 0.9, 4)), -1).reshape(
        -1, 2
    )
    landmarks = np.array([x, y]) + side * grid
    return DetectedFace(
        image_index=image_index,
        box=(x, y, x + side, y + side),
        score=1.0,
        landmarks=landmarks,
        points5=five_points_from_68(landmarks),
    )


@pytest.fixture()
def batch() -> FaceSet:
    """Image 0: faces at x 300 (side 50), 10 (side 80), 150 (side 120), 150 lower (side 30).
    Image 2: faces at x 40 (side 60), 5 (side 20). Image 1 has none."""
    faces = [
        _face(0, 300, 0, 50),
        _face(2, 40, 0, 60),
        _face(0, 10, 0, 80),
        _face(0, 150, 0, 120),
        _face(2, 5, 0, 20),
        _face(0, 195, 300, 30),
    ]
    return FaceSet(image_sizes=[(500, 500), (10, 10), (100, 100)], faces=faces)


def _boxes(faces: FaceSet) -> list[tuple[int, float]]:
    return [(f.image_index, f.box[0]) for f in faces.faces]


def test_sort_left_to_right_by_centre_then_y() -> None:
    faces = [
        _face(0, 300, 0, 50),
        _face(0, 150, 0, 120),
        _face(0, 195, 300, 30),
        _face(0, 10, 0, 80),
    ]
    # Centres x: 325, 210, 210, 50; the two at x 210 go top first.
    assert [f.box[:2] for f in sort_faces(faces)] == [(10, 0), (150, 0), (195, 300), (300, 0)]
    assert [f.size for f in sort_faces(faces, "size")] == [120, 80, 50, 30]


def test_all_keeps_every_face_per_image_in_order(batch: FaceSet) -> None:
    out = select_faces(batch)
    assert _boxes(out) == [(0, 10), (0, 150), (0, 195), (0, 300), (2, 5), (2, 40)]
    assert out.image_sizes == batch.image_sizes
    assert _boxes(select_faces(batch, count=1)) == [(0, 10), (2, 5)]
    assert _boxes(select_faces(batch, order="size", count=2)) == [
        (0, 150),
        (0, 10),
        (2, 40),
        (2, 5),
    ]


def test_largest_is_per_image(batch: FaceSet) -> None:
    assert _boxes(select_faces(batch, "largest")) == [(0, 150), (2, 40)]
    # The two largest of image 0 (sides 120 and 80), listed left to right.
    assert _boxes(select_faces(batch, "largest", count=2)) == [(0, 10), (0, 150), (2, 5), (2, 40)]


def test_index_is_per_image_and_skips_missing_positions(batch: FaceSet) -> None:
    assert _boxes(select_faces(batch, "index", indices=[1])) == [(0, 150), (2, 40)]
    assert _boxes(select_faces(batch, "index", indices=[3, -1])) == [(0, 300), (2, 40)]
    assert _boxes(select_faces(batch, "index", indices=[0], order="size")) == [(0, 150), (2, 40)]
    assert _boxes(select_faces(batch, "index", indices=[7])) == []
    assert _boxes(select_faces(batch, "index", indices=[0, 1, 2], count=2)) == [
        (0, 10),
        (0, 150),
        (2, 5),
        (2, 40),
    ]


def test_min_size_filters_before_choosing(batch: FaceSet) -> None:
    assert _boxes(select_faces(batch, min_size=55)) == [(0, 10), (0, 150), (2, 40)]
    assert _boxes(select_faces(batch, "index", indices=[0], min_size=55)) == [(0, 10), (2, 40)]
    assert select_faces(batch, min_size=1000).faces == []


def test_aligned_entries_follow_their_faces(batch: FaceSet) -> None:
    aligned = [
        AlignedFace(
            face=f,
            size=512,
            matrix=np.eye(2, 3),
            method="test",
            landmarks=f.landmarks,
            points5=f.points5,
        )
        for f in batch.faces
    ]
    with_aligned = FaceSet(image_sizes=batch.image_sizes, faces=list(batch.faces), aligned=aligned)
    out = select_faces(with_aligned, "largest")
    assert [a.face for a in out.aligned] == out.faces
    with pytest.raises(ValueError, match="aligned entries"):
        select_faces(
            FaceSet(image_sizes=batch.image_sizes, faces=list(batch.faces), aligned=aligned[:2])
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "biggest"}, "unknown selection mode"),
        ({"order": "right_to_left"}, "unknown face order"),
        ({"count": -1}, "count must be >= 0"),
        ({"min_size": -5}, "min_size must be >= 0"),
        ({"mode": "index"}, "needs at least one face index"),
    ],
)
def test_bad_arguments_are_explained(batch: FaceSet, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        select_faces(batch, **kwargs)


def test_on_real_detections_largest_is_the_biggest_box(t1_photo: Path) -> None:
    photo = cv2.cvtColor(cv2.imread(os.fspath(t1_photo)), cv2.COLOR_BGR2RGB)
    found = detect_faces([photo])
    assert len(found.faces) == 6
    largest = select_faces(found, "largest").faces
    assert len(largest) == 1 and largest[0].size == max(f.size for f in found.faces)
    by_size = select_faces(found, order="size").faces
    assert [f.size for f in by_size] == sorted((f.size for f in found.faces), reverse=True)
