"""Paste-back of face crops: round trip, other crop sizes, overlaps, borders, masks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from authface_core.faces.align import align_face, align_faces, apply_affine, similarity_scale
from authface_core.faces.detect import detect_faces
from authface_core.faces.paste import paste_faces
from authface_core.faces.types import AlignedFace, DetectedFace, FaceSet, five_points_from_68


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    err = (a.astype(np.float64) - b) ** 2
    return float(10 * np.log10(1.0 / (err[where] if where is not None else err).mean()))


@pytest.fixture(scope="module")
def t1(t1_photo: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(t1_photo)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def t1_faces(t1: np.ndarray) -> FaceSet:
    faces = detect_faces([t1])
    assert len(faces.faces) == 6
    return faces


@pytest.fixture(scope="module")
def t1_aligned(t1: np.ndarray, t1_faces: FaceSet) -> tuple[np.ndarray, list[AlignedFace]]:
    crops, faces = align_faces([t1], t1_faces, size=512)
    return crops, faces.aligned


def _face_regions(t1_faces: FaceSet, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean map of the landmarks' bounding boxes: the faces themselves."""
    region = np.zeros(shape[:2], dtype=bool)
    for face in t1_faces.faces:
        (x0, y0), (x1, y1) = np.floor(face.landmarks.min(0)).astype(int), np.ceil(face.landmarks.max(0)).astype(int)
        region[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    return region


def _footprint(info: AlignedFace, side: int, shape: tuple[int, ...]) -> np.ndarray:
    """Photo pixels whose centre falls inside the crop square (any crop size ``side``)."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    crop_xy = apply_affine(info.matrix, np.stack([xs, ys], axis=-1).astype(np.float64)) * side / info.size
    return np.all((crop_xy >= -1) & (crop_xy <= side), axis=-1)


def test_round_trip_reproduces_the_photo(t1: np.ndarray, t1_faces: FaceSet, t1_aligned: tuple) -> None:
    crops, aligned = t1_aligned
    faces = _face_regions(t1_faces, t1.shape)
    out = paste_faces(t1, crops, aligned)
    assert out.shape == t1.shape and out.dtype == np.float32
    whole, face = _psnr(out, t1), _psnr(out, t1, faces)
    # Control: the same paste with every face misregistered by half a photo pixel.
    shifted = [replace(a, matrix=a.matrix + [[0, 0, 0.5 * similarity_scale(a.matrix)], [0, 0, 0]]) for a in aligned]
    off = paste_faces(t1, crops, shifted)
    print(f"round trip at 512: whole {whole:.1f} dB, faces {face:.1f} dB; "
          f"half-pixel misregistration: whole {_psnr(off, t1):.1f} dB, faces {_psnr(off, t1, faces):.1f} dB")
    # t1's faces are ~180 px crops upsampled ~2.8x into 512: the crop keeps all their detail and
    # only two bicubic resamplings separate the result from the photo (measured 54.8 / 46.2 dB).
    # The bounds sit above what a half-pixel misregistration gives (43.2 / 34.4 dB).
    assert whole > 50.0 and face > 42.0
    assert _psnr(off, t1) < 50.0 and _psnr(off, t1, faces) < 42.0
    # Only the crops' footprints can change.
    reach = np.any([_footprint(a, 512, t1.shape) for a in aligned], axis=0)
    assert np.array_equal(out[~reach], t1[~reach])


def test_crops_at_another_size_paste_the_same(t1: np.ndarray, t1_faces: FaceSet, t1_aligned: tuple) -> None:
    crops, aligned = t1_aligned
    faces = _face_regions(t1_faces, t1.shape)
    at_512 = paste_faces(t1, crops, aligned)
    # A 2x restoration of the 512 alignment (cv2.resize keeps pixel corners, like resize_matrix).
    big = np.stack([cv2.resize(c, (1024, 1024), interpolation=cv2.INTER_CUBIC) for c in crops])
    at_1024 = paste_faces(t1, big, aligned)
    small = np.stack([cv2.resize(c, (384, 384), interpolation=cv2.INTER_AREA) for c in crops])
    at_384 = paste_faces(t1, small, aligned)
    print(f"faces PSNR: crops at 512 {_psnr(at_512, t1, faces):.1f} dB, 1024 {_psnr(at_1024, t1, faces):.1f} dB, "
          f"384 {_psnr(at_384, t1, faces):.1f} dB")
    assert _psnr(at_1024, t1) > 50.0 and _psnr(at_1024, t1, faces) > 42.0
    # 384 crops still sample these faces above their own resolution (~2.1x): nearly lossless.
    assert _psnr(at_384, t1, faces) > 40.0
    # The composed scale places the big crops exactly where the small ones went.
    assert _psnr(at_1024, at_512, faces) > 45.0


def _overlapping_pair(t1_faces: FaceSet, t1: np.ndarray) -> tuple[list[AlignedFace], list[np.ndarray]]:
    """One real face and a copy 70 px to its right (crops overlap), with distinct flat crops."""
    face = t1_faces.faces[2]
    lm = face.landmarks + [70.0, 0.0]
    twin = DetectedFace(0, face.box, face.score, lm, five_points_from_68(lm))
    _, first = align_face(t1, face, size=256)
    _, second = align_face(t1, twin, size=256)
    red = np.zeros((256, 256, 3), np.float32) + [0.9, 0.1, 0.1]
    blue = np.zeros((256, 256, 3), np.float32) + [0.1, 0.2, 0.8]
    return [first, second], [red.astype(np.float32), blue.astype(np.float32)]


def test_overlapping_faces_blend_independently_of_order(t1: np.ndarray, t1_faces: FaceSet) -> None:
    aligned, crops = _overlapping_pair(t1_faces, t1)
    forward = paste_faces(t1, crops, aligned)
    backward = paste_faces(t1, crops[::-1], aligned[::-1])
    assert np.abs(forward - backward).max() < 1e-6
    # Where both crops cover fully (the middle of the overlap), their colours are averaged.
    both = np.mean([apply_affine(a.inverse_matrix, [[128.0, 128.0]])[0] for a in aligned], axis=0)
    x, y = np.round(both).astype(int)
    assert np.allclose(forward[y, x], [0.5, 0.15, 0.45], atol=1e-4)
    # Where only one crop reaches, it is that crop's colour.
    x_left, y_left = np.round(apply_affine(aligned[0].inverse_matrix, [[40.0, 128.0]])[0]).astype(int)
    assert np.allclose(forward[y_left, x_left], [0.9, 0.1, 0.1], atol=1e-4)


def test_faces_whose_boxes_overlap_but_squares_do_not(t1: np.ndarray, t1_aligned: tuple) -> None:
    # Two crops turned 45 degrees, diagonal neighbours: their bounding boxes overlap, their
    # squares (100 px sides, centres 105 px apart across the facing edges) do not.
    _, aligned = t1_aligned
    side, length = 128, 100.0
    diagonal = np.array([1.0, 1.0]) / np.sqrt(2)
    faces = []
    for centre in (np.array([300.0, 300.0]), np.array([300.0, 300.0]) + 105.0 * diagonal):
        rotation = np.array([[np.cos(np.pi / 4), np.sin(np.pi / 4)], [-np.sin(np.pi / 4), np.cos(np.pi / 4)]])
        linear = rotation * side / length
        shift = (side - 1) / 2.0 - linear @ centre
        faces.append(replace(aligned[0], size=side, matrix=np.hstack([linear, shift[:, None]])))
    crops = [np.full((side, side, 3), v, np.float32) for v in ([0.9, 0.1, 0.1], [0.1, 0.2, 0.8])]
    together = paste_faces(t1, crops, faces)
    one_by_one = paste_faces(paste_faces(t1, crops[:1], faces[:1]), crops[1:], faces[1:])
    other_way = paste_faces(paste_faces(t1, crops[1:], faces[1:]), crops[:1], faces[:1])
    assert np.abs(together - one_by_one).max() < 1e-6
    assert np.abs(together - other_way).max() < 1e-6
    for face, crop in zip(faces, crops):
        x, y = np.round(apply_affine(face.inverse_matrix, [63.5, 63.5])).astype(int)
        assert np.allclose(together[y, x], crop[0, 0], atol=1e-5)


def test_faces_cut_by_the_border(t1: np.ndarray, t1_faces: FaceSet) -> None:
    face = min(t1_faces.faces, key=lambda f: f.box[0])
    cut = int(face.points5[2, 0])  # through the nose: half the face is outside
    photo = np.ascontiguousarray(t1[:, cut:])
    lm = face.landmarks - [cut, 0.0]
    inside = DetectedFace(0, face.box, face.score, lm, five_points_from_68(lm))
    crop, info = align_face(photo, inside, size=256)
    out = paste_faces(photo, [1.0 - crop], [info])
    assert out.shape == photo.shape
    nose = np.round(info.inverse_matrix @ [info.points5[2, 0] + 20, info.points5[2, 1], 1.0]).astype(int)
    assert np.allclose(out[nose[1], nose[0]], 1.0 - photo[nose[1], nose[0]], atol=0.05)
    reach = _footprint(info, 256, photo.shape)
    assert np.array_equal(out[~reach], photo[~reach])
    # A face entirely outside the photo changes nothing.
    gone = replace(info, matrix=info.matrix + [[0, 0, 5000.0], [0, 0, 0]])
    assert np.array_equal(paste_faces(photo, [1.0 - crop], [gone]), photo)


def test_no_faces_returns_the_photo(t1: np.ndarray) -> None:
    out = paste_faces(t1, np.zeros((0, 512, 512, 3), np.float32), [])
    assert np.array_equal(out, t1) and out is not t1 and out.dtype == np.float32


def test_face_mask_keeps_the_square_corners(t1: np.ndarray, t1_aligned: tuple) -> None:
    crops, aligned = t1_aligned
    info = aligned[3]
    black = np.zeros((1, 512, 512, 3), np.float32)
    square = paste_faces(t1, black, [info], mask="square")
    hull = paste_faces(t1, black, [info], mask="face")
    nose = np.round(apply_affine(info.inverse_matrix, info.landmarks[30])).astype(int)
    corner = np.round(apply_affine(info.inverse_matrix, [72.0, 440.0])).astype(int)  # beside the chin
    assert np.all(hull[nose[1], nose[0]] < 0.01) and np.all(square[nose[1], nose[0]] < 0.01)
    assert np.all(square[corner[1], corner[0]] < 0.01)
    assert np.allclose(hull[corner[1], corner[0]], t1[corner[1], corner[0]], atol=1e-3)


def test_feather_zero_is_a_hard_edge_and_output_is_clipped(t1: np.ndarray, t1_aligned: tuple) -> None:
    crops, aligned = t1_aligned
    bright = np.full((1, 512, 512, 3), 2.0, np.float32)
    hard = paste_faces(t1, bright, aligned[:1], feather=0.0)
    assert hard.max() <= 1.0
    changed = np.any(hard != t1, axis=-1)
    assert np.all(hard[changed] == 1.0)  # either the (clipped) crop or the photo, nothing between
    soft = paste_faces(t1, bright * 0.25, aligned[:1], feather=1.0)
    assert np.count_nonzero((soft > t1 + 0.01) & (soft < 0.49)) > 1000  # a ramp exists


def test_bad_input_is_refused(t1: np.ndarray, t1_aligned: tuple) -> None:
    crops, aligned = t1_aligned
    with pytest.raises(ValueError, match="one crop per face"):
        paste_faces(t1, crops[:2], aligned)
    with pytest.raises(ValueError, match="square"):
        paste_faces(t1, [crops[0][:, :500]], aligned[:1])
    with pytest.raises(ValueError, match="mask"):
        paste_faces(t1, crops, aligned, mask="oval")
    with pytest.raises(ValueError, match="H x W x 3"):
        paste_faces(t1[..., :2], crops, aligned)
