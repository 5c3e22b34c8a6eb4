"""insightface adapter: model-folder errors and the result mapping.

No insightface model can be downloaded here, so SCRFD / 1k3d68 never run in these tests. The
mapping is checked on real insightface ``Face`` objects filled from dlib detections of a real
photo, and the 5-point order against insightface's own alignment template.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from insightface.app.common import Face
from insightface.utils.face_align import arcface_dst

from authface_core.errors import ModelFileError
from authface_core.faces.detect import detect_faces, get_detector
from authface_core.faces.detect_insightface import (
    LANDMARK_FILE,
    PACK_DETECTOR_FILE,
    PACK_FILES,
    InsightFaceDetector,
    face_from_insightface,
    pack_folder,
)
from authface_core.faces.types import DetectedFace, FaceSet


@pytest.fixture(scope="module")
def t1(t1_photo: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(os.fspath(t1_photo)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def t1_faces(t1: np.ndarray) -> FaceSet:
    found = detect_faces([t1])
    assert len(found.faces) == 6
    return found


def _as_insightface(face: DetectedFace, depth: float) -> Face:
    """What insightface's FaceAnalysis.get returns for this face: float32 arrays, 3-D landmarks."""
    z = np.linspace(-depth, depth, 68)[:, None]
    return Face(
        bbox=np.asarray(face.box, dtype=np.float32),
        kps=face.points5.astype(np.float32),
        det_score=np.float32(0.87),
        landmark_3d_68=np.hstack([face.landmarks, z]).astype(np.float32),
    )


@pytest.mark.parametrize("pack", sorted(PACK_FILES))
def test_missing_folder_names_folder_files_and_source(tmp_path: Path, pack: str) -> None:
    with pytest.raises(ModelFileError) as info:
        get_detector("insightface", root=tmp_path, pack=pack)
    message = str(info.value)
    folder = tmp_path.resolve() / "models" / pack
    assert f"the folder {folder} does not exist" in message
    for name in PACK_FILES[pack]:
        assert name in message
    assert (
        f"https://github.com/deepinsight/insightface/releases/download/model-zoo/{pack}.zip"
        in message
    )
    assert f"models/insightface/models/{pack}/" in message


def test_missing_landmark_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "buffalo_l"
    folder.mkdir(parents=True)
    (folder / PACK_DETECTOR_FILE["buffalo_l"]).write_bytes(b"")
    with pytest.raises(
        ModelFileError, match=re.escape(f"{LANDMARK_FILE} missing in {folder.resolve()}")
    ):
        pack_folder(tmp_path, "buffalo_l")


def test_files_one_folder_too_deep_are_pointed_out(tmp_path: Path) -> None:
    # Unzipping antelopev2.zip inside models/antelopev2/ gives models/antelopev2/antelopev2/.
    nested = tmp_path / "models" / "antelopev2" / "antelopev2"
    nested.mkdir(parents=True)
    for name in PACK_FILES["antelopev2"]:
        (nested / name).write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"move the \.onnx files up one folder"):
        pack_folder(tmp_path, "antelopev2")


def test_unusable_model_files_raise_model_file_error(tmp_path: Path, t1: np.ndarray) -> None:
    folder = tmp_path / "models" / "buffalo_l"
    folder.mkdir(parents=True)
    for name in PACK_FILES["buffalo_l"]:
        (folder / name).write_bytes(b"not an onnx model")
    detector = get_detector("insightface", root=tmp_path, providers=["CPUExecutionProvider"])
    assert detector.name == "insightface" and pack_folder(tmp_path, "buffalo_l") == folder.resolve()
    with pytest.raises(ModelFileError, match="insightface could not load the model pack"):
        detector.detect(t1[:64, :64].astype(np.float32) / 255.0)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="needs root="):
        get_detector("insightface")
    with pytest.raises(ValueError, match="unknown insightface model pack 'buffalo_s'"):
        InsightFaceDetector(root="/nonexistent", pack="buffalo_s")
    with pytest.raises(ValueError, match="det_size"):
        InsightFaceDetector(root="/nonexistent", det_size=600)


def test_mapping_keeps_the_geometry(t1_faces: FaceSet) -> None:
    for face in t1_faces.faces:
        raw = _as_insightface(face, depth=0.3 * face.size)
        mapped = face_from_insightface(raw, image_index=4)
        assert mapped.image_index == 4 and mapped.detector == "insightface"
        assert mapped.score == pytest.approx(0.87)
        np.testing.assert_allclose(mapped.box, face.box, atol=1e-3)
        np.testing.assert_allclose(mapped.landmarks, face.landmarks, atol=1e-3)
        np.testing.assert_allclose(mapped.points5, face.points5, atol=1e-3)
        assert mapped.landmarks.shape == (68, 2) and mapped.landmarks.flags["C_CONTIGUOUS"]
        assert mapped.size == pytest.approx(face.size, rel=1e-5)


def _similarity_residual(points: np.ndarray, target: np.ndarray) -> float:
    """Mean distance left after the least-squares similarity (rotation, scale, shift; no
    mirroring) taking ``points`` onto ``target``: in complex numbers, target ~ a * points + b."""
    src = points[:, 0] + 1j * points[:, 1]
    dst = target[:, 0] + 1j * target[:, 1]
    design = np.stack([src, np.ones_like(src)], axis=1)
    coeffs, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return float(np.abs(design @ coeffs - dst).mean())


def test_five_point_order_matches_insightface_template(t1_faces: FaceSet) -> None:
    """insightface aligns ``kps`` to its arcface_dst template point by point (norm_crop), so
    the template's order is kps' order. Our points5 must fit it by a similarity better than
    their mirror image or their eyes or mouth corners swapped do."""
    template = arcface_dst.astype(np.float64)
    for face in t1_faces.faces:
        error = _similarity_residual(face.points5, template)
        mirrored = face.points5 * [-1.0, 1.0]
        assert error < _similarity_residual(mirrored, template)
        assert error < _similarity_residual(face.points5[[1, 0, 2, 3, 4]], template)
        assert error < _similarity_residual(face.points5[[0, 1, 2, 4, 3]], template)
        assert error < 0.1 * 112  # a few pixels of the 112 px template


def test_mapping_rejects_incomplete_results(t1_faces: FaceSet) -> None:
    face = t1_faces.faces[0]
    raw = _as_insightface(face, depth=1.0)
    without_landmarks = Face(bbox=raw.bbox, kps=raw.kps, det_score=raw.det_score)
    with pytest.raises(
        ValueError, match=re.escape(f"no 'landmark_3d_68' (the pack needs {LANDMARK_FILE})")
    ):
        face_from_insightface(without_landmarks, 0)
    bad_kps = dict(raw, kps=np.zeros((106, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"'kps' must have shape \(5, 2\), got \(106, 2\)"):
        face_from_insightface(bad_kps, 0)
    with pytest.raises(ValueError, match="no 'det_score'"):
        face_from_insightface({k: v for k, v in raw.items() if k != "det_score"}, 0)
