"""``authface restore`` on whole folders: layout, batching across photos, resumable atomic outputs
and manifest, two processes under torchrun with one killed and restarted, --dry-run, --report.

Restores run on the tiny random-weight release of test_pipeline (1 step at 64 px): the
multi-process test starts five processes, each loading its release, which the realistic-shape
release fixture would make minutes long; the one-process test with that fixture is
test_release_restores_a_folder_with_identity_report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from archive_photos import NOT_AN_IMAGE, archive_images, build_archive
from authface_core.archive import MANIFEST_NAME, InputError, Rank, discover, face_seed, read_records
from authface_core.archive.manifest import ManifestTail, append_record
from authface_core.archive.ranks import RankError, candidate_seed, make_groups
from authface_core.cli import main
from authface_core.files import temp_path
from release_fixture import cached_release
from test_pipeline import build_tiny_release

REPO = Path(__file__).resolve().parents[1]
SIZE = 64
BATCH = 2
COMMON = ["--steps", "1", "--size", str(SIZE), "--batch-size", str(BATCH)]


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_release(tmp_path_factory.mktemp("archive_release"))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_archive(tmp_path_factory.mktemp("archive") / "album ü")


def _restore(archive: Path, out: Path, release: Path, *flags: str, processes: int = 1) -> subprocess.Popen:
    """``authface restore ARCHIVE --out OUT`` in new processes (under torchrun for more than one),
    one thread each: float results depend on the thread count, and torchrun gives each worker one."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [*launcher, "-m", "authface_core.cli", "restore", str(archive), "--out", str(out),
               "--model", str(release), *COMMON, *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def _done(out: Path) -> list[dict]:
    return [r for r in read_records(out / MANIFEST_NAME) if r["status"] == "done"]


