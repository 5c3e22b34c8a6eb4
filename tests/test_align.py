"""Face alignment: matrices, templates, sampling convention, anti-aliasing, batch routing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from authface_core.faces.align import (
    FIVE_POINT_TEMPLATE_512,
    align_face,
    align_faces,
    apply_affine,
    estimate_similarity,
    ffhq_matrix,
    ffhq_quad,
    five_point_template,
    resize_matrix,
    similarity_scale,
    warp_affine,
)
from authface_core.faces.detect import detect_faces
from authface_core.faces.types import DetectedFace, FaceSet, five_points_from_68

EYES_AND_MOUTH = [*range(36, 48), 48, 54]


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def _similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[scale * np.cos(t), -scale * np.sin(t), tx], [scale * np.sin(t), scale * np.cos(t), ty]])


def _moved(face: DetectedFace, matrix: np.ndarray) -> DetectedFace:
    """The same face after the photo is warped by ``matrix``."""
    lm = apply_affine(matrix, face.landmarks)
    return DetectedFace(face.image_index, face.box, face.score, lm, five_points_from_68(lm), face.detector)


@pytest.fixture(scope="module")
def t1(t1_photo: Path) -> np.ndarray:
    return _read_rgb(t1_photo)


@pytest.fixture(scope="module")
def t1_faces(t1: np.ndarray) -> FaceSet:
    faces = detect_faces([t1])
    assert len(faces.faces) == 6
    return faces


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut().astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def astronaut_face(astronaut: np.ndarray) -> DetectedFace:
    # Without upsampling dlib finds exactly her face (upsampling adds a false one on the suit).
    faces = detect_faces([astronaut], upsample=0).faces
    assert len(faces) == 1
    return faces[0]


def test_five_point_exact_similarity_lands_on_template(astronaut: np.ndarray, astronaut_face: DetectedFace) -> None:
    # Five points that ARE a similarity image of the template: the fit must undo it exactly.
    known = _similarity(0.37, 23.0, 180.0, 95.0)
    points = apply_affine(known, FIVE_POINT_TEMPLATE_512)
    face = DetectedFace(0, (0, 0, 1, 1), 1.0, astronaut_face.landmarks, points)
    for size in (512, 256, 1000):
        crop, info = align_face(astronaut, face, size=size, method="five_point")
        assert crop.shape == (size, size, 3) and crop.dtype == np.float32
        error = np.abs(info.points5 - five_point_template(size)).max()
        assert error < 0.01, f"size {size}: points off the template by {error} px"
        assert np.allclose(info.matrix[:, :2], np.linalg.inv(known[:, :2]) * size / 512, atol=1e-9)


def test_five_point_real_faces_are_least_squares_fits(t1_faces: FaceSet) -> None:
    template = five_point_template(512)
    rms_ours, rms_lmeds = [], []
    for face in t1_faces.faces:
        matrix = estimate_similarity(face.points5, template)
        # Independent solver: the similarity [a -b tx; b a ty] is linear in (a, b, tx, ty).
        x, y = face.points5[:, 0], face.points5[:, 1]
        one, zero = np.ones(5), np.zeros(5)
        design = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
        (a, b, tx, ty), *_ = np.linalg.lstsq(design, template.T.reshape(-1), rcond=None)
        assert np.allclose(matrix, [[a, -b, tx], [b, a, ty]], atol=1e-8)
        residual = np.linalg.norm(apply_affine(matrix, face.points5) - template, axis=1)
        rms_ours.append(np.sqrt((residual**2).mean()))
        lmeds = cv2.estimateAffinePartial2D(face.points5, template, method=cv2.LMEDS)[0]
        residual_lmeds = np.linalg.norm(apply_affine(lmeds, face.points5) - template, axis=1)
        rms_lmeds.append(np.sqrt((residual_lmeds**2).mean()))
    print(f"five-point RMS residual at 512 (px): ours {np.round(rms_ours, 2)}, "
          f"facexlib's LMEDS {np.round(rms_lmeds, 2)}")
    # Least squares has the smallest RMS of all similarities, so never more than LMEDS's.
    assert all(o <= m + 1e-9 for o, m in zip(rms_ours, rms_lmeds))
    # The residual is the face's difference from the mean-face template (smiles widen the mouth,
    # turned heads narrow the eyes), not an alignment error: t1's smiling, partly turned faces
    # sit 8-27 px from it at 512. A quarter of the template's 126 px eye distance bounds a face
    # that the fit has not thrown off.
    assert max(rms_ours) < 0.25 * np.linalg.norm(template[1] - template[0])


@pytest.mark.parametrize("size", [512, 128])
def test_ffhq_matrix_samples_like_the_recipes_pil_quad_transform(astronaut_face: DetectedFace, size: int) -> None:
    # The FFHQ script warps with PIL: img.transform(..., QUAD, (quad + 0.5).flatten(), BILINEAR).
    # Our matrix, sampled bilinearly by OpenCV, must give the same crop; half a pixel off gives
    # ~32 dB here.
    photo = data.astronaut()
    quad = ffhq_quad(astronaut_face.landmarks)
    pil = Image.fromarray(photo).transform((size, size), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR)
    ours = cv2.warpAffine(photo, ffhq_matrix(astronaut_face.landmarks, size), (size, size), flags=cv2.INTER_LINEAR)
    diff = (np.asarray(pil, np.float64) - ours)[4:-4, 4:-4] / 255.0
    psnr = 10 * np.log10(1.0 / np.mean(diff**2))
    print(f"ffhq at {size}: ours vs PIL QUAD {psnr:.1f} dB")
    assert psnr > 45.0


def test_ffhq_is_the_same_under_scale_and_rotation(astronaut: np.ndarray, astronaut_face: DetectedFace) -> None:
    base_crop, base = align_face(astronaut, astronaut_face, method="ffhq")
    copies = ((_similarity(1.6, 12.0, 150.0, -60.0), 1000), (_similarity(0.8, -15.0, 40.0, 120.0), 560))
    for transform, canvas in copies:
        photo = cv2.warpAffine(
            astronaut, transform, (canvas, canvas), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101
        )
        # Geometry: the same landmarks, moved with the photo, land on the same crop pixels.
        _, moved = align_face(photo, _moved(astronaut_face, transform), method="ffhq")
        assert np.abs(moved.landmarks - base.landmarks).max() < 1e-6
        # Detection on the copy: dlib's own noise on top. Eye centres (6 points averaged) land
        # within 1 px; single mouth-corner points move up to ~5 px (1% of the crop) between
        # copies, their midpoint (what the recipe uses) within 2.5 px.
        nose = apply_affine(transform, astronaut_face.points5[2])
        found = [f for f in detect_faces([photo]).faces if np.linalg.norm(f.points5[2] - nose) < 30]
        assert len(found) == 1
        crop, again = align_face(photo, found[0], method="ffhq")
        eyes = np.abs(again.points5[:2] - base.points5[:2]).max()
        mouth = np.linalg.norm(again.points5[3:].mean(0) - base.points5[3:].mean(0))
        psnr = 10 * np.log10(1.0 / np.mean((crop[64:-64, 64:-64] - base_crop[64:-64, 64:-64]) ** 2))
        print(f"copy at scale {similarity_scale(transform):.2f}: eye centres {eyes:.2f} px, "
              f"mouth midpoint {mouth:.2f} px, crop PSNR {psnr:.1f} dB")
        assert eyes < 1.0
        assert mouth < 2.5


def _coordinate_ramp(height: int, width: int) -> np.ndarray:
    """An image whose channels 0 and 1 are the pixel's own x and y (divided by 1000)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([xs / 1000.0, ys / 1000.0, np.full_like(xs, 0.5)], axis=-1)


