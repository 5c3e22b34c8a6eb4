"""`make run` starts ComfyUI on the GPU when PyTorch finds one, on the CPU otherwise or when asked
(COMFYUI_ARGS=--cpu), passes COMFYUI_ARGS through and says in its log which device it chose.

The real Makefile target runs against a stand-in ComfyUI folder whose main.py only records the
arguments it was started with (a real server would not return)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from comfyui_device import choose_device  # noqa: E402

RECORDING_MAIN = "import json, sys\nprint('ARGV ' + json.dumps(sys.argv[1:]))\n"


def _gpu_found() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available())


@pytest.mark.parametrize(("args", "cuda", "mps", "flags", "said"), [
    ([], None, False, ["--cpu"], "CPU (PyTorch finds no"),
    ([], "NVIDIA L4", False, [], "GPU NVIDIA L4"),
    ([], None, True, [], "Apple GPU"),
    (["--cpu"], "NVIDIA L4", False, [], "asked for with --cpu"),
    (["--lowvram"], "NVIDIA L4", False, [], "GPU NVIDIA L4"),
    (["--lowvram"], None, False, ["--cpu"], "CPU"),
])
def test_device_choice(args: list[str], cuda: str | None, mps: bool, flags: list[str], said: str) -> None:
    chosen_flags, chosen = choose_device(args, cuda, mps)
    assert chosen_flags == flags and said in chosen


def _make_run(tmp_path: Path, comfyui_args: str | None) -> tuple[list[str], str]:
    """Run the real `make run` against a stand-in ComfyUI; returns (main.py's argv, make's output).
    The set-up stamps are taken as up to date (-o): this test must not rebuild .venv."""
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes").mkdir(parents=True, exist_ok=True)
    (comfy / "main.py").write_text(RECORDING_MAIN)
    command = ["make", "--no-print-directory", "-o", ".venv/.stamp-pack", "-o", ".cache/hosts/comfyui-0.30.0/.stamp",
               "run", f"COMFYUI_DIR={comfy}", f"COMFYUI_PYTHON={sys.executable}"]
    if comfyui_args is not None:
        command.append(f"COMFYUI_ARGS={comfyui_args}")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [argv] = [json.loads(line[5:]) for line in done.stdout.splitlines() if line.startswith("ARGV ")]
    return argv, done.stdout + done.stderr


def test_make_run_uses_the_gpu_when_there_is_one(tmp_path: Path) -> None:
    argv, log = _make_run(tmp_path, None)
    assert ("--cpu" in argv) != _gpu_found(), argv
    assert "AuthFace: starting ComfyUI on " + ("GPU" if _gpu_found() else "CPU") in log
    assert argv[argv.index("--listen") + 1] == "127.0.0.1"


def test_comfyui_args_are_passed_through(tmp_path: Path) -> None:
    argv, log = _make_run(tmp_path, "--cpu --preview-method auto")
    assert argv.count("--cpu") == 1
    assert argv[argv.index("--preview-method") + 1] == "auto"
    assert "AuthFace: starting ComfyUI on CPU (asked for with --cpu)" in log
