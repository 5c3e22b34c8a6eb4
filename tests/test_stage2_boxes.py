"""Stage II latent crops land on the eyes and mouth of real faces.

Real photos (t1.jpg, Tom_Hanks_54745.png, astronaut) are detected and FFHQ-aligned at 512 by the
faces core; ``prepare_stage2`` re-detects landmarks on the aligned crops; the training dataset
turns its cache into boxes at the training resolution. The reference is independent of that
chain: the landmarks found on the original photo, mapped by the alignment matrix."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from authface_core.faces.masks import region_mask
from authface_core.faces.types import LEFT_EYE_68, MOUTH_68, RIGHT_EYE_68
from authface_core.losses.facial import FacialComponentLoss
from stage2_data import aligned_faces, prepared_faces
from training.stage2.data import Stage2Dataset

LATENT = 8
GROUPS = (LEFT_EYE_68, RIGHT_EYE_68, MOUTH_68)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Stage2Dataset:
    hq, landmarks = prepared_faces(tmp_path_factory.mktemp("stage2_boxes"))
    return Stage2Dataset(hq, landmarks, resolution=512)


def reference_landmarks(name: str) -> np.ndarray:
    """Landmarks of the photo's face mapped into the 512 crop (pixel-centre convention)."""
    return {n: info.landmarks for n, _, info in aligned_faces(512)}[name]


def test_every_real_face_is_in_the_dataset(dataset: Stage2Dataset) -> None:
    """t1.jpg shows 6 people, the other photos one each; dlib also fires on the astronaut's
    mission patch (the weaker of her two detections), which prepare_stage2 rejects."""
    names = {Path(record.path).stem for record in dataset.records}
    found = {name: info.face.score for name, _, info in aligned_faces(512)}
    patch = min((n for n in found if n.startswith("astronaut")), key=found.__getitem__)
    assert names == set(found) - {patch}
    assert len(names) == 8


def test_latent_box_centres_lie_on_the_landmark_hulls(dataset: Stage2Dataset) -> None:
    for index, record in enumerate(dataset.records):
        latent_boxes = dataset.boxes(index) / LATENT
        # Corner convention: a landmark at pixel centre x covers [x, x + 1), its corner coordinate is x + 0.5.
        reference = (reference_landmarks(Path(record.path).stem) + 0.5) / LATENT
        for box, group in zip(latent_boxes, GROUPS):
            hull = cv2.convexHull(reference[list(group)].astype(np.float32))
            centre = (float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2)
            # Signed distance (positive inside): a closed eye's hull is under one latent px thick,
            # and the crop's landmarks were detected anew, so allow half a latent px outside.
            assert cv2.pointPolygonTest(hull, centre, True) >= -0.5, (record.path, group[0], centre)
        eye_sides = latent_boxes[:2, 2] - latent_boxes[:2, 0]
        mouth_side = latent_boxes[2, 2] - latent_boxes[2, 0]
        # docs/method.md: at 512 an eye is ~9 latent px, a mouth ~14.
        assert np.all((eye_sides > 6) & (eye_sides < 14)), (record.path, eye_sides)
        assert 10 < mouth_side < 24, (record.path, mouth_side)
        left, right, mouth = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in latent_boxes]
        assert left[0] < 32 < right[0], "image-left eye first, then image-right eye"
        assert mouth[1] > max(left[1], right[1]) + 4


def test_crops_of_region_masks_are_eyes_and_mouth(dataset: Stage2Dataset) -> None:
    """Crop latent-resolution masks of the reference eye and mouth regions with the training crop
    (roi_align, spatial scale 1/8): the eye crops are centred on eye, the mouth crop on mouth."""
    crop = FacialComponentLoss().crop
    for index, record in enumerate(dataset.records):
        reference = reference_landmarks(Path(record.path).stem)
        masks = torch.stack([torch.from_numpy(region_mask(reference, 512, (region,), "latent"))
                             for region in ("eyes", "mouth")])[None]  # (1, 2, 64, 64)
        boxes = torch.from_numpy(dataset.boxes(index))[None]
        patches = crop(masks, boxes)
        eyes, mouth = patches["eyes"], patches["mouth"]  # (2, 2, 16, 16), (1, 2, 24, 24)
        eye_share = float(masks[0, 0].mean())
        for eye in eyes:
            centre = eye[0, 7:9, 7:9]
            assert float(centre.min()) > 0.9, (record.path, "eye crop centre is not on the eye")
            assert float(eye[0].mean()) > 10 * eye_share
            assert float(eye[1].max()) < 0.05, (record.path, "eye crop reaches the mouth")
        assert float(mouth[0, 1, 11:13, 11:13].min()) > 0.9, (record.path, "mouth crop centre is not on the mouth")
        assert float(mouth[0, 0].max()) < 0.05, (record.path, "mouth crop reaches an eye")


def test_boxes_follow_the_training_resolution(dataset: Stage2Dataset) -> None:
    half = Stage2Dataset(dataset.hq_dir, dataset.hq_dir.parent / "landmarks", resolution=256)
    for index in range(len(dataset)):
        np.testing.assert_allclose(half.boxes(index) * 2, dataset.boxes(index), atol=1e-3)
    sample = half.sample(epoch=0, index=0)
    assert sample["hq"].shape == (3, 256, 256)
    np.testing.assert_allclose(sample["boxes"].numpy(), half.boxes(0))
