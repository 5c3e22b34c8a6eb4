"""``python -m bench.gpu_train``, the one-command training check for GPU owners, run on the CPU
with the tiny release: both real trainers run, their figures are printed, and their exports
exist. Without CUDA (hidden from it here) and without ``--cpu`` it refuses with exit code 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from comfy_host import REPO
from stage2_data import write_hq_dir
from test_pipeline import build_tiny_release


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.gpu_train", *args], cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env}, capture_output=True, text=True,
                          timeout=900)


def test_both_stages_train_and_report_on_the_cpu(tmp_path: Path) -> None:
    release = build_tiny_release(tmp_path / "release")
    faces = tmp_path / "faces"
    write_hq_dir(faces, 256)
    work = tmp_path / "work"
    done = _run("--cpu", "--model", str(release), "--faces", str(faces), "--steps", "3", "--resolution-1", "64",
                "--resolution-2", "128", "--work-dir", str(work))
    assert done.returncode == 0, done.stderr[-4000:]
    for stage in ("Stage I", "Stage II"):
        match = re.search(rf"^{stage}: 3 steps, ([0-9.]+) s/step", done.stdout, re.MULTILINE)
        assert match and float(match.group(1)) > 0, done.stdout
    assert done.stdout.count("peak GPU memory: not measured on the CPU") == 2
    assert (work / "stage1" / "export" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (work / "stage2" / "export" / "controlnet" / "diffusion_pytorch_model.safetensors").is_file()
    captions = sorted(p.name for p in (work / "stage1_data").glob("*.txt"))
    assert captions and len(captions) == len(list(faces.glob("*.png")))


def test_without_cuda_it_asks_for_the_cpu_flag(tmp_path: Path) -> None:
    done = _run("--model", str(tmp_path), "--faces", str(tmp_path), CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 2
    assert "no CUDA GPU" in done.stderr and "--cpu" in done.stderr
