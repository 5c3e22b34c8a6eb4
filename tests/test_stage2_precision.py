"""Stage II's memory options on the tiny release, through the command line: bf16 mixed precision
(CPU autocast; the frozen UNet and text encoders in bf16, the ControlNet's float32 master
weights), gradient checkpointing of ControlNet and UNet, and gradient accumulation, with a
validation pass running the pipeline on the mixed-dtype models."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from stage2_data import REPO, prepared_faces
from test_pipeline import build_tiny_release
from training.stage2.export import SINGLE_FILE_NAME


def test_bf16_checkpointing_and_accumulation(tmp_path: Path) -> None:
    hq, landmarks = prepared_faces(tmp_path)
    release = build_tiny_release(tmp_path / "release")
    output = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "training.stage2", "--base", str(release), "--data-dir", str(hq),
         "--landmarks", str(landmarks), "--output-dir", str(output), "--resolution", "128", "--train-batch-size", "2",
         "--max-train-steps", "2", "--log-every", "1", "--dataloader-num-workers", "0", "--mixed-precision", "bf16",
         "--gradient-checkpointing", "--gradient-accumulation-steps", "2", "--validation-dir", str(hq),
         "--validation-count", "1", "--validation-steps", "2", "--validation-sampling-steps", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "1 process(es) x 2 faces x 2 accumulation" in result.stderr
    entries = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    losses = [e for e in entries if "loss/total" in e]
    assert [e["step"] for e in losses] == [1, 2]
    assert all(math.isfinite(e["loss/total"]) and e["loss/facial"] > 0 for e in losses)
    assert [e["step"] for e in entries if "val/psnr" in e] == [2]
    state = json.loads((output / "checkpoints" / "checkpoint-00000002" / "training_state.json").read_text())
    assert state["micro_batch"] == 4, "2 optimizer steps of 2 accumulated micro-batches"
    exported = load_file(str(output / "export" / SINGLE_FILE_NAME))
    assert {str(t.dtype) for t in exported.values()} == {"torch.float32"}, "master weights must stay float32"
    assert float(exported["controlnet_mid_block.weight"].abs().max()) > 0
