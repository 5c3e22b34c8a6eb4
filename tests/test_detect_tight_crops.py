"""Tight portrait crops (forehead and chin cut off) of real photos: found by the padded retry
(:mod:`authface_core.faces.detect_retry`) with landmarks where the whole photo puts them, aligned
with the border filled as asked, while photos without a face still yield none."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from authface_core.faces.align import align_faces
from authface_core.faces.detect import detect_faces, get_detector
from authface_core.faces.types import DetectedFace
from authface_core.images import to_rgb_float, to_uint8_rgb
from comfy_host import REPO, ComfyHost

# Where a crop's top edge lies, as a fraction of the brow-to-chin height below the highest brow
# point (negative: some forehead kept), and how far above the chin tip its bottom edge lies.
TOP_CUTS = (-0.1, 0.0, 0.1, 0.2)
BOTTOM_CUTS = (0.0, 0.1)
# Left and right edges: this fraction of the landmarks' width outside the outermost landmark.
SIDE_MARGIN = 0.05


def _rgb(path: Path) -> np.ndarray:
    return to_rgb_float(cv2.cvtColor(cv2.imread(os.fspath(path)), cv2.COLOR_BGR2RGB))


def tight_crop(image: np.ndarray, face: DetectedFace, top_cut: float, bottom_cut: float) -> tuple[np.ndarray, np.ndarray]:
    """The crop of ``image`` around ``face`` (module constants) and its top-left corner (x, y)."""
    points = face.landmarks
    left_x, right_x = points[:, 0].min(), points[:, 0].max()
    brow, chin = points[17:27, 1].min(), points[8, 1]
    height, margin = chin - brow, SIDE_MARGIN * (right_x - left_x)
    top, bottom = max(0, round(brow + top_cut * height)), round(chin - bottom_cut * height)
    left, right = max(0, round(left_x - margin)), round(right_x + margin)
    return np.ascontiguousarray(image[top:bottom, left:right]), np.array([left, top], dtype=np.float64)


@pytest.fixture(scope="module")
def photo_faces(t1_photo: Path, hanks_photo: Path) -> list[tuple[np.ndarray, DetectedFace]]:
    """The eight faces dlib finds on the whole photos, with their photo: six in t1.jpg, Tom Hanks
    and the astronaut (without upsampling: upsampled, HOG also takes a patch of her suit for a face)."""
    pairs = []
    for image, upsample in ((_rgb(t1_photo), None), (_rgb(hanks_photo), None), (to_rgb_float(data.astronaut()), 0)):
        detector = get_detector("dlib", retry_padded=False, upsample=upsample)
        pairs += [(image, face) for face in detector.detect(image)]
    assert len(pairs) == 8
    return pairs


def test_tight_crops_are_found_with_the_whole_photos_landmarks(
        photo_faces: list[tuple[np.ndarray, DetectedFace]]) -> None:
    plain, retrying = get_detector("dlib", retry_padded=False), get_detector("dlib")
    missed, errors = 0, []
    for (image, face), top, bottom in itertools.product(photo_faces, TOP_CUTS, BOTTOM_CUTS):
        crop, corner = tight_crop(image, face, top, bottom)
        if plain.detect(crop):
            continue
        missed += 1
        found = retrying.detect(crop)
        if not found:
            continue
        assert len(found) == 1, (top, bottom, face.box)
        # Mean distance of the 68 points to where the whole photo puts them, relative to the face.
        error = np.linalg.norm(found[0].landmarks + corner - face.landmarks, axis=1).mean()
        errors.append(error / face.size)
        assert found[0].detector == "dlib" and found[0].landmarks.shape == (68, 2)
    print(f"\ntight crops: {missed} of {len(photo_faces) * len(TOP_CUTS) * len(BOTTOM_CUTS)} missed by dlib alone; "
          f"the retry finds {len(errors)}, landmark error median {np.median(errors):.3f}, "
          f"max {max(errors):.3f} of the face size")
    assert missed >= 20, "the crops are not tight enough to test anything"
    assert len(errors) >= 0.8 * missed
    assert np.median(errors) < 0.03 and max(errors) < 0.08


def test_a_found_tight_crop_aligns_with_the_border_filled_as_asked(hanks_photo: Path) -> None:
    image = _rgb(hanks_photo)
    face = get_detector("dlib", retry_padded=False).detect(image)[0]
    crop, _ = tight_crop(image, face, 0.1, 0.1)
    assert detect_faces([crop], retry_padded=False).faces == []
    found = detect_faces([crop])
    assert len(found.faces) == 1
    x0, y0, x1, y1 = found.faces[0].box
    height, width = crop.shape[:2]
    assert y0 < 0 or x0 < 0 or y1 > height - 1 or x1 > width - 1, "the face must overflow the crop"
    constant, _ = align_faces([crop], found, size=128, border="constant")
    reflect, aligned = align_faces([crop], found, size=128, border="reflect")
    # Where each aligned pixel comes from in the crop; bicubic reads 2 px around that point.
    grid = np.stack(np.meshgrid(np.arange(128.0), np.arange(128.0)), axis=-1)
    source = grid @ aligned.aligned[0].inverse_matrix[:, :2].T + aligned.aligned[0].inverse_matrix[:, 2]
    x, y = source[..., 0], source[..., 1]
    inside = (x >= 2) & (x <= width - 3) & (y >= 2) & (y <= height - 3)
    outside = (x < -3) | (x > width + 2) | (y < -3) | (y > height + 2)
    assert outside.mean() > 0.1, "the face should overflow the photo by a good margin"
    # Outside the photo: black with a constant border, mirrored photo content with a reflected one;
    # inside, both are the photo.
    assert (constant[0][outside] == 0).all()
    assert (reflect[0][outside].max(axis=1) > 0.02).mean() > 0.95
    np.testing.assert_allclose(reflect[0][inside], constant[0][inside], atol=1e-5)
    assert aligned.aligned[0].landmarks.shape == (68, 2)


def test_photos_without_a_face_still_yield_none() -> None:
    images = [data.coffee(), data.chelsea(), data.rocket(), np.stack([data.brick()] * 3, axis=-1)]
    small = [cv2.resize(image, (96, round(96 * image.shape[0] / image.shape[1])), interpolation=cv2.INTER_AREA)
             for image in images]
    assert detect_faces(images + small).faces == []


@pytest.mark.host
def test_the_detect_node_finds_a_tight_crop(comfy_host: ComfyHost, hanks_photo: Path, tmp_path: Path) -> None:
    """AuthFaceDetectFaces in the face round-trip workflow: one aligned face from a crop that dlib
    alone finds nothing in."""
    image = _rgb(hanks_photo)
    face = get_detector("dlib", retry_padded=False).detect(image)[0]
    crop, _ = tight_crop(image, face, 0.1, 0.1)
    assert detect_faces([crop], retry_padded=False).faces == []
    path = tmp_path / "tight_crop.png"
    cv2.imwrite(os.fspath(path), cv2.cvtColor(to_uint8_rgb(crop), cv2.COLOR_RGB2BGR))
    prompt = json.loads((REPO / "workflows" / "api" / "authface_face_roundtrip.json").read_text())
    prompt["1"]["inputs"]["image"] = comfy_host.add_input(path)
    entry = comfy_host.run(prompt)
    # The detection preview draws the face's box and landmarks over the photo (a face-less photo
    # comes back unchanged).
    [preview] = entry["outputs"]["3"]["images"]
    drawn = cv2.imread(os.fspath(comfy_host.base_dir / preview["type"] / preview.get("subfolder", "")
                                 / preview["filename"]))
    assert drawn.shape == cv2.imread(os.fspath(path)).shape
    assert np.abs(drawn.astype(np.int16) - cv2.imread(os.fspath(path)).astype(np.int16)).max() > 128
