"""``python -m training.prepare_stage1`` end to end on real photos: faces found and aligned,
photos without a (large enough) face rejected with their reason, corrupt files counted, grey
photos accepted, blurry crops flagged, captions carried over and reported, re-runs continuing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from authface_core.faces.align import apply_affine
from training.data.captions import scan_dataset
from training.data.prepare_faces import REPORT_FILE, read_report
from training.prepare_stage1 import main

SIZE = 256
MIN_FACE = 100
MIN_SHARPNESS = 10.0


def _qwen(path: Path, tags: list[str]) -> None:
    path.write_text(json.dumps({"semantic_tags": tags[:-1], "photographic_tags": tags[-1:]}))


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory, t1_photo: Path, hanks_photo: Path) -> Path:
    """Real photos in the AuthFace-HQ layout plus the awkward cases."""
    import skimage.data

    root = tmp_path_factory.mktemp("raw")
    for folder in ("woman", "man", "group", "misc"):
        (root / folder).mkdir()
    # The astronaut at 768 px: her face is ~135 px, above MIN_FACE.
    astronaut = Image.fromarray(skimage.data.astronaut()).resize((768, 768), Image.Resampling.LANCZOS)
    astronaut.save(root / "woman" / "woman_11010.png")
    _qwen(root / "woman" / "woman_11010_qwen.json", ["a woman", "short blond hair", "studio lighting"])
    astronaut.convert("L").save(root / "woman" / "woman_11011.png")
    _qwen(root / "woman" / "woman_11011_qwen.json", ["a woman", "black and white photo"])
    blurred = cv2.GaussianBlur(np.asarray(astronaut), (0, 0), 4.0)
    Image.fromarray(blurred).save(root / "woman" / "woman_11012.png")
    _qwen(root / "woman" / "woman_11012_qwen.json", ["a woman", "soft focus"])
    shutil.copyfile(hanks_photo, root / "man" / "man_5001.png")  # 112 px photo: a 90 px face
    _qwen(root / "man" / "man_5001_qwen.json", ["a man", "smiling"])
    shutil.copyfile(t1_photo, root / "group" / "t1.jpg")  # six faces of 80-125 px, no caption
    Image.fromarray(skimage.data.coffee()).save(root / "misc" / "coffee.jpg")
    (root / "misc" / "cut.jpg").write_bytes(t1_photo.read_bytes()[:5000])
    (root / "misc" / "not_an_image.png").write_bytes(b"this is text, not a PNG")
    return root


def _prepare(raw: Path, out: Path, *flags: str) -> int:
    return main([str(raw), str(out), "--size", str(SIZE), "--min-face-size", str(MIN_FACE),
                 "--min-sharpness", str(MIN_SHARPNESS), "--quiet", *flags])


@pytest.fixture(scope="module")
def prepared(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    assert _prepare(raw, out) == 0
    return out


def _by_source(out: Path) -> dict[str, dict]:
    return {record["source"]: record for record in read_report(out)}


def test_every_photo_is_reported_with_its_outcome(prepared: Path) -> None:
    report = _by_source(prepared)
    assert sorted(report) == sorted([
        "woman/woman_11010.png", "woman/woman_11011.png", "woman/woman_11012.png", "man/man_5001.png",
        "group/t1.jpg", "misc/coffee.jpg", "misc/cut.jpg", "misc/not_an_image.png"])
    assert report["misc/cut.jpg"]["status"] == "corrupt" and "truncated" in report["misc/cut.jpg"]["reason"]
    assert report["misc/not_an_image.png"]["status"] == "corrupt"
    assert report["misc/coffee.jpg"]["status"] == "rejected"
    assert report["misc/coffee.jpg"]["reason"] == "no face found"
    assert report["man/man_5001.png"]["status"] == "rejected"
    assert report["man/man_5001.png"]["reason"].startswith("face too small")
    assert report["woman/woman_11010.png"]["status"] == "accepted"
    grey = report["woman/woman_11011.png"]
    assert grey["status"] == "accepted" and grey["grey"] is True
    assert report["woman/woman_11010.png"]["grey"] is False
    blurry = report["woman/woman_11012.png"]
    assert blurry["status"] == "flagged" and blurry["reason"].startswith("blurry")
    summary = json.loads((prepared / "summary.json").read_text())
    assert summary["photos"] == 8 and summary["corrupt"] == 2 and summary["rejected"] == 2
    assert summary["reject_reasons"] == {"face too small": 1, "no face found": 1}
    assert summary["accepted"] + summary["flagged"] == 4


def test_quality_flags_follow_the_thresholds(prepared: Path) -> None:
    for record in read_report(prepared):
        for face in record.get("faces", []):
            quality = face["quality"]
            assert (quality["sharpness"] >= MIN_SHARPNESS) == (face["status"] == "accepted"), record["source"]
            folder = "images/" if face["status"] == "accepted" else "flagged/"
            assert face["image"].startswith(folder) and (prepared / face["image"]).is_file()


def test_crops_are_ffhq_aligned_with_their_landmarks(prepared: Path, raw: Path) -> None:
    record = _by_source(prepared)["woman/woman_11010.png"]
    face = record["faces"][0]
    crop = cv2.imread(str(prepared / face["image"]), cv2.IMREAD_UNCHANGED)
    assert crop.shape == (SIZE, SIZE, 3) and crop.dtype == np.uint8
    landmarks = json.loads((prepared / face["landmarks"]).read_text())
    points = np.array(landmarks["landmarks_68"])
    assert points.shape == (68, 2)
    mapped = apply_affine(np.array(landmarks["matrix"]), np.array(landmarks["source_landmarks_68"]))
    assert np.allclose(mapped, points)
    eyes = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    assert abs(eyes[0][1] - eyes[1][1]) < 0.02 * SIZE  # eyes level after alignment
    # The FFHQ square is centred 0.1 eye-to-mouth below the eyes with a half side of at least
    # 1.8 eye-to-mouth: eyes just above the middle, the mouth about 0.25 of the side below them.
    middle = (eyes[0] + eyes[1]) / 2 / SIZE
    mouth = (points[48] + points[54]) / 2 / SIZE
    assert abs(middle[0] - 0.5) < 0.03 and 0.44 < middle[1] < 0.5
    assert 0.18 < mouth[1] - middle[1] <= 1 / 3.6 + 1e-6
    grey = cv2.imread(str(prepared / _by_source(prepared)["woman/woman_11011.png"]["faces"][0]["image"]))
    assert grey.shape == (SIZE, SIZE, 3)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])


def test_captions_are_carried_over_and_missing_ones_reported(prepared: Path, raw: Path) -> None:
    source = raw / "woman" / "woman_11010_qwen.json"
    assert (prepared / "images" / "woman" / "woman_11010_qwen.json").read_bytes() == source.read_bytes()
    group = _by_source(prepared)["group/t1.jpg"]
    assert group["caption"]["problem"].startswith("no caption file")
    assert json.loads((prepared / "summary.json").read_text())["without_caption"] == 1
    usable, rejected = scan_dataset(prepared / "images")
    assert sorted(path.name for path, _ in usable) == ["woman_11010.png", "woman_11011.png"]
    assert rejected == []
    # The group crop (a 125 px face enlarged to 256) was flagged; it keeps no caption either way.
    crop = prepared / group["faces"][0]["image"]
    assert group["status"] == "flagged" and crop.is_file()
    assert [path for path, _ in scan_dataset(prepared / "flagged")[1]] == [crop]


def test_rerun_skips_finished_photos_and_survives_a_cut_report(prepared: Path, raw: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(prepared, out)
    lines = (out / REPORT_FILE).read_text().splitlines(keepends=True)
    assert _prepare(raw, out) == 0
    assert (out / REPORT_FILE).read_text().splitlines(keepends=True) == lines  # nothing redone
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed_this_run"] == 0 and summary["skipped_finished"] == 8

    # A run killed while appending leaves half a line: it is dropped and that photo redone.
    cut = "".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2]
    (out / REPORT_FILE).write_text(cut)
    new_photo = tmp_path / "raw_extra"
    shutil.copytree(raw, new_photo)
    Image.open(raw / "woman" / "woman_11010.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        new_photo / "woman" / "woman_11013.png")
    assert _prepare(new_photo, out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed_this_run"] == 2 and summary["photos"] == 9
    records = read_report(out)
    assert len(records) == 9 and len({r["source"] for r in records}) == 9


def test_all_faces_of_a_group_photo(t1_photo: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copyfile(t1_photo, raw / "t1.jpg")
    assert main([str(raw), str(tmp_path / "out"), "--size", "128", "--min-face-size", "40", "--faces", "all",
                 "--no-quality-check", "--quiet"]) == 0
    record = read_report(tmp_path / "out")[0]
    assert record["status"] == "accepted" and len(record["faces"]) == 6
    assert [face["image"] for face in record["faces"]] == [f"images/t1_face{k}.png" for k in range(6)]
    assert all(face["face_size"] >= 40 for face in record["faces"])
