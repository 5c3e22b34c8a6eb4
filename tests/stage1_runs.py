"""Helpers for the Stage I tests: a tiny release with two real captioned photos, and real
``python -m training.stage1`` runs (plain or under torchrun) with their logged records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import yaml

from comfy_host import REPO
from test_pipeline import build_tiny_release
from training.stage1.loop import METRICS_FILE

LONG_TAGS = ", ".join(f"tag number {n} of a long photographic caption" for n in range(20))


def build_setup(root: Path, hanks_photo: Path) -> dict[str, Any]:
    """A tiny release and two real photos in the AuthFace-HQ layout under ``root`` (the
    astronaut's caption is longer than a CLIP window); returns a base run config for them:
    64 px, 2 images per step, 6 steps, EMA, checkpoints and validation every 3 steps."""
    import skimage.data

    release = build_tiny_release(root / "release")
    data = root / "data"
    (data / "woman").mkdir(parents=True)
    (data / "man").mkdir()
    astronaut = cv2.resize(skimage.data.astronaut(), (96, 96), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(data / "woman" / "woman_11010.png"), astronaut[..., ::-1])
    (data / "woman" / "woman_11010_qwen.json").write_text(json.dumps(
        {"semantic_tags": ["a woman", "short blond hair", "smiling"], "photographic_tags": LONG_TAGS}))
    cv2.imwrite(str(data / "man" / "man_5001.png"), cv2.imread(str(hanks_photo)))
    (data / "man" / "man_5001_qwen.json").write_text(json.dumps({"caption": "a man, grey photo, soft lighting"}))
    return {
        "pretrained_model": str(release), "data_dir": str(data), "resolution": 64, "train_batch_size": 1,
        "total_batch_size": 2, "max_train_steps": 6, "learning_rate": 1e-4, "lr_scheduler": "linear",
        "lr_warmup_steps": 2, "use_ema": True, "ema_decay": 0.9, "checkpointing_steps": 3,
        "checkpoints_total_limit": 1, "validation_steps": 3, "validation_sampling_steps": 2,
        "validation_resolution": 64, "validation_loss_samples": 2, "dataloader_num_workers": 0,
    }


def run_stage1(config: dict[str, Any], output: Path, *flags: str, processes: int = 1) -> subprocess.CompletedProcess:
    """``python -m training.stage1 --config <output>.yaml FLAGS`` (under ``torchrun
    --nproc_per_node processes`` when more than one), one thread per process."""
    path = output.with_suffix(".yaml")
    path.write_text(yaml.safe_dump({**config, "output_dir": str(output)}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    return subprocess.run([*launcher, "-m", "training.stage1", "--config", str(path), *flags],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def records(output: Path, kind: str) -> list[dict[str, Any]]:
    lines = (output / METRICS_FILE).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def losses_by_step(output: Path) -> dict[int, float]:
    """The last logged loss of each step (a resumed run logs the steps it repeats again)."""
    return {r["step"]: r["loss"] for r in records(output, "train")}
