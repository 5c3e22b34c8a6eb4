"""Eye/mouth boxes for Stage II's latent crops and region masks of aligned faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data
from torchvision.ops import roi_align

from authface_core.faces.align import align_face, align_faces
from authface_core.faces.detect import detect_faces
from authface_core.faces.masks import COMPONENT_LANDMARKS, COMPONENTS, component_boxes, region_mask
from authface_core.faces.types import LEFT_EYE_68, MOUTH_68, RIGHT_EYE_68, AlignedFace


@pytest.fixture(scope="module")
def aligned_512(t1_photo: Path) -> list[AlignedFace]:
    """The 6 faces of t1.jpg and the astronaut's, FFHQ-aligned at 512 from dlib landmarks."""
    t1 = cv2.cvtColor(cv2.imread(str(t1_photo)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    _, t1_faces = align_faces([t1], detect_faces([t1]), size=512)
    astronaut = data.astronaut().astype(np.float32) / 255.0
    (face,) = detect_faces([astronaut], upsample=0).faces
    _, info = align_face(astronaut, face, size=512)
    faces = [*t1_faces.aligned, info]
    assert len(faces) == 7
    return faces


def _inside(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    return (points[:, 0] >= box[0]) & (points[:, 0] <= box[2]) & (points[:, 1] >= box[1]) & (points[:, 1] <= box[3])


def test_latent_boxes_at_512_have_the_stated_sizes(aligned_512: list[AlignedFace]) -> None:
    landmarks = np.stack([a.landmarks for a in aligned_512])
    boxes = component_boxes(landmarks, scale=1 / 8)
    assert boxes.shape == (7, 3, 4) and boxes.dtype == np.float32
    sides = boxes[..., 2] - boxes[..., 0]
    assert np.allclose(sides, boxes[..., 3] - boxes[..., 1])  # square
    eyes, mouths = sides[:, :2], sides[:, 2]
    print(f"latent box sides at 512: eyes {np.round(eyes.ravel(), 1)} (median {np.median(eyes):.2f}), "
          f"mouths {np.round(mouths, 1)} (median {np.median(mouths):.2f})")
    # docs/method.md: "at 512 input an eye is ~9 latent px, a mouth ~14". These are smiling faces,
    # whose mouths are wider than the template's (15.4 latent px with our margin).
    assert 8.0 <= np.median(eyes) <= 10.5 and 13.0 <= np.median(mouths) <= 19.0
    assert eyes.min() >= 7.0 and eyes.max() <= 12.0
    assert mouths.min() >= 12.0 and mouths.max() <= 21.0


@pytest.mark.parametrize("scale", [1.0, 1 / 8])
def test_every_landmark_is_inside_its_box(aligned_512: list[AlignedFace], scale: float) -> None:
    for info in aligned_512:
        boxes = component_boxes(info.landmarks, scale=scale)
        assert boxes.shape == (3, 4)
        corners = (info.landmarks + 0.5) * scale  # pixel-corner coordinates, scaled
        for box, group in zip(boxes, COMPONENT_LANDMARKS):
            assert _inside(corners[list(group)], box).all()
        left, right, mouth = (0.5 * (b[:2] + b[2:]) for b in boxes)
        assert left[0] < right[0] and mouth[1] > max(left[1], right[1])


def test_batched_boxes_equal_single_boxes(aligned_512: list[AlignedFace]) -> None:
    landmarks = np.stack([a.landmarks for a in aligned_512])
    batched = component_boxes(landmarks)
    for n, info in enumerate(aligned_512):
        assert np.array_equal(batched[n], component_boxes(info.landmarks))
    assert COMPONENTS == ("left_eye", "right_eye", "mouth")


def test_boxes_work_with_roi_align_at_one_eighth(aligned_512: list[AlignedFace]) -> None:
    # A 64x64 "latent" whose channels hold each cell's own x and y index (cell centres). With
    # aligned=True and spatial_scale=1/8, roi_align must sample the box where the docstring says:
    # centre = landmark-group centre in latent-cell coordinates, (p + 0.5) / 8 - 0.5.
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    latent = torch.stack([xs, ys])[None]
    info = aligned_512[0]
    boxes = component_boxes(info.landmarks)
    rois = torch.cat([torch.zeros(3, 1), torch.from_numpy(boxes)], dim=1)
    sampled = roi_align(latent, rois, output_size=(2, 2), spatial_scale=1 / 8, sampling_ratio=2, aligned=True)
    for k, group in enumerate(COMPONENT_LANDMARKS):
        pts = info.landmarks[list(group)]
        centre = ((pts.min(0) + pts.max(0)) / 2 + 0.5) / 8 - 0.5
        got_centre = sampled[k].mean(dim=(1, 2)).numpy()
        assert np.allclose(got_centre, centre, atol=1e-4)
        # Bin centres of a 2x2 output are a quarter side from the centre: their spacing is side / 2.
        spacing = float(sampled[k, 0, 0, 1] - sampled[k, 0, 0, 0])
        assert spacing == pytest.approx((boxes[k, 2] - boxes[k, 0]) / 8 / 2, abs=1e-4)


def test_box_size_has_a_floor_for_degenerate_landmarks(aligned_512: list[AlignedFace]) -> None:
    # A closed, collapsed eye (all 6 points at one spot) still gets a box of the minimum side.
    lm = aligned_512[0].landmarks.copy()
    lm[list(LEFT_EYE_68)] = lm[list(LEFT_EYE_68)].mean(axis=0)
    boxes = component_boxes(lm, scale=1 / 8)
    assert boxes[0, 2] - boxes[0, 0] > 7.0


def test_bad_box_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="68 landmarks"):
        component_boxes(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="margins"):
        component_boxes(np.zeros((68, 2)), eye_margin=0.8)


def _nearest(mask: np.ndarray, points: np.ndarray, factor: int = 1) -> np.ndarray:
    """Mask values at the pixel (or latent cell) holding each landmark."""
    idx = np.floor((points + 0.5) / factor).astype(int)
    return mask[idx[:, 1], idx[:, 0]]


def test_masks_cover_their_landmarks(aligned_512: list[AlignedFace]) -> None:
    for info in aligned_512:
        lm = info.landmarks
        eyes = region_mask(info, 512, ["eyes"])
        mouth = region_mask(info, 512, ["mouth"])
        assert eyes.shape == (512, 512) and eyes.dtype == np.float32
        assert np.all(_nearest(eyes, lm[list(LEFT_EYE_68) + list(RIGHT_EYE_68)]) == 1.0)
        assert np.all(_nearest(mouth, lm[list(MOUTH_68)]) == 1.0)
        # The regions stay local: the eyes' mask misses the mouth and the nose tip, and back.
        assert np.all(_nearest(eyes, lm[[30, 51, 57]]) == 0.0)
        assert np.all(_nearest(mouth, lm[[30, 39, 42]]) == 0.0)

        eyes_latent = region_mask(info, 512, ["eyes"], resolution="latent")
        mouth_latent = region_mask(info, 512, ["mouth"], resolution="latent")
        assert eyes_latent.shape == (64, 64)
        assert np.all(_nearest(eyes_latent, lm[list(LEFT_EYE_68) + list(RIGHT_EYE_68)], 8) >= 0.5)
        assert np.all(_nearest(mouth_latent, lm[list(MOUTH_68)], 8) >= 0.5)


def test_face_mask_holds_all_landmarks_and_the_forehead(aligned_512: list[AlignedFace]) -> None:
    for info in aligned_512:
        lm = info.landmarks
        face = region_mask(info, 512, ["face"])
        assert np.all(_nearest(face, lm) == 1.0)
        # Forehead: the mask goes up beyond the brows by at least a third of brow-to-chin.
        brow = lm[17:27].mean(axis=0)
        up = (brow - lm[8]) / np.linalg.norm(brow - lm[8])
        forehead = brow + up * 0.35 * np.linalg.norm(brow - lm[8])
        if np.all((forehead >= 0) & (forehead < 512)):
            assert _nearest(face, forehead[None])[0] == 1.0
        assert face.mean() < 0.6  # and not the whole crop
        both = region_mask(info, 512, ["eyes", "mouth"])
        assert np.array_equal(both, np.maximum(region_mask(info, 512, ["eyes"]), region_mask(info, 512, ["mouth"])))


def test_latent_mask_is_the_covered_fraction(aligned_512: list[AlignedFace]) -> None:
    info = aligned_512[-1]
    for regions in (["eyes"], ["mouth", "face"]):
        pixel = region_mask(info, 512, regions, feather=3.0)
        latent = region_mask(info, 512, regions, resolution="latent", feather=3.0)
        assert np.allclose(latent, cv2.resize(pixel, (64, 64), interpolation=cv2.INTER_AREA), atol=1e-6)
        assert latent.min() >= 0.0 and latent.max() <= 1.0
        assert np.any((latent > 0.05) & (latent < 0.95))  # partly covered cells exist
    coarse = region_mask(info, 512, ["eyes"], resolution="latent", latent_factor=16)
    assert coarse.shape == (32, 32)


def test_feather_softens_without_moving_the_mask(aligned_512: list[AlignedFace]) -> None:
    info = aligned_512[0]
    hard = region_mask(info, 512, ["eyes", "mouth"])
    soft = region_mask(info, 512, ["eyes", "mouth"], feather=4.0)
    assert set(np.unique(hard)) == {0.0, 1.0}
    assert np.count_nonzero((soft > 0.01) & (soft < 0.99)) > 0.5 * np.count_nonzero(hard)
    assert abs(soft.sum() - hard.sum()) < 0.03 * hard.sum()


def test_mask_of_a_resized_crop_follows_the_crop(aligned_512: list[AlignedFace]) -> None:
    # An AlignedFace of a 512 alignment asked for a 1024 mask (a restoration at 2x).
    info = aligned_512[0]
    big = region_mask(info, 1024, ["eyes", "mouth", "face"])
    small = region_mask(info, 512, ["eyes", "mouth", "face"])
    down = cv2.resize(big, (512, 512), interpolation=cv2.INTER_AREA) > 0.5
    iou = np.logical_and(down, small > 0.5).sum() / np.logical_or(down, small > 0.5).sum()
    assert iou > 0.98
    # The same from plain landmarks given in the 512 crop's pixels.
    assert np.array_equal(region_mask(info.landmarks, 512, ["eyes"]), region_mask(info, 512, ["eyes"]))


def test_bad_mask_arguments_are_refused(aligned_512: list[AlignedFace]) -> None:
    info = aligned_512[0]
    with pytest.raises(ValueError, match="subset"):
        region_mask(info, 512, ["nose"])
    with pytest.raises(ValueError, match="subset"):
        region_mask(info, 512, [])
    with pytest.raises(ValueError, match="resolution"):
        region_mask(info, 512, ["eyes"], resolution="half")
    with pytest.raises(ValueError, match="multiple of 8"):
        region_mask(info, 500, ["eyes"], resolution="latent")
    with pytest.raises(ValueError, match="68, 2"):
        region_mask(info.landmarks[None], 512, ["eyes"])
