"""The whole measuring chain on real photos: degrade -> authface restore --aligned with a
random-weight release -> evaluate -> report, the report's numbers checked against its CSV.

The release is tests/test_pipeline.py's tiny one (the full-shape release fixture needs the host
lock and ~8 GB of RAM; what is tested here is the chain, not the model)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from authface_core.cli import main
from test_pipeline import build_tiny_release

SIZE = 128


def test_degrade_restore_evaluate_report(tmp_path: Path, t1_photo: Path, hanks_photo: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(t1_photo, photos / "t1.jpg")
    shutil.copy(hanks_photo, photos / "hanks.png")
    cv2.imwrite(str(photos / "astronaut.png"), skimage.data.astronaut()[:, :, ::-1])
    test_set = tmp_path / "set"
    assert main(["degrade", str(photos), str(test_set), "--align", "--size", str(SIZE)]) == 0
    restored = tmp_path / "authface"
    assert main(["restore", str(test_set / "lq"), "--model", str(build_tiny_release(tmp_path / "release")), "--out", str(restored),
                 "--aligned", "--steps", "2", "--size", str(SIZE), "--batch-size", "3"]) == 0
    assert sorted(p.name for p in restored.glob("*.png")) == ["astronaut.png", "hanks.png", "t1.png"]

    report = tmp_path / "report"
    assert main(["evaluate", "--restored", str(restored), "--gt", str(test_set / "gt"), "--lq",
                 str(test_set / "lq"), "--out", str(report)]) == 0
    rows = list(csv.DictReader((report / "metrics.csv").open()))
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["methods"]) == {"input", "authface"}
    table = (report / "table.md").read_text()
    for method in ("input", "authface"):
        mine = [row for row in rows if row["method"] == method]
        assert len(mine) == 3
        for key in ("psnr", "ssim", "id_similarity", "id_distance", "id_kept", "lmd"):
            values = [float(row[key]) for row in mine]
            assert all(math.isfinite(v) for v in values)
            assert summary["means"][method][key] == pytest.approx(np.mean(values), rel=1e-12)
    for key, label in (("psnr", "PSNR↑"), ("id_similarity", "IDS↑ (cos)"), ("lmd", "LMD↓")):
        line = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
        cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")[1:]]
        expected = [summary["means"][m][key] for m in ("input", "authface")]
        for cell, value in zip(cells, expected, strict=True):
            assert float(cell) == pytest.approx(value, abs=0.006 if abs(value) < 10 else 0.006 * 10)
    # The HTML page lists images worst identity first.
    page = (report / "index.html").read_text()
    by_name = {row["name"]: float(row["id_similarity"]) for row in rows if row["method"] == "authface"}
    positions = sorted(by_name, key=lambda name: page.index(f"<tr><td>{name}</td>"))
    assert positions == sorted(by_name, key=by_name.get)
    for plot in ("psnr", "id_similarity", "lmd"):
        assert (report / "plots" / f"{plot}.png").stat().st_size > 1000
