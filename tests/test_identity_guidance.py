"""Identity guidance maths on real faces and the random-weight ArcFace pack: the differentiable
ArcFace crop, the gradient step, the off switch."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arcface_fixture import cached_arcface_root
from authface_core.faces.align import align_faces
from authface_core.faces.detect import detect_faces
from authface_core.faces.select import select_faces
from authface_core.identity.arcface import arcface_input
from authface_core.identity.guidance import (IdentityGuidance, arcface_inputs, arcface_thetas, embed,
                                             identity_loss, load_torch_arcface)
from authface_core.images import to_rgb_float

SIZE = 128
LATENT = 32  # the toy "VAE" below upsamples 4x


@pytest.fixture(scope="module")
def aligned(hanks_photo, t1_photo) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Two real faces (Tom Hanks, t1.jpg's largest) aligned at 128 px, (2, 3, H, W), and their
    crop landmarks."""
    crops, landmarks = [], []
    for path in (hanks_photo, t1_photo):
        photo = to_rgb_float(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
        faces = select_faces(detect_faces([photo]), mode="largest", count=1)
        crop, faces = align_faces([photo], faces, size=SIZE)
        crops.append(crop[0])
        landmarks.append(faces.aligned[0].landmarks)
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float(), landmarks


@pytest.fixture(scope="module")
def arcface() -> torch.nn.Module:
    return load_torch_arcface(cached_arcface_root(), "buffalo_l")


def decode(latent: torch.Tensor) -> torch.Tensor:
    """A differentiable stand-in for the VAE decoder: 4x bilinear upsampling."""
    return F.interpolate(latent, scale_factor=SIZE // LATENT, mode="bilinear", align_corners=False).clamp(0, 1)


def test_differentiable_crop_matches_insightface_warp(aligned) -> None:
    crops, landmarks = aligned
    warped = arcface_inputs(crops, arcface_thetas(landmarks, SIZE)).numpy()
    for i, points in enumerate(landmarks):
        reference = arcface_input(crops[i].permute(1, 2, 0).numpy(), points)
        # The same bilinear warp and black border; cv2 rounds sampling positions to 1/32 pixel.
        difference = np.abs(warped[i] - reference)
        print(f"face {i}: mean {difference.mean():.2e}, max {difference.max():.2e} (inputs in [-1, 1])")
        assert difference.mean() < 0.01 and difference.max() < 0.15


def test_a_guidance_step_moves_each_face_toward_its_reference(aligned, arcface) -> None:
    crops, landmarks = aligned
    thetas = arcface_thetas(landmarks, SIZE)
    with torch.no_grad():
        # Each face is guided toward the *other* face's identity, far from its own.
        references = embed(arcface, crops.flip(0), thetas.flip(0))
    guidance = IdentityGuidance(arcface, decode, references, thetas, scale=0.5)
    x0 = F.interpolate(crops, size=LATENT, mode="area")
    before, _ = guidance.loss_and_gradient(x0)
    guided = guidance(x0, sigma=1.0)
    with torch.no_grad():
        after = identity_loss(embed(arcface, decode(guided), thetas), references)
    print(f"identity loss per face before {before.tolist()}, after one step {after.tolist()}")
    assert torch.all(after < before - 0.01)
    # The step length is `scale` latent RMS units per face.
    step_rms = (guided - x0).flatten(1).pow(2).mean(1).sqrt()
    torch.testing.assert_close(step_rms, torch.full((2,), 0.5))
    assert identity_loss(references, references).abs().max() < 1e-6


def test_off_means_the_same_tensor(aligned, arcface) -> None:
    crops, landmarks = aligned
    x0 = F.interpolate(crops, size=LATENT, mode="area")
    references = torch.zeros(2, 512)
    assert IdentityGuidance(arcface, decode, references, arcface_thetas(landmarks, SIZE), scale=0.0)(x0, 1.0) is x0
    window = IdentityGuidance(arcface, decode, references, arcface_thetas(landmarks, SIZE), scale=1.0,
                              sigma_min=2.0, sigma_max=5.0)
    assert window(x0, 1.0) is x0 and window(x0, 6.0) is x0
    with pytest.raises(ValueError, match="not a multiple"):
        window.loss_and_gradient(x0[:1].repeat(3, 1, 1, 1))