@pytest.mark.parametrize("method", ["ffhq", "five_point"])
@pytest.mark.parametrize("size", [512, 96])
def test_crop_pixel_samples_the_source_at_the_inverse_matrix(
    astronaut_face: DetectedFace, method: str, size: int
) -> None:
    # On a coordinate ramp the crop reads back WHERE it sampled. Size 96 shrinks the face (scale
    # ~0.5) and so samples the area-prefiltered source, whose pixels are 1/scale source pixels.
    # OpenCV's bicubic (a = -0.75) reproduces a ramp to 0.047 of the sampled image's pixel and
    # rounds positions to 1/32 px (+-0.016); a half-pixel slip in any convention would show as 0.5.
    ramp = _coordinate_ramp(700, 700)
    face = _moved(astronaut_face, _similarity(1.1, 8.0, 40.0, 30.0))
    crop, info = align_face(ramp, face, size=size, method=method)
    tolerance = 0.07 * max(1.0, 1.0 / similarity_scale(info.matrix))
    inverse = info.inverse_matrix
    vs, us = np.mgrid[0:size, 0:size]
    expected = apply_affine(inverse, np.stack([us, vs], axis=-1).astype(np.float64))
    got = crop[..., :2].astype(np.float64) * 1000.0
    error = np.abs(got - expected).max()
    print(f"{method} at {size}: sampling position error {error:.3f} source px (tolerance {tolerance:.3f})")
    assert error < tolerance
    # At the landmarks: the crop pixel nearest each one holds the source coordinates mapping to it.
    nearest = np.round(info.landmarks).astype(int)
    inside = np.all((nearest >= 0) & (nearest < size), axis=1)
    assert inside.sum() >= 60
    n = nearest[inside]
    assert np.abs(got[n[:, 1], n[:, 0]] - apply_affine(inverse, n.astype(np.float64))).max() < tolerance


