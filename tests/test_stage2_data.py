"""Stage II data: the resumable landmark preparation, the dataset's seeded degradation and the
resumable, rank-sharded sample order."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from authface_core.degradation import DegradationConfig
from stage2_data import REPO, write_hq_dir, write_png
from training.prepare_stage2 import CACHE_NAME, FAILED_NAME, prepare, read_cache
from training.stage2.data import EpochBatchSampler, Stage2Dataset, validation_pairs

RESOLUTION = 128


@pytest.fixture(scope="module")
def hq_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Aligned real faces (one in a sub-folder, FFHQ-style) and a crop with no face in it."""
    root = tmp_path_factory.mktemp("stage2_data") / "hq"
    write_hq_dir(root)
    (root / "00000").mkdir()
    shutil.move(root / "hanks_0.png", root / "00000" / "hanks_0.png")
    noise = np.random.default_rng(0).random((512, 512, 3)).astype(np.float32)
    write_png(root / "noise.png", noise)
    return root


@pytest.fixture(scope="module")
def landmarks(hq_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("landmarks")
    prepare(hq_dir, out)
    return out


def test_prepare_caches_landmarks_and_reports_failures(hq_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "training.prepare_stage2", str(hq_dir), str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    records = read_cache(tmp_path / CACHE_NAME)
    images = sorted(p.relative_to(hq_dir).as_posix() for p in hq_dir.rglob("*.png"))
    assert sorted(records) == images
    failed = (tmp_path / FAILED_NAME).read_text().split()
    assert "noise.png" in failed
    assert not records["noise.png"].ok
    assert records["00000/hanks_0.png"].ok
    assert sum(r.ok for r in records.values()) == len(images) - len(failed) == 8
    assert "could not landmark" in result.stdout and "noise.png" in result.stdout
    line = next(json.loads(x) for x in (tmp_path / CACHE_NAME).read_text().splitlines() if "hanks" in x)
    assert np.asarray(line["landmarks"]).shape == (68, 2)
    assert np.asarray(line["boxes"]).shape == (3, 4)


def test_prepare_resumes_after_a_cut_off_run(hq_dir: Path, landmarks: Path, tmp_path: Path) -> None:
    cache = tmp_path / CACHE_NAME
    shutil.copyfile(landmarks / CACHE_NAME, cache)
    lines = cache.read_text().splitlines(keepends=True)
    # A kill mid-write: the last two results are lost, the one before is cut in half.
    cache.write_text("".join(lines[:-3]) + lines[-3][: len(lines[-3]) // 2])
    summary = prepare(hq_dir, tmp_path)
    assert summary.skipped == len(lines) - 3
    assert summary.total == len(lines)
    after = cache.read_text().splitlines()
    assert len(after) == len(lines)
    assert sorted(read_cache(cache)) == sorted(read_cache(landmarks / CACHE_NAME))
    again = prepare(hq_dir, tmp_path)
    assert again.skipped == again.total
    assert cache.read_text().splitlines() == after
    assert again.failed == summary.failed == ["astronaut_0.png", "noise.png"]


def test_prepare_retries_failures_on_request(hq_dir: Path, landmarks: Path, tmp_path: Path) -> None:
    shutil.copyfile(landmarks / CACHE_NAME, tmp_path / CACHE_NAME)
    summary = prepare(hq_dir, tmp_path, retry_failed=True)
    assert summary.skipped == summary.total - 2
    assert summary.failed == ["astronaut_0.png", "noise.png"]


def test_parallel_workers_give_the_same_cache(hq_dir: Path, landmarks: Path, tmp_path: Path) -> None:
    summary = prepare(hq_dir, tmp_path, workers=2)
    assert summary.failed == ["astronaut_0.png", "noise.png"]
    parallel, serial = read_cache(tmp_path / CACHE_NAME), read_cache(landmarks / CACHE_NAME)
    assert sorted(parallel) == sorted(serial)
    for path, record in serial.items():
        if record.ok:
            np.testing.assert_array_equal(parallel[path].landmarks, record.landmarks)


def test_dataset_degrades_by_seed_epoch_and_index(hq_dir: Path, landmarks: Path) -> None:
    dataset = Stage2Dataset(hq_dir, landmarks, RESOLUTION, seed=7)
    again = Stage2Dataset(hq_dir, landmarks, RESOLUTION, seed=7)
    other_seed = Stage2Dataset(hq_dir, landmarks, RESOLUTION, seed=8)
    assert len(dataset) == 8
    first = dataset[(0, 3)]
    assert first["lq"].shape == first["hq"].shape == (3, RESOLUTION, RESOLUTION)
    assert first["lq"].dtype == torch.float32
    for sample in (first, dataset[(1, 3)], dataset[(0, 4)]):
        assert 0.0 <= float(sample["lq"].min()) and float(sample["lq"].max()) <= 1.0
        assert float((sample["lq"] - sample["hq"]).abs().mean()) > 0.005, "the LQ is not degraded"
    torch.testing.assert_close(again[(0, 3)]["lq"], first["lq"], rtol=0, atol=0)
    torch.testing.assert_close(dataset[(0, 3)]["lq"], first["lq"], rtol=0, atol=0)
    torch.testing.assert_close(dataset[(1, 3)]["hq"], first["hq"], rtol=0, atol=0)
    for different in (dataset[(1, 3)], other_seed[(0, 3)]):
        assert float((different["lq"] - first["lq"]).abs().mean()) > 0.005


def test_dataset_is_the_same_through_worker_processes(hq_dir: Path, landmarks: Path) -> None:
    dataset = Stage2Dataset(hq_dir, landmarks, RESOLUTION, seed=3)
    sampler = EpochBatchSampler(len(dataset), batch_size=2, seed=3)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=2)
    batches = iter(loader)
    for micro_batch in range(3):
        batch = next(batches)
        keys = sampler.keys(micro_batch)
        expected = torch.stack([dataset[key]["lq"] for key in keys])
        torch.testing.assert_close(batch["lq"], expected, rtol=0, atol=0)
        assert batch["index"].tolist() == [index for _, index in keys]


def test_degradation_ranges_are_configurable(hq_dir: Path, landmarks: Path) -> None:
    mild = DegradationConfig(blur_sigma=(0.1, 0.2), downsample_range=(1.0, 1.0), noise_range=(0.0, 0.0),
                             jpeg_range=(100, 100))
    dataset = Stage2Dataset(hq_dir, landmarks, RESOLUTION, degradation=mild)
    harsh = Stage2Dataset(hq_dir, landmarks, RESOLUTION)
    sample, harsh_sample = dataset[(0, 0)], harsh[(0, 0)]
    mild_error = float((sample["lq"] - sample["hq"]).abs().mean())
    assert mild_error < 0.01
    assert float((harsh_sample["lq"] - harsh_sample["hq"]).abs().mean()) > 2 * mild_error


def test_sampler_shards_ranks_and_resumes() -> None:
    length, batch, ranks = 23, 3, 2
    samplers = [EpochBatchSampler(length, batch, ranks, rank, seed=5) for rank in range(ranks)]
    per_epoch = length // (batch * ranks)
    streams = [iter(s) for s in samplers]
    epoch0 = [[next(stream) for _ in range(per_epoch)] for stream in streams]
    seen = [key for rank_batches in epoch0 for b in rank_batches for key in b]
    assert len(seen) == len(set(seen)) == per_epoch * batch * ranks, "ranks or batches overlap within an epoch"
    assert {epoch for epoch, _ in seen} == {0}
    epoch1 = [next(stream) for stream in streams]
    assert {epoch for b in epoch1 for epoch, _ in b} == {1}
    assert [i for _, i in epoch1[0]] != [i for _, i in epoch0[0][0]], "the order is not reshuffled per epoch"
    resumed = iter(EpochBatchSampler(length, batch, ranks, 1, seed=5, start=per_epoch - 1))
    assert next(resumed) == epoch0[1][-1]
    assert next(resumed) == epoch1[1]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        EpochBatchSampler(5, 3, 2, 0)


def test_validation_pairs_are_fixed(hq_dir: Path) -> None:
    hq, lq, names = validation_pairs(hq_dir, 3, RESOLUTION, DegradationConfig(), seed=0)
    hq2, lq2, names2 = validation_pairs(hq_dir, 3, RESOLUTION, DegradationConfig(), seed=0)
    assert hq.shape == lq.shape == (3, 3, RESOLUTION, RESOLUTION)
    assert names == names2 == sorted(names)
    torch.testing.assert_close(lq, lq2, rtol=0, atol=0)
    assert float((lq - hq).abs().mean()) > 0.005
