"""Stage I training end to end on a tiny SDXL-like release (CPU): steps, checkpoints, validation,
TensorBoard, export, overfitting two photos, and resuming after a hard kill exactly as if the run
had never stopped. Every run is a real ``python -m training.stage1`` process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from comfy_host import REPO
from stage1_runs import build_setup, losses_by_step, records, run_stage1
from training.checkpoints import STATE_FILE, load_extra
from training.stage1.loop import KILL_EXIT_CODE


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, hanks_photo: Path) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("stage1")
    return build_setup(root, hanks_photo), root


@pytest.fixture(scope="module")
def uninterrupted(setup: tuple[dict, Path]) -> Path:
    config, root = setup
    output = root / "uninterrupted"
    done = run_stage1(config, output)
    assert done.returncode == 0, done.stderr[-4000:]
    return output


def test_run_trains_checkpoints_validates_and_logs(uninterrupted: Path) -> None:
    losses = losses_by_step(uninterrupted)
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(v) and v > 0 for v in losses.values())
    train = records(uninterrupted, "train")
    lrs = [r["lr"] for r in train]
    assert lrs[0] < lrs[1] and lrs[-1] < lrs[1]  # linear warm-up, then decay: the schedule runs
    assert all(r["grad_norm"] > 0 for r in train)
    start = records(uninterrupted, "start")[0]
    assert start["accumulation"] == 2 and start["dataset_size"] == 2

    checkpoints = sorted(p.name for p in (uninterrupted / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-00000006"]  # keep the last 1; no temporary folder left
    state = json.loads((uninterrupted / "checkpoints" / checkpoints[0] / STATE_FILE).read_text())
    assert state["step"] == 6 and (state["epoch"], state["position"]) == (6, 0)  # 2 images, 2 per step

    validations = records(uninterrupted, "validation")
    assert [v["step"] for v in validations] == [0, 3, 6]
    assert all(np.isfinite(v["fixed_set_loss"]) for v in validations)
    grid = cv2.imread(str(uninterrupted / validations[-1]["grid"]))
    assert grid.shape == (64, 128, 3)  # two prompts side by side
    assert grid.std() > 1.0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((uninterrupted / "logs").rglob("events.out.tfevents*")).parent)).Reload()
    assert {"train/loss", "train/lr", "train/grad_norm", "validation/fixed_set_loss"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert events.Tags()["images"]


def test_export_loads_back_with_the_ema_weights(uninterrupted: Path, setup: tuple[dict, Path]) -> None:
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    config, _ = setup
    exported = UNet2DConditionModel.from_pretrained(uninterrupted / "export" / "unet")
    names = [name for name, _ in exported.named_parameters()]
    ema = load_extra(uninterrupted / "checkpoints" / "checkpoint-00000006", "ema")["shadow_params"]
    assert len(ema) == len(names)
    for (name, value), shadow in zip(exported.named_parameters(), ema, strict=True):
        assert torch.equal(value.detach(), shadow), name

    folder_file = load_file(uninterrupted / "export" / "unet" / "diffusion_pytorch_model.safetensors")
    single = load_file(uninterrupted / "export" / "authface_stage1_unet.safetensors")
    assert single.keys() == folder_file.keys() == exported.state_dict().keys()
    assert all(torch.equal(single[k], folder_file[k]) for k in single)

    initial = UNet2DConditionModel.from_pretrained(Path(config["pretrained_model"]) / "unet").state_dict()
    trained = load_file(uninterrupted / "checkpoints" / "checkpoint-00000006" / "model.safetensors")
    assert max(float((trained[k] - initial[k]).abs().max()) for k in initial) > 1e-5
    assert any(not torch.equal(trained[k], single[k]) for k in single)  # EMA differs from the raw weights


def test_resume_after_kill_repeats_the_uninterrupted_run(setup: tuple[dict, Path], uninterrupted: Path) -> None:
    config, root = setup
    output = root / "killed"
    killed = run_stage1(config, output, "--simulate-kill-at-step", "4")
    assert killed.returncode == KILL_EXIT_CODE, killed.stderr[-4000:]
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["checkpoint-00000003"]
    assert max(losses_by_step(output)) == 4  # step 4 ran, its work is lost with the process
    stale = output / "checkpoints" / ".tmp-checkpoint-00000006"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half-written")

    # Worker processes and precomputed text embeddings must not change what is computed either.
    resumed = run_stage1(config, output, "--dataloader-num-workers", "2", "--precompute-text-embeddings")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert not stale.exists()
    assert records(output, "resume") == [{"kind": "resume", "step": 3, "checkpoint": "checkpoint-00000003"}]
    reference, again = losses_by_step(uninterrupted), losses_by_step(output)
    for step in (4, 5, 6):
        assert again[step] == pytest.approx(reference[step], abs=1e-6, rel=0), step
    validation = {r["step"]: r["fixed_set_loss"] for r in records(uninterrupted, "validation")}
    assert records(output, "validation")[-1]["fixed_set_loss"] == pytest.approx(validation[6], abs=1e-6)

    from safetensors.torch import load_file

    ours = load_file(output / "export" / "authface_stage1_unet.safetensors")
    theirs = load_file(uninterrupted / "export" / "authface_stage1_unet.safetensors")
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in ours) < 1e-6


def test_two_photos_are_overfitted(setup: tuple[dict, Path]) -> None:
    config, root = setup
    output = root / "overfit"
    overfit = {**config, "train_batch_size": 2, "max_train_steps": 40, "learning_rate": 1e-3,
               "lr_scheduler": "constant", "lr_warmup_steps": 0, "use_ema": False, "checkpointing_steps": 40,
               "validation_steps": 40, "validation_sampling_steps": 1, "validation_prompts": ["a face"]}
    done = run_stage1(overfit, output)
    assert done.returncode == 0, done.stderr[-4000:]
    fixed = [r["fixed_set_loss"] for r in records(output, "validation")]
    assert len(fixed) == 2  # steps 0 and 40: the same images, timesteps and noise
    assert fixed[1] < 0.6 * fixed[0]
    train = [r["loss"] for r in records(output, "train")]
    assert np.mean(train[-10:]) < 0.6 * np.mean(train[:10])


def test_bad_configuration_exits_with_the_problem(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "training.stage1", "--data-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "pretrained_model is required" in done.stderr and "output_dir is required" in done.stderr


def test_accelerate_launch_with_the_shipped_config(setup: tuple[dict, Path]) -> None:
    """The single-GPU accelerate config, on the CPU: its bf16 mixed precision reaches the run
    (the run config leaves mixed_precision to accelerate), and the export is cast as asked."""
    import os

    import yaml
    from safetensors import safe_open

    config, root = setup
    output = root / "launched"
    path = output.with_suffix(".yaml")
    path.write_text(yaml.safe_dump({**config, "output_dir": str(output), "max_train_steps": 2, "use_ema": False,
                                    "validation_steps": 2, "report_to": "none", "export_dtype": "fp16"}))
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         str(REPO / "training" / "configs" / "stage1_accelerate_single_gpu.yaml"), "--cpu",
         "-m", "training.stage1", "--config", str(path)],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    start = records(output, "start")[0]
    assert start["mixed_precision"] == "bf16" and start["distributed_type"] == "NO"
    assert all(np.isfinite(r["loss"]) for r in records(output, "train"))
    with safe_open(output / "export" / "authface_stage1_unet.safetensors", framework="pt") as handle:
        assert {handle.get_slice(k).get_dtype() for k in handle.keys()} == {"F16"}