def test_integer_translation_copies_source_pixels(astronaut: np.ndarray, astronaut_face: DetectedFace) -> None:
    # Points on the 256 template shifted by whole pixels: the crop is a plain cut of the photo.
    points = five_point_template(256) + [120.0, 40.0]
    face = DetectedFace(0, (0, 0, 1, 1), 1.0, astronaut_face.landmarks, points)
    crop, info = align_face(astronaut, face, size=256, method="five_point")
    assert np.allclose(info.matrix, [[1, 0, -120], [0, 1, -40]], atol=1e-9)
    assert np.abs(crop - astronaut[40:296, 120:376]).max() < 1e-6


def test_sizes_are_consistent(astronaut: np.ndarray, astronaut_face: DetectedFace) -> None:
    for method in ("ffhq", "five_point"):
        _, at512 = align_face(astronaut, astronaut_face, size=512, method=method)
        for size in (256, 1024, 300):
            crop, info = align_face(astronaut, astronaut_face, size=size, method=method)
            assert crop.shape == (size, size, 3)
            assert np.allclose(info.landmarks, apply_affine(resize_matrix(512, size), at512.landmarks), atol=1e-6)


def _grating(cycles_per_px: float, size: int = 1400) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * cycles_per_px * (0.8 * xs + 0.6 * ys))
    return np.repeat(wave[..., None], 3, axis=2).astype(np.float32)


@pytest.mark.parametrize("scale", [0.3, 0.5, 0.75])
def test_shrinking_warp_does_not_alias(scale: float) -> None:
    matrix = _similarity(scale, 10.0, 5.0, 7.0)
    amplitude = np.sqrt(0.125)  # std of a full-range sine
    # 0.75 cycles per OUTPUT pixel is above the output's Nyquist (0.5): it must be filtered out;
    # a plain bicubic warp turns it into moire of nearly full amplitude.
    fine = _grating(0.75 * scale)
    plain = cv2.warpAffine(fine, matrix, (256, 256), flags=cv2.INTER_CUBIC)[8:-8, 8:-8].std() / amplitude
    ours = warp_affine(fine, matrix, (256, 256))[8:-8, 8:-8].std() / amplitude
    # 0.25 cycles per output pixel is well inside the band: it must survive.
    coarse = warp_affine(_grating(0.25 * scale), matrix, (256, 256))[8:-8, 8:-8].std() / amplitude
    print(f"scale {scale}: moire amplitude plain {plain:.2f}, ours {ours:.2f}; passband {coarse:.2f}")
    assert plain > 0.5
    assert ours < 0.25
    assert coarse > 0.8


