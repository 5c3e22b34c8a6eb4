"""ComfyUI Registry / Manager readiness: the registry's own validator (comfy-cli's
``comfy node validate``, offline) passes, and the [tool.comfy] metadata it reads is complete."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import cv2

from comfy_host import REPO

COMFY_CLI = Path(sys.executable).parent / "comfy"


def metadata() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_comfy_node_validate_passes(tmp_path: Path) -> None:
    if not COMFY_CLI.is_file():
        raise RuntimeError(f"{COMFY_CLI} is missing: `make setup` installs comfy-cli (dev extra)")
    # A fresh HOME so comfy-cli's first-run config lands in tmp_path, never in the user's own.
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run([str(COMFY_CLI), "--skip-prompt", "--no-enable-telemetry", "node", "validate"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "All validation checks passed" in output, output
    # The validator only warns (exit code 0) about exec/eval and licence format: treat that as failure.
    assert "Security warnings" not in output and "Warning" not in output, output


def test_registry_reads_complete_metadata() -> None:
    """What comfy-cli's parser (the one `comfy node publish` sends) takes from pyproject.toml."""
    from comfy_cli.registry.config_parser import extract_node_configuration

    config = extract_node_configuration(str(REPO / "pyproject.toml"))
    assert config is not None
    project, comfy = config.project, config.tool_comfy
    assert project.name and project.description and project.version.count(".") == 2
    assert project.license.text == "Apache-2.0" and (REPO / "LICENSE").is_file()
    assert "Apache License" in (REPO / "LICENSE").read_text()
    assert project.urls.repository.startswith("https://github.com/")
    assert comfy.publisher_id and comfy.display_name
    assert project.supported_comfyui_version == ">=0.3.75"
    # The icon is a URL to a file of this repository (raw.githubusercontent.com/<owner>/<repo>/main/<path>).
    owner_repo = project.urls.repository.removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{owner_repo}/main/"
    assert comfy.icon.startswith(prefix), comfy.icon
    icon = cv2.imread(str(REPO / comfy.icon.removeprefix(prefix)))
    assert icon is not None, f"{comfy.icon} is not a file of this repository"
    height, width = icon.shape[:2]
    assert height == width <= 400  # the registry's limit for icons


def test_comfy_cli_left_the_pinned_torch_alone() -> None:
    """comfy-cli comes with the dev extra; installing it must not have replaced torch."""
    from importlib.metadata import version

    assert version("comfy-cli") and f"torch=={version('torch')}" in (REPO / "constraints.txt").read_text()
