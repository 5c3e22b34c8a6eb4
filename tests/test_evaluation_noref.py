"""No-reference metrics and FID actually running: weights of the real architectures made here
(random, seeded) and saved under the file names the packages use, values checked against an
independent FID computation and against pyiqa's own loading path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import skimage.data
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from authface_core.cli import main
from authface_core.evaluation.noref import FID_FILE, PYIQA_METRICS, fid, fid_network


@pytest.fixture(scope="module")
def pyiqa():
    return pytest.importorskip("pyiqa", reason="pyiqa is installed by `make setup` (pip install --no-deps pyiqa)")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, pyiqa) -> Path:
    """pytorch-fid's Inception (torchvision's InceptionV3 with 1008 classes, no aux head: the
    same state-dict keys), pyiqa's MUSIQ and a NIQE parameter file (mu_prisparam 1x36,
    cov_prisparam 36x36 symmetric positive definite), all random."""
    folder = tmp_path_factory.mktemp("metric_weights")
    torch.manual_seed(0)
    inception = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=True)
    # Batch-norm statistics from one pass over a real photo, as a trained network has them: with
    # the init's unit running variance, random activations grow ~1e10-fold through the layers.
    for module in inception.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    photo = torch.from_numpy(skimage.data.astronaut().transpose(2, 0, 1).astype(np.float32) / 127.5 - 1)
    crops = torch.stack([photo[:, y:y + 299, x:x + 299] for y in (0, 200) for x in (0, 200)])
    with torch.no_grad():
        inception.train()(crops)
    torch.save(inception.state_dict(), folder / FID_FILE)
    musiq = pyiqa.create_metric("musiq", device="cpu", pretrained=False).net
    torch.save(musiq.state_dict(), folder / PYIQA_METRICS["musiq"].file)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(36, 36))
    scipy.io.savemat(folder / PYIQA_METRICS["niqe"].file,
                     {"mu_prisparam": rng.normal(size=(1, 36)), "cov_prisparam": a @ a.T / 36 + np.eye(36)})
    return folder


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory, t1_photo: Path, hanks_photo: Path) -> Path:
    """Aligned real faces at 192 px (NIQE's 96-px blocks need two per image): gt/ and a
    blurred "method"."""
    photos = tmp_path_factory.mktemp("photos")
    for source in (t1_photo, hanks_photo):
        (photos / source.name).write_bytes(source.read_bytes())
    out = tmp_path_factory.mktemp("set")
    assert main(["degrade", str(photos), str(out), "--align", "--size", "192", "--preset", "mild"]) == 0
    (out / "blurred").mkdir()
    for path in sorted((out / "gt").iterdir()):
        cv2.imwrite(str(out / "blurred" / path.name), cv2.GaussianBlur(cv2.imread(str(path)), (0, 0), 1.2))
    return out


def _textbook_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) with np.cov; Tr (S1 S2)^(1/2) from the
    eigenvalues of B S2 B^T (S1 = B^T B), which are those of S1 S2."""
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    b = (f1 - f1.mean(0)) / np.sqrt(len(f1) - 1)
    root_trace = np.sqrt(np.clip(scipy.linalg.eigvalsh(b @ s2 @ b.T), 0, None)).sum()
    diff = f1.mean(0) - f2.mean(0)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * root_trace)


def _features(folder: Path, model) -> np.ndarray:
    """Pool features computed here: PIL read, torch bilinear resize to 299 (clean-fid's
    legacy_pytorch resize), values in [0, 255]."""
    batch = []
    for path in sorted(folder.iterdir()):
        image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1))
        batch.append(F.interpolate(image[None], size=(299, 299), mode="bilinear", align_corners=False)[0].clamp(0, 255))
    with torch.no_grad():
        return model(torch.stack(batch)).numpy().astype(np.float64)


def test_fid_equals_the_textbook_formula_and_is_zero_for_the_same_folder(
    weights: Path, tmp_path: Path, t1_photo: Path
) -> None:
    photo = cv2.imread(str(t1_photo))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for i in range(3):
        crop = photo[100 + 60 * i:228 + 60 * i, 150 * i:128 + 150 * i]
        cv2.imwrite(str(a / f"{i}.png"), crop)
        cv2.imwrite(str(b / f"{i}.png"), cv2.GaussianBlur(crop, (0, 0), 2.0))
    value = fid(a, b, weights)
    model = fid_network(weights)
    f1, f2 = _features(a, model), _features(b, model)
    assert f1.shape == (3, 2048) and np.isfinite(f1).all()
    expected = _textbook_fid(f1, f2)
    assert value > 0 and value == pytest.approx(expected, rel=1e-4)
    assert abs(fid(a, a, weights)) < 1e-6 * value


def test_evaluate_reports_fid_musiq_niqe_equal_to_the_packages(
    weights: Path, faces: Path, tmp_path: Path, pyiqa
) -> None:
    report = tmp_path / "report"
    assert main(["evaluate", "--restored", str(faces / "blurred"), "--gt", str(faces / "gt"), "--out", str(report),
                 "--weights-dir", str(weights), "--psnr-channel", "rgb"]) == 0
    summary = json.loads((report / "summary.json").read_text())
    for key in ("musiq", "niqe", "fid"):
        assert key not in summary["skipped"], summary["skipped"].get(key)
    assert "timm" in summary["skipped"]["maniqa"] and "openai-clip" in summary["skipped"]["clipiqa"]
    rows = list(csv.DictReader((report / "metrics.csv").open()))
    assert len(rows) == 2
    # pyiqa's own loading path (pretrained_model_path) on the same files.
    musiq = pyiqa.create_metric("musiq", device="cpu", pretrained_model_path=str(weights / PYIQA_METRICS["musiq"].file))
    niqe = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=str(weights / PYIQA_METRICS["niqe"].file))
    for row in rows:
        restored = cv2.cvtColor(cv2.imread(row["file"]), cv2.COLOR_BGR2RGB)
        gt = cv2.cvtColor(cv2.imread(row["reference"]), cv2.COLOR_BGR2RGB)
        tensor = torch.from_numpy(restored.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
        with torch.no_grad():
            assert float(row["musiq"]) == pytest.approx(float(musiq(tensor)), rel=1e-5, abs=1e-6)
            assert float(row["niqe"]) == pytest.approx(float(niqe(tensor)), rel=1e-5)
        assert np.isfinite(float(row["niqe"]))
        # --psnr-channel rgb: scikit-image on the RGB levels, SSIM the mean over channels.
        assert float(row["psnr"]) == pytest.approx(peak_signal_noise_ratio(gt, restored, data_range=255), abs=1e-9)
        expected = structural_similarity(gt, restored, data_range=255, channel_axis=2, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False)
        assert float(row["ssim"]) == pytest.approx(expected, abs=1e-6)
    assert summary["means"]["blurred"]["fid"] > 0
    assert summary["psnr_ssim_channel"] == "rgb"
    table = (report / "table.md").read_text()
    assert "PSNR/SSIM on RGB" in table and "FID" in table and "MUSIQ" in table and "NIQE" in table
