"""Evaluation metrics against independent computations on real photos: PSNR/SSIM against
scikit-image, LPIPS against the lpips package's own loading path, LMD against a known shift."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
import torchvision
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from authface_core.evaluation.fullref import luma, psnr, ssim
from authface_core.evaluation.identity_metrics import landmark_distance
from authface_core.evaluation.perceptual import BACKBONE_FILES, LPIPSMetric
from authface_core.evaluation.weights import MetricUnavailable
from authface_core.faces.align import align_face
from authface_core.faces.detect import detect_faces
from authface_core.identity.landmarks import crop_landmarks


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(os.fspath(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def _degraded(image: np.ndarray, seed: int) -> np.ndarray:
    noisy = cv2.GaussianBlur(image, (0, 0), 1.3) + np.random.default_rng(seed).normal(0, 0.03, image.shape)
    # 8-bit levels, as read from image files.
    return (np.rint(np.clip(noisy, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


@pytest.fixture(scope="module")
def photos(t1_photo: Path) -> list[np.ndarray]:
    astronaut = skimage.data.astronaut().astype(np.float32) / 255.0
    return [astronaut[:200, 100:340], _rgb(t1_photo)[100:400, 200:600]]


def test_psnr_ssim_match_scikit_image_on_y(photos: list[np.ndarray]) -> None:
    for seed, image in enumerate(photos):
        restored = _degraded(image, seed)
        reference_y = rgb2ycbcr(np.rint(image * 255).astype(np.uint8))[..., 0]
        restored_y = rgb2ycbcr(np.rint(restored * 255).astype(np.uint8))[..., 0]
        np.testing.assert_allclose(luma(image), reference_y, atol=1e-9)
        assert psnr(restored, image) == pytest.approx(
            peak_signal_noise_ratio(reference_y, restored_y, data_range=255), abs=1e-9
        )
        expected = structural_similarity(
            reference_y, restored_y, data_range=255, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False,
        )
        assert ssim(restored, image) == pytest.approx(expected, abs=1e-6)
        assert 15.0 < psnr(restored, image) < 40.0 and 0.3 < ssim(restored, image) < 0.99
    assert psnr(photos[0], photos[0]) == float("inf") and ssim(photos[0], photos[0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="different sizes"):
        psnr(photos[0], photos[1])


def test_psnr_ssim_on_rgb_match_scikit_image_with_channel_axis(photos: list[np.ndarray]) -> None:
    for seed, image in enumerate(photos):
        restored = _degraded(image, seed)
        reference_u8, restored_u8 = (np.rint(im * 255).astype(np.uint8) for im in (image, restored))
        assert psnr(restored, image, "rgb") == pytest.approx(
            peak_signal_noise_ratio(reference_u8, restored_u8, data_range=255), abs=1e-9
        )
        expected = structural_similarity(reference_u8, restored_u8, data_range=255, channel_axis=2,
                                         gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert ssim(restored, image, "rgb") == pytest.approx(expected, abs=1e-6)
        assert psnr(restored, image, "rgb") != pytest.approx(psnr(restored, image), abs=1e-3)
    with pytest.raises(ValueError, match="channel must be one of y, rgb"):
        psnr(photos[0], photos[0], "lab")


def test_lpips_matches_the_package_loading_torchvision_weights(
    photos: list[np.ndarray], tmp_path: Path
) -> None:
    import lpips

    torch.manual_seed(3)
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(torchvision.models.alexnet().state_dict(), weights / BACKBONE_FILES["alex"])
    ours = LPIPSMetric(weights, "alex")
    # The package's own path: torchvision finds its file in torch.hub's checkpoints folder.
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    os.link(weights / BACKBONE_FILES["alex"], hub / "checkpoints" / BACKBONE_FILES["alex"])
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:
        reference_model = lpips.LPIPS(net="alex", verbose=False).eval()
    finally:
        torch.hub.set_dir(previous)
    images = [cv2.resize(p, (128, 128), interpolation=cv2.INTER_AREA) for p in photos]
    restored = [_degraded(im, i) for i, im in enumerate(images)]
    values = ours(restored, images)

    def tensor(batch: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2)) * 2 - 1

    with torch.no_grad():
        expected = reference_model(tensor(restored), tensor(images)).flatten().numpy()
    assert values.shape == (2,) and (values > 0).all()
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    assert ours([images[0]], [images[0]])[0] == pytest.approx(0.0, abs=1e-7)


def test_lpips_without_backbone_file_names_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(MetricUnavailable) as info:
        LPIPSMetric(tmp_path, "vgg")
    assert "vgg16-397923af.pth" in str(info.value) and str(tmp_path.resolve()) in str(info.value)


def test_lmd_is_zero_for_identical_faces_and_follows_a_shift(hanks_photo: Path) -> None:
    image = _rgb(hanks_photo)
    crop, _ = align_face(image, detect_faces([image]).faces[0], 256)
    base = crop_landmarks(crop)
    assert landmark_distance(base, crop_landmarks(crop.copy())) == 0.0
    shifts = (3.0, 8.0)
    measured = []
    for shift in shifts:
        moved = cv2.warpAffine(crop, np.float32([[1, 0, shift], [0, 1, 0]]), (256, 256),
                               borderMode=cv2.BORDER_REFLECT_101)
        measured.append(landmark_distance(base, crop_landmarks(moved)))
    for shift, value in zip(shifts, measured, strict=True):
        assert value == pytest.approx(shift, abs=1.5)
    assert measured[1] > measured[0]