def _pixels(path: Path) -> np.ndarray:
    image = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def test_seeds_and_shares_do_not_depend_on_the_split() -> None:
    assert face_seed(0, "a/b.jpg", 1) == face_seed(0, "a/b.jpg", 1)
    seeds = {face_seed(s, p, n) for s in (0, 1) for p in ("a/b.jpg", "a/c.jpg") for n in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    photos = [f"p{n:02d}" for n in range(11)]
    groups = make_groups(photos, 3)
    assert [len(g) for g in groups] == [3, 3, 3, 2]
    for world in (1, 2, 3, 5):
        shares = [Rank(r, world).share(groups) for r in range(world)]
        taken = sorted(p for share in shares for group in share for p in group)
        assert taken == photos
    seed = face_seed(0, "a/b.jpg", 0)
    assert candidate_seed(seed, 0) == seed, "candidate 0 is the plain restore"
    assert len({candidate_seed(seed, k) for k in range(4)} | {candidate_seed(seed + 1, k) for k in range(4)}) == 8
    assert Rank.from_env({"RANK": "1", "WORLD_SIZE": "2"}) == Rank(1, 2)
    assert Rank.from_env({}) == Rank(0, 1)
    with pytest.raises(RankError, match="RANK=2"):
        Rank.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_manifest_tail_waits_for_whole_lines(tmp_path: Path) -> None:
    manifest = tmp_path / MANIFEST_NAME
    tail = ManifestTail(manifest)
    assert tail.new_records() == []
    append_record(manifest, {"path": "a.jpg", "status": "done"})
    with open(manifest, "a") as handle:
        handle.write('{"path": "b.jp')  # a writer killed mid-line, or still writing
    assert [r["path"] for r in tail.new_records()] == ["a.jpg"]
    with open(manifest, "a") as handle:
        handle.write('g", "status": "done"}\n')
    assert [r["path"] for r in tail.new_records()] == ["b.jpg"]


def test_discovery_keeps_the_layout_and_refuses_collisions(archive: Path, tmp_path: Path) -> None:
    inputs = discover([archive], tmp_path / "out")
    assert [f.relative for f in inputs.files] == list(archive_images())
    assert inputs.skipped == [archive / NOT_AN_IMAGE]
    assert inputs.files[0].image_target(tmp_path / "out") == tmp_path / "out/1998/wedding/t1_left.png"
    twins = tmp_path / "twins"
    twins.mkdir()
    for suffix in (".jpg", ".png"):
        cv2.imwrite(str(twins / f"same{suffix}"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="would both be written to"):
        discover([twins], tmp_path / "out")
    # An output folder inside the input folder is not walked.
    (twins / "same.png").unlink()
    (twins / "restored").mkdir()
    cv2.imwrite(str(twins / "restored" / "same.png"), np.zeros((8, 8, 3), np.uint8))
    assert [f.relative for f in discover([twins], twins / "restored").files] == ["same.jpg"]
    with pytest.raises(InputError, match="overwrite an input"):
        discover([twins / "restored" / "same.png"], twins / "restored")


def test_folder_restore_batches_across_photos_and_resumes(archive: Path, tiny_release: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["restore", str(archive), "--model", str(tiny_release), "--out", str(out), *COMMON]) == 0
    assert "neither images nor videos" in caplog.text and NOT_AN_IMAGE.split("/")[-1] in caplog.text
    records = {r["path"]: r for r in _done(out)}
    assert sorted(records) == list(archive_images())
    for relative, source in archive_images().items():
        written = _pixels(out / Path(relative).with_suffix(".png"))
        assert written.shape == source.shape and written.dtype == source.dtype
        record = records[relative]
        assert len(record["boxes"]) == len(record["seeds"]) == record["faces"]
        assert record["seeds"] == [face_seed(0, relative, n) for n in range(record["faces"])]
        if record["faces"]:
            x0, y0, x1, y1 = (int(v) for v in record["boxes"][0])
            face = np.abs(written[y0:y1, x0:x1].astype(float) - source[y0:y1, x0:x1]).mean()
            assert face > 0.01 * np.iinfo(source.dtype).max, f"{relative}: the face was not restored"
        else:
            assert np.array_equal(written, source)
    assert records["1998/wedding/t1_small.jpg"]["faces"] == 6 and records["empty_sky.png"]["faces"] == 0
    log = (out / "logs" / "rank-0.log").read_text()
    assert log.count("wrote ") + log.count("copied through") == len(records)

    # A rerun does nothing; a truncated output, one whose record was never written and a leftover
    # temporary file are what a kill leaves: exactly those photos are redone, to the same bytes.
    first = {p: (out / r["output"]).read_bytes() for p, r in records.items()}
    assert main(["restore", str(archive), "--model", str(tiny_release), "--out", str(out), *COMMON]) == 0
    assert len(_done(out)) == len(records)
    # (Photos of light groups: a group is restored whole when any of its photos is redone.)
    truncated, unrecorded = out / "2004/hanks_16bit.png", "astronaut.png"
    truncated.write_bytes(first["2004/hanks_16bit.png"][:100])
    lines = (out / MANIFEST_NAME).read_text().splitlines(keepends=True)
    (out / MANIFEST_NAME).write_text("".join(line for line in lines if f'"path": "{unrecorded}"' not in line))
    half_written = out / "2004/hanks.png"
    half_written.unlink()
    leftover = temp_path(half_written).with_name(".hanks.png.tmp-99999")
    leftover.write_bytes(first["2004/hanks.png"][:100])
    stale = temp_path(out / "2004/hanks [mirror].png").with_name(".hanks [mirror].png.tmp-99999")
    stale.write_bytes(b"")
    assert main(["restore", str(archive), "--model", str(tiny_release), "--out", str(out), *COMMON]) == 0
    redone = [r["path"] for r in _done(out)][len(records) - 1 :]
    assert sorted(redone) == sorted(["2004/hanks_16bit.png", unrecorded, "2004/hanks.png"])
    assert not leftover.exists() and not stale.exists()
    assert all((out / r["output"]).read_bytes() == first[p] for p, r in records.items())


def _worker(launcher: subprocess.Popen, rank: int, timeout: float = 120) -> psutil.Process:
    """The process torchrun started for ``rank`` (found by the RANK it gave the worker)."""
    deadline = time.monotonic() + timeout
    while launcher.poll() is None and time.monotonic() < deadline:
        for child in psutil.Process(launcher.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == str(rank) and "authface_core.cli" in child.cmdline():
                    return child
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        time.sleep(0.05)
    raise AssertionError(f"torchrun started no rank {rank} worker")


def test_two_processes_killed_and_restarted_match_one_process(tiny_release: Path, tmp_path: Path) -> None:
    # Twice the archive, so each rank has four groups: rank 1 is killed as soon as the first photo
    # of the run is recorded, and still has most of its share left however slow this machine is.
    archive = build_archive(tmp_path / "album")
    build_archive(archive / "copy")
    photos = sorted(str(p.relative_to(archive)) for p in archive.rglob("*") if p.suffix in (".jpg", ".png"))
    single, split = tmp_path / "single", tmp_path / "split"
    status, err = _finish(_restore(archive, single, tiny_release))
    assert status == 0, err[-3000:]

    run = _restore(archive, split, tiny_release, processes=2)
    victim = _worker(run, 1)
    deadline = time.monotonic() + 120
    while not _done(split) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _done(split), "no photo was finished"
    victim.kill()
    status, err = _finish(run)
    assert status != 0, "torchrun should fail when a rank is killed"
    interrupted = _done(split)
    assert 0 < len(interrupted) < len(photos), "the kill came too late to test a restart"

    status, err = _finish(_restore(archive, split, tiny_release, processes=2))
    assert status == 0, err[-3000:]
    done = _done(split)
    assert sorted(r["path"] for r in done) == photos, "every photo exactly once"
    assert {r["rank"] for r in done} == {0, 1}
    assert {r["pid"] for r in done[len(interrupted):]}.isdisjoint({r["pid"] for r in interrupted})
    for record in _done(single):
        assert (split / record["output"]).read_bytes() == (single / record["output"]).read_bytes(), record["path"]
    assert (split / "logs" / "rank-1.log").is_file() and (split / "logs" / "rank-0.log").is_file()
    assert not list(split.rglob(".*.tmp-*"))


def test_dry_run_counts_faces_and_names_its_speed_source(archive: Path, tiny_release: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["restore", str(archive / "2004"), "--model", str(tiny_release), "--out", str(out), *COMMON]
    assert main([*args, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert not (out / MANIFEST_NAME).exists()
    assert main(args) == 0
    faces = sum(r["faces"] for r in _done(out))
    batches = re.search(r"faces in (\d+) batches", (out / "logs" / "rank-0.log").read_text()).group(1)
    assert f"would restore 3 photo(s) with {faces} face(s) in {batches} batch(es)" in plan and "timed now" in plan
    assert main([*args, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "would restore 0 photo(s)" in plan and "3 already finished" in plan
    assert "measured by earlier photos" in plan


def test_dry_run_speed_counts_candidates() -> None:
    """A face restored with 3 candidates costs 3 face-steps: the speed a --candidates run records
    is per candidate, and an estimate for N candidates is N times one candidate's."""
    from dataclasses import asdict

    from authface_core.archive import ArchiveSettings
    from authface_core.archive.dryrun import DryRunEstimate, manifest_speed

    plain = ArchiveSettings(model="m", steps=2, cfg=8.0, seed=0, sampler="ddpm", color_fix="wavelet", size=64,
                            aligned=False, dtype="fp32")
    best = ArchiveSettings(**{**asdict(plain), "candidates": 3})
    records = [{"path": "a.jpg", "status": "done", "faces": 2, "model_seconds": 12.0, "settings": asdict(best)}]
    assert manifest_speed(records, plain) == pytest.approx(12.0 / (2 * 3 * 2))
    estimate = DryRunEstimate(photos=1, faces=2, batches=1, already_finished=0, unreadable=0, detect_seconds=0.0,
                              seconds_per_face_step=1.0, speed_source="manifest", steps=2, batch_size=2, candidates=3)
    assert estimate.model_seconds == 12.0 and "x 3 candidates" in estimate.describe()


def test_release_restores_a_folder_with_identity_report(tmp_path: Path) -> None:
    """The realistic-shape release fixture, --report: each face scored against its input."""
    photos = tmp_path / "photos"
    build_archive(photos)
    out = tmp_path / "out"
    args = ["restore", str(photos / "2004"), "--model", str(cached_release()), "--out", str(out), *COMMON, "--report"]
    assert main(args) == 0
    records = _done(out)
    assert len(records) == 3
    for record in records:
        assert record["identity_embedder"] == "dlib" and len(record["identity"]) == record["faces"] == 1
        score = record["identity"][0]
        assert -1.0 <= score["similarity"] <= 1.0 and score["distance"] > 0.0


def test_videos_are_written_whole_recorded_and_skipped_once_done(tiny_release: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A folder with a photo and a real H.264 clip: a run that fails in the middle of the clip
    leaves no video and no temporary file but keeps the photo; the next run writes the clip whole,
    records it and deletes a leftover temporary file; a third run skips it."""
    from fractions import Fraction

    from authface_core.video.media import probe_video
    from authface_core.video.restore import VideoFaceRestorer
    from video_clips import drift, moved_frames, write_clip

    folder = tmp_path / "album"
    (folder / "party").mkdir(parents=True)
    astronaut = archive_images()["astronaut.png"]
    cv2.imwrite(str(folder / "astronaut.png"), astronaut)
    frames = moved_frames(cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB), drift(6))
    write_clip(folder / "party" / "clip.mp4", frames, Fraction(25))
    out = tmp_path / "out"
    target = out / "party" / "clip.mp4"
    args = ["restore", str(folder), "--model", str(tiny_release), "--out", str(out), *COMMON]

    # A crash in the middle of the clip (injected into the real restorer at its fourth frame).
    real_restore_frame = VideoFaceRestorer.restore_frame
    calls = []

    def crash_at_fourth_frame(self, frame):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("injected: the process died in the middle of the clip")
        return real_restore_frame(self, frame)

    monkeypatch.setattr(VideoFaceRestorer, "restore_frame", crash_at_fourth_frame)
    assert main(args) == 1
    assert not target.exists() and not list(out.rglob(".*.tmp-*")), "a partial video was left"
    records = read_records(out / MANIFEST_NAME)
    assert [(r["path"], r["status"]) for r in records] == [("astronaut.png", "done"), ("party/clip.mp4", "failed")]
    monkeypatch.setattr(VideoFaceRestorer, "restore_frame", real_restore_frame)

    leftover = temp_path(target).with_name(".clip.mp4.tmp-99999")
    leftover.write_bytes(b"\0" * 100)
    assert main(args) == 0
    assert not leftover.exists()
    [video] = [r for r in _done(out) if r["path"] == "party/clip.mp4"]
    assert video["kind"] == "video" and video["output"] == "party/clip.mp4"
    assert video["frames"] == 6 and video["faces"] >= 6 and video["tracks"] >= 1
    assert video["output_bytes"] == target.stat().st_size
    assert probe_video(target).frames == 6
    written = target.read_bytes()

    caplog.clear()
    assert main(args) == 0
    assert len(_done(out)) == 2, "the third run restored something again"
    assert target.read_bytes() == written
    assert "party/clip.mp4: already restored with these settings, skipped" in caplog.text


def test_candidates_keep_the_face_closest_to_its_input(archive: Path, tiny_release: Path, tmp_path: Path) -> None:
    """--candidates 3 on aligned crops (where the output is the kept candidate itself) and on
    photos: each face records three candidates' dlib similarities to its input and keeps the
    highest; candidate 0 is the plain restore bit for bit, so a face that keeps it comes out as
    without --candidates, and one that does not comes out otherwise."""
    from authface_core.faces.align import align_faces
    from authface_core.faces.detect import detect_faces
    from authface_core.identity import load_embedder

    crops = tmp_path / "crops"
    crops.mkdir()
    for name in ("astronaut.png", "1998/wedding/t1_left.jpg", "2004/hanks.png"):
        rgb = cv2.cvtColor(archive_images()[name], cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        aligned, _ = align_faces([rgb], detect_faces([rgb]), size=SIZE)
        for n, crop in enumerate(aligned):
            stem = Path(name).stem
            cv2.imwrite(str(crops / f"{stem}_{n}.png"), cv2.cvtColor(np.rint(crop * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    embedder = load_embedder("dlib")

    def restore(inputs: Path, out: Path, *flags: str) -> dict[str, dict]:
        assert main(["restore", str(inputs), "--model", str(tiny_release), "--out", str(out), *COMMON, *flags]) == 0
        return {r["path"]: r for r in _done(out)}

    for inputs, flags in ((crops, ["--aligned"]), (archive / "2004", [])):
        plain = restore(inputs, tmp_path / f"plain_{inputs.name}", *flags)
        best = restore(inputs, tmp_path / f"best_{inputs.name}", *flags, "--candidates", "3")
        assert sorted(best) == sorted(plain) and all("candidates" not in r for r in plain.values())
        kept = []
        for path, record in best.items():
            assert record["settings"]["candidates"] == 3 and record["candidate_embedder"] == "dlib"
            assert len(record["candidates"]) == record["faces"] >= 1
            for pick in record["candidates"]:
                similarities = pick["similarities"]
                assert len(similarities) == 3 and len(set(similarities)) == 3, "the candidates should differ"
                assert pick["chosen"] == int(np.argmax(similarities))
                kept.append(pick["chosen"])
            same = np.array_equal(_pixels(tmp_path / f"best_{inputs.name}" / record["output"]),
                                  _pixels(tmp_path / f"plain_{inputs.name}" / plain[path]["output"]))
            assert same == all(pick["chosen"] == 0 for pick in record["candidates"]), path
            if inputs == crops:
                # The kept crop, read back from its 8-bit PNG, scores what the pick recorded.
                written = cv2.cvtColor(_pixels(tmp_path / "best_crops" / record["output"]), cv2.COLOR_BGR2RGB)
                source = cv2.cvtColor(_pixels(crops / path), cv2.COLOR_BGR2RGB)
                [score] = embedder.compare_embeddings(embedder.embed([source / 255.0]), embedder.embed([written / 255.0]))
                [pick] = record["candidates"]
                assert abs(score.similarity - pick["similarities"][pick["chosen"]]) < 0.02, path
        print(f"{inputs.name}: kept candidates {kept}")
