"""Stage II end to end on a tiny SDXL-like release and real aligned faces at 128 px, through the
command line: every loss term trains and is logged (metrics.jsonl and TensorBoard), validation
restores held-out faces with the standalone pipeline, checkpoints are atomic and pruned, a run
killed with SIGKILL resumes to exactly the uninterrupted run's losses and weights, and the
export is a ControlNet that diffusers, the release reader and the restore pipeline accept."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from stage2_data import REPO, prepared_faces
from test_pipeline import build_tiny_release
from training.checkpoints import list_checkpoints
from training.stage2.export import SINGLE_FILE_NAME
from training.stage2.loop import METRICS_FILE, TAGS

STEPS = 6
LOSS_TAGS = sorted(TAGS.values())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stage2_train")
    hq, landmarks = prepared_faces(root)
    return {"root": root, "release": build_tiny_release(root / "release"), "hq": hq, "landmarks": landmarks}


def training_args(ws: dict[str, Path], output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training.stage2", "--base", str(ws["release"]), "--data-dir", str(ws["hq"]),
            "--landmarks", str(ws["landmarks"]), "--output-dir", str(output), "--resolution", "128",
            "--train-batch-size", "2", "--max-train-steps", str(STEPS), "--checkpointing-steps", "2",
            "--log-every", "1",
            "--dataloader-num-workers", "1", "--seed", "3", "--learning-rate", "1e-4", *extra]


def run(args: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def metrics(output: Path) -> dict[int, dict[str, float]]:
    """Training scalars by step (validation lines merged in)."""
    merged: dict[int, dict[str, float]] = {}
    for line in (output / METRICS_FILE).read_text().splitlines():
        entry = json.loads(line)
        merged.setdefault(entry.pop("step"), {}).update(entry)
    return merged


@pytest.fixture(scope="module")
def uninterrupted(workspace: dict[str, Path]) -> Path:
    output = workspace["root"] / "uninterrupted"
    run(training_args(workspace, output, "--checkpoints-total-limit", "2", "--validation-dir", str(workspace["hq"]),
                      "--validation-count", "2", "--validation-steps", "3", "--validation-sampling-steps", "2",
                      "--validation-cfg", "2"))
    return output


def test_every_loss_term_is_trained_and_logged(uninterrupted: Path) -> None:
    logged = metrics(uninterrupted)
    assert sorted(logged) == list(range(1, STEPS + 1))
    for step, scalars in logged.items():
        for tag in LOSS_TAGS:
            assert scalars[tag] > 0, (step, tag)
        assert scalars["loss/total"] == pytest.approx(scalars["loss/noise"] + scalars["loss/facial"], rel=1e-5)
        assert scalars["lr"] == pytest.approx(1e-4)
    # Each step's own time: checkpoints (every 2 steps) and validations (every 3) left out.
    seconds = [scalars["time/seconds_per_step"] for scalars in logged.values()]
    assert all(0 < s < 60 for s in seconds), seconds
    for step in (3, 6):
        assert 5 < logged[step]["val/psnr"] < 60 and -1 < logged[step]["val/ssim"] < 1


def test_tensorboard_holds_every_term_and_the_validation_grid(uninterrupted: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # The run's own event file; TensorBoard's hparams summary writes more in sub-folders.
    accumulator = EventAccumulator(str(uninterrupted / "logs" / "stage2"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    scalars = accumulator.Tags()["scalars"]
    for tag in LOSS_TAGS:
        assert [e.step for e in accumulator.Scalars(tag)] == list(range(1, STEPS + 1)), tag
    assert [e.step for e in accumulator.Scalars("val/psnr")] == [3, 6]
    assert "val/ssim" in scalars and "lr" in scalars
    assert [e.step for e in accumulator.Images("validation/lq_restored_hq")] == [3, 6]
    grid = cv2.imread(str(uninterrupted / "validation" / "step-00000006.png"))
    assert grid.shape == (2 * 128 + 4, 3 * 128 + 8, 3)


def test_checkpoints_are_complete_and_pruned(uninterrupted: Path) -> None:
    assert [step for step, _ in list_checkpoints(uninterrupted / "checkpoints")] == [4, 6]
    folder = uninterrupted / "checkpoints"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "a temporary checkpoint was left behind"
    state = json.loads((folder / "checkpoint-00000006" / "training_state.json").read_text())
    assert state["step"] == 6 and state["micro_batch"] == 6
    names = {p.name for p in (folder / "checkpoint-00000006").iterdir()}
    assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl", "extras",
            "controlnet_config.json"} <= names
    extras = {p.name for p in (folder / "checkpoint-00000006" / "extras").iterdir()}
    assert extras == {"discriminators.pt", "discriminator_optimizer.pt"}


def test_resume_after_sigkill_reproduces_the_uninterrupted_run(workspace: dict[str, Path], uninterrupted: Path) -> None:
    output = workspace["root"] / "killed"
    with open(workspace["root"] / "killed.log", "wb") as log:
        process = subprocess.Popen(training_args(workspace, output), cwd=REPO, stdout=log, stderr=log)
    first = output / "checkpoints" / "checkpoint-00000002" / "training_state.json"
    deadline = time.monotonic() + 300
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resumed_from = list_checkpoints(output / "checkpoints")[-1][0]
    assert resumed_from < STEPS
    # What a kill during a save leaves: a temporary folder, newer than any complete checkpoint.
    partial = output / "checkpoints" / f".tmp-checkpoint-{STEPS + 1:08d}"
    partial.mkdir(exist_ok=True)
    (partial / "model.safetensors").write_bytes(b"cut short")

    result = run(training_args(workspace, output))
    assert f"resumed from {output / 'checkpoints' / f'checkpoint-{resumed_from:08d}'} at step {resumed_from}" \
        in result.stderr
    assert not partial.exists(), "the partial checkpoint was not cleaned up"
    logged, reference = metrics(output), metrics(uninterrupted)
    assert sorted(logged) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        for tag in LOSS_TAGS:
            assert logged[step][tag] == pytest.approx(reference[step][tag], rel=1e-6, abs=1e-9), (step, tag)
    exported = load_file(str(output / "export" / SINGLE_FILE_NAME))
    expected = load_file(str(uninterrupted / "export" / SINGLE_FILE_NAME))
    assert exported.keys() == expected.keys()
    assert all(torch.equal(exported[k], expected[k]) for k in expected), "resumed weights differ"


def test_export_is_the_trained_controlnet(workspace: dict[str, Path], uninterrupted: Path, tmp_path: Path) -> None:
    from diffusers import ControlNetModel

    from authface_core.pipeline import AuthFacePipeline

    export = uninterrupted / "export"
    model = ControlNetModel.from_pretrained(export / "controlnet")
    single = load_file(str(export / SINGLE_FILE_NAME))
    checkpoint = load_file(str(uninterrupted / "checkpoints" / "checkpoint-00000006" / "model.safetensors"))
    state = model.state_dict()
    assert state.keys() == single.keys() == checkpoint.keys()
    assert all(torch.equal(state[k], single[k]) and torch.equal(state[k], checkpoint[k]) for k in state)
    # from_unet starts the residual convolutions at zero: training moved them.
    assert float(single["controlnet_mid_block.weight"].abs().max()) > 0

    run([sys.executable, "-m", "training.stage2.export", str(uninterrupted / "checkpoints" / "checkpoint-00000006"),
         str(tmp_path / "out"), "--dtype", "fp16", "--release-base", str(workspace["release"])])
    half = load_file(str(tmp_path / "out" / "controlnet" / "diffusion_pytorch_model.fp16.safetensors"))
    assert all(half[k].dtype == torch.float16 for k in half)
    torch.testing.assert_close(half["controlnet_mid_block.weight"].float(), single["controlnet_mid_block.weight"],
                               rtol=1e-3, atol=1e-4)
    release = tmp_path / "out" / "release"
    assert (release / "controlnet").resolve() == (tmp_path / "out" / "controlnet").resolve()
    pipeline = AuthFacePipeline.from_release(release)
    lq = torch.from_numpy(cv2.resize(cv2.imread(str(workspace["hq"] / "hanks_0.png")), (128, 128),
                                     interpolation=cv2.INTER_AREA)[..., ::-1].astype(np.float32) / 255)
    restored = pipeline.restore(lq.permute(2, 0, 1)[None], steps=2, cfg=2.0)
    assert restored.shape == (1, 3, 128, 128) and bool(torch.isfinite(restored).all())
