"""Stage I under torchrun: two CPU processes (gloo) train with synchronised gradients.

The ranks read different samples each step, so their local losses and gradients differ; after
the steps both hold the same weights (parameter hashes gathered into replicas.json), and those
weights are what one process computes on the whole batch of both samples, not what rank 0 would
have computed on its own sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stage1_runs import build_setup, losses_by_step, records, run_stage1
from training.replicas import parameter_digest
from training.stage1.loop import REPLICAS_FILE

LEARNING_RATE = 1e-4


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, hanks_photo: Path) -> tuple[Path, Path, Path, dict]:
    """Two steps on 2 processes x 1 image; the same on 1 process x 2 images; and one step of
    1 process x 1 image, which reads the sample rank 0 reads at step 1."""
    root = tmp_path_factory.mktemp("stage1_ddp")
    config = {**build_setup(root, hanks_photo), "max_train_steps": 2, "use_ema": False, "lr_scheduler": "constant",
              "lr_warmup_steps": 0, "learning_rate": LEARNING_RATE, "checkpointing_steps": 1,
              "checkpoints_total_limit": 2, "validation_steps": 2, "validation_sampling_steps": 1,
              "validation_loss_samples": 0, "report_to": "none"}
    ddp, single, alone = root / "ddp", root / "single", root / "alone"
    done = run_stage1(config, ddp, processes=2)
    assert done.returncode == 0, done.stderr[-6000:]
    done = run_stage1(config, single, "--train-batch-size", "2")
    assert done.returncode == 0, done.stderr[-4000:]
    done = run_stage1(config, alone, "--total-batch-size", "1", "--max-train-steps", "1")
    assert done.returncode == 0, done.stderr[-4000:]
    return ddp, single, alone, config


def _step_weights(output: Path, step: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(output / "checkpoints" / f"checkpoint-{step:08d}" / "model.safetensors")


def _relative_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                       origin: dict[str, torch.Tensor]) -> float:
    """||a - b|| / ||a - origin|| over all weights."""
    apart = torch.cat([(a[k] - b[k]).flatten() for k in a])
    moved = torch.cat([(a[k] - origin[k]).flatten() for k in a])
    return float(apart.norm() / moved.norm())


def test_ranks_read_different_shards_and_end_identical(runs: tuple[Path, Path, Path, dict]) -> None:
    from diffusers import UNet2DConditionModel

    ddp, _, _, config = runs
    assert records(ddp, "start")[0]["processes"] == 2
    replicas = json.loads((ddp / REPLICAS_FILE).read_text())
    assert [r["rank"] for r in replicas] == [0, 1]
    for step in range(2):
        shards = [set(r["samples"][step]) for r in replicas]
        assert len(shards[0]) == len(shards[1]) == 1
        assert not shards[0] & shards[1]  # different data on each rank ...
        assert replicas[0]["local_losses"][step] != replicas[1]["local_losses"][step]  # ... different gradients
    assert replicas[0]["param_sha256"] == replicas[1]["param_sha256"]  # yet the same weights after the steps
    initial = UNet2DConditionModel.from_pretrained(Path(config["pretrained_model"]) / "unet")
    assert parameter_digest(initial) != replicas[0]["param_sha256"]


def test_two_processes_compute_what_one_does_on_the_whole_batch(runs: tuple[Path, Path, Path, dict]) -> None:
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    ddp, single, alone, config = runs
    ddp_losses, single_losses = losses_by_step(ddp), losses_by_step(single)
    assert sorted(ddp_losses) == [1, 2]
    for step in (1, 2):
        assert ddp_losses[step] == pytest.approx(single_losses[step], abs=1e-5)
    ours = load_file(ddp / "export" / "unet" / "diffusion_pytorch_model.safetensors")
    whole = load_file(single / "export" / "unet" / "diffusion_pytorch_model.safetensors")
    initial = UNet2DConditionModel.from_pretrained(Path(config["pretrained_model"]) / "unet").state_dict()
    moved = torch.cat([(ours[k] - initial[k]).flatten() for k in ours])
    apart = torch.cat([(ours[k] - whole[k]).flatten() for k in ours])
    # AdamW moves every weight with a gradient by about lr per step. The synchronised replicas match
    # the whole-batch run up to float summation order: a tiny fraction of the movement overall, and
    # under one step for any weight (Adam divides by the gradient's size, so near-zero gradients
    # magnify rounding). A rank that stepped on its own sample would differ by about the movement.
    assert float(moved.abs().max()) > LEARNING_RATE
    assert float(apart.norm() / moved.norm()) < 1e-2
    assert float(apart.abs().max()) < LEARNING_RATE

    # After step 1: rank 0 alone (its own sample, no averaging) lands elsewhere.
    synced, whole, own = _step_weights(ddp, 1), _step_weights(single, 1), _step_weights(alone, 1)
    assert _relative_distance(synced, whole, initial) < 1e-2
    assert _relative_distance(synced, own, initial) > 0.3
