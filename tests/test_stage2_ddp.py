"""Stage II in two CPU processes: ``torchrun --nproc_per_node 2 -m training.stage2 --cpu`` forms a
gloo group, each rank trains on its own share of the faces, and after two steps both ranks hold
bitwise-identical ControlNet and discriminator weights (DDP averages the ControlNet's gradients;
the discriminators' are averaged by the training step itself)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from stage2_data import REPO, prepared_faces
from test_pipeline import build_tiny_release
from training.stage2.export import SINGLE_FILE_NAME


def torchrun() -> str:
    path = Path(sys.executable).with_name("torchrun")
    return str(path) if path.exists() else shutil.which("torchrun") or "torchrun"


def test_two_processes_end_with_identical_weights(tmp_path: Path) -> None:
    hq, landmarks = prepared_faces(tmp_path)
    release = build_tiny_release(tmp_path / "release")
    output = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [torchrun(), "--nproc_per_node", "2", "-m", "training.stage2", "--cpu", "--base", str(release),
         "--data-dir", str(hq), "--landmarks", str(landmarks), "--output-dir", str(output), "--resolution", "128",
         "--train-batch-size", "2", "--max-train-steps", "2", "--log-every", "1", "--dataloader-num-workers", "0",
         "--learning-rate", "1e-4", "--write-param-digests"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "2 process(es) x 2 faces" in result.stderr
    digests = [json.loads((output / "param_digests" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert digests[0]["controlnet"] == digests[1]["controlnet"]
    assert digests[0]["discriminators"] == digests[1]["discriminators"]
    checkpoint = output / "checkpoints" / "checkpoint-00000002"
    assert (checkpoint / "random_states_0.pkl").is_file() and (checkpoint / "random_states_1.pkl").is_file()
    exported = load_file(str(output / "export" / SINGLE_FILE_NAME))
    assert float(exported["controlnet_mid_block.weight"].abs().max()) > 0, "the ControlNet did not train"
    losses = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in losses] == [1, 2]
    assert all(entry["loss/facial"] > 0 and entry["disc/eyes"] > 0 for entry in losses)


def test_torchrun_on_cpu_without_the_cpu_flag_is_refused(tmp_path: Path) -> None:
    """Without --cpu accelerate leaves each CPU-only process alone: two runs into one folder."""
    hq, landmarks = prepared_faces(tmp_path)
    release = build_tiny_release(tmp_path / "release")
    result = subprocess.run(
        [torchrun(), "--nproc_per_node", "2", "-m", "training.stage2", "--base", str(release), "--data-dir", str(hq),
         "--landmarks", str(landmarks), "--output-dir", str(tmp_path / "run"), "--resolution", "128",
         "--max-train-steps", "1", "--train-batch-size", "1"],
        cwd=REPO, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "pass --cpu" in result.stderr