def test_align_faces_routes_faces_to_their_image(
    t1: np.ndarray, t1_faces: FaceSet, astronaut: np.ndarray, astronaut_face: DetectedFace
) -> None:
    faces = FaceSet(
        image_sizes=[t1.shape[:2], astronaut.shape[:2]],
        faces=[*t1_faces.faces, replace(astronaut_face, image_index=1)],
    )
    crops, aligned = align_faces([t1, astronaut], faces, size=128, method="five_point", border="constant")
    assert crops.shape == (7, 128, 128, 3) and crops.dtype == np.float32
    assert len(aligned.aligned) == 7 and aligned.faces == faces.faces and not faces.aligned
    for n, face in enumerate(faces.faces):
        expected, info = align_face([t1, astronaut][face.image_index], face, 128, "five_point", "constant")
        assert np.array_equal(crops[n], expected)
        assert np.array_equal(aligned.aligned[n].matrix, info.matrix)
        assert aligned.aligned[n].face is face

    pair = np.stack([astronaut, astronaut[:, ::-1]])
    flipped = detect_faces(pair, upsample=0)
    batch_crops, _ = align_faces(pair, flipped, size=64)
    assert batch_crops.shape == (2, 64, 64, 3)
    assert np.abs(batch_crops[0] - batch_crops[1][:, ::-1]).mean() < 0.05

    empty_crops, empty = align_faces([t1], FaceSet(image_sizes=[t1.shape[:2]]), size=256)
    assert empty_crops.shape == (0, 256, 256, 3) and empty.aligned == [] and empty.crop_size == 256


def test_border_modes_fill_outside_the_photo(t1: np.ndarray, t1_faces: FaceSet) -> None:
    # Cut the photo through the leftmost face: its crop reaches past the new left edge.
    face = min(t1_faces.faces, key=lambda f: f.box[0])
    cut = int(face.points5[2, 0])
    photo = t1[:, cut:]
    shifted = _moved(face, np.array([[1.0, 0.0, -cut], [0.0, 1.0, 0.0]]))
    crops = {}
    for border in ("constant", "reflect", "replicate"):
        crops[border], info = align_face(photo, shifted, size=256, border=border)
    vs, us = np.mgrid[0:256, 0:256]
    source = apply_affine(info.inverse_matrix, np.stack([us, vs], axis=-1).astype(np.float64))
    outside = source[..., 0] < -3
    assert 0.1 < outside.mean() < 0.9
    assert np.all(crops["constant"][outside] == 0)
    assert crops["reflect"][outside].mean() > 0.1 and crops["replicate"][outside].mean() > 0.1
    assert not np.array_equal(crops["reflect"], crops["replicate"])


def test_bad_input_is_refused(t1: np.ndarray, t1_faces: FaceSet) -> None:
    face = t1_faces.faces[0]
    with pytest.raises(ValueError, match="method"):
        align_face(t1, face, method="arcface")
    with pytest.raises(ValueError, match="border"):
        align_face(t1, face, border="wrap")
    with pytest.raises(ValueError, match="divide uint8"):
        align_face((t1 * 255).astype(np.uint8), face)
    with pytest.raises(ValueError, match="H x W x 3"):
        align_face(t1[..., 0], face)
    with pytest.raises(ValueError, match="68 landmarks"):
        ffhq_matrix(face.landmarks[:5], 512)
    with pytest.raises(ValueError, match="resized copy"):
        align_faces([t1[:-1]], t1_faces)
    with pytest.raises(ValueError, match="coincide"):
        estimate_similarity(np.ones((5, 2)), FIVE_POINT_TEMPLATE_512)
