"""``authface degrade`` and ``authface evaluate`` as commands: determinism, ranges, bad inputs,
skipped metrics, and report files that agree with each other."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from authface_core.cli import main
from authface_core.evaluation.synthetic import PRESETS


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, t1_photo: Path, hanks_photo: Path) -> Path:
    """Unaligned real photos, a corrupt file and a photo without a face."""
    folder = tmp_path_factory.mktemp("photos")
    shutil.copy(t1_photo, folder / "t1.jpg")
    shutil.copy(hanks_photo, folder / "hanks.png")
    cv2.imwrite(str(folder / "astronaut.png"), skimage.data.astronaut()[:, :, ::-1])
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cv2.imwrite(str(folder / "wall.png"), np.full((200, 200, 3), 128, np.uint8))
    return folder


@pytest.fixture(scope="module")
def test_set(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("set")
    assert main(["degrade", str(photos), str(out), "--align", "--size", "128", "--preset", "severe"]) == 0
    return out


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "degradations.jsonl").read_text().splitlines()]


def test_degrade_is_deterministic_and_stays_in_the_preset(test_set: Path, photos: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in (test_set / "lq").iterdir()) == ["astronaut.png", "hanks.png", "t1.png"]
    left_out = "\n".join(json.loads((test_set / "degradation_settings.json").read_text())["left_out"])
    assert "corrupt.jpg is not an image OpenCV can decode" in left_out
    assert "wall.png: no face found to align" in left_out
    severe = PRESETS["severe"]
    for record in _records(test_set):
        assert severe.blur_sigma[0] <= record["blur_sigma_x"] <= severe.blur_sigma[1]
        assert severe.downsample_range[0] <= record["downsample"] <= severe.downsample_range[1]
        assert severe.noise_range[0] <= record["noise_sigma"] <= severe.noise_range[1]
        assert severe.jpeg_range[0] <= record["jpeg_quality"] <= severe.jpeg_range[1]
    for name in ("t1", "hanks"):
        lq = cv2.imread(str(test_set / "lq" / f"{name}.png"))
        assert lq.shape == (128, 128, 3) and lq.std() > 5
    # Same command on a folder holding only some of the photos: same bytes, per-image seeds.
    subset = tmp_path / "subset"
    subset.mkdir()
    shutil.copy(photos / "hanks.png", subset)
    again = tmp_path / "again"
    assert main(["degrade", str(subset), str(again), "--align", "--size", "128", "--preset", "severe"]) == 0
    for sub in ("lq", "gt"):
        assert (again / sub / "hanks.png").read_bytes() == (test_set / sub / "hanks.png").read_bytes()
    assert _records(again)[0] == next(r for r in _records(test_set) if r["name"] == "hanks")
    other = tmp_path / "other_seed"
    assert main(["degrade", str(subset), str(other), "--align", "--size", "128", "--preset", "severe",
                 "--seed", "1"]) == 0
    assert (other / "lq" / "hanks.png").read_bytes() != (test_set / "lq" / "hanks.png").read_bytes()


def test_degrade_custom_ranges(test_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "custom"
    args = ["degrade", str(test_set / "gt"), str(out), "--size", "64", "--blur-sigma", "2", "2.5",
            "--downsample", "3", "3", "--noise", "0", "0", "--jpeg", "95", "95"]
    assert main(args) == 0
    for record in _records(out):
        assert 2.0 <= record["blur_sigma_x"] <= 2.5 and record["downsample"] == 3.0
        assert record["noise_sigma"] == 0.0 and record["jpeg_quality"] == 95 and record["size"] == 64
    assert cv2.imread(str(out / "gt" / "t1.png")).shape == (64, 64, 3)


def test_evaluate_reports_bad_pairs_and_goes_on(test_set: Path, tmp_path: Path) -> None:
    restored = tmp_path / "method"
    restored.mkdir()
    for name in ("t1", "hanks"):
        gt = cv2.imread(str(test_set / "gt" / f"{name}.png"))
        cv2.imwrite(str(restored / f"{name}.png"), cv2.GaussianBlur(gt, (0, 0), 0.8))
    big = cv2.resize(cv2.imread(str(test_set / "gt" / "astronaut.png")), (160, 160))
    cv2.imwrite(str(restored / "astronaut.png"), big)
    (restored / "extra.png").write_bytes(b"")
    report = tmp_path / "report"
    weights = tmp_path / "no_weights"
    weights.mkdir()
    assert main(["evaluate", "--restored", str(restored), "--gt", str(test_set / "gt"), "--out", str(report),
                 "--weights-dir", str(weights)]) == 0
    summary = json.loads((report / "summary.json").read_text())
    problems = "\n".join(summary["problems"])
    assert "astronaut.png is 160x160 but" in problems and "is 128x128; left out" in problems
    assert re.search(r"extra\.png has no partner named extra\.\* in", problems)
    assert summary["means"]["method"]["images"] == 2
    assert "alexnet-owt-7be5be79.pth" in summary["skipped"]["lpips"]
    assert str(weights.resolve()) in summary["skipped"]["lpips"]
    assert "pt_inception-2015-12-05-6726825d.pth" in summary["skipped"]["fid"]
    for key in ("musiq", "maniqa", "clipiqa", "niqe"):
        assert key in summary["skipped"]
    table = (report / "table.md").read_text()
    assert "lpips skipped:" in table and "PSNR" in table
    # Both faces stay the same person after a slight blur.
    assert summary["means"]["method"]["id_kept"] == 1.0


def test_evaluate_without_gt_scores_identity_against_lq(test_set: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    assert main(["evaluate", "--restored", str(test_set / "gt"), "--lq", str(test_set / "lq"),
                 "--out", str(report)]) == 0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["reference"] == "lq"
    assert set(summary["means"]["gt"]) >= {"id_similarity", "id_distance", "id_kept"}
    assert "psnr" not in summary["means"]["gt"] and "needs --gt" in summary["skipped"]["psnr"]
    rows = list(csv.DictReader((report / "metrics.csv").open()))
    assert {row["name"] for row in rows} == {"t1", "hanks", "astronaut"}
    assert "LQ (reference)" in (report / "index.html").read_text()


def test_evaluate_needs_a_reference(test_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--restored", str(test_set / "lq"), "--out", str(tmp_path / "r")]) == 2
    assert "give --gt DIR" in capsys.readouterr().err


def test_evaluate_with_an_arcface_pack_reports_the_angle(test_set: Path, tmp_path: Path) -> None:
    from arcface_fixture import cached_arcface_root

    report = tmp_path / "report"
    assert main(["evaluate", "--restored", str(test_set / "lq"), "--gt", str(test_set / "gt"),
                 "--insightface-root", str(cached_arcface_root()), "--out", str(report)]) == 0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["identity_embedder"]["name"] == "arcface:w600k_r50"
    assert summary["identity_embedder"]["distance"] == "angle_deg"
    for row in csv.DictReader((report / "metrics.csv").open()):
        angle = np.degrees(np.arccos(float(row["id_similarity"])))
        assert float(row["id_distance"]) == pytest.approx(angle, abs=1e-6)
        assert float(row["id_kept"]) == (float(row["id_similarity"]) > 0.32)
