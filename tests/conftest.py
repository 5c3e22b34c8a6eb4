"""Shared fixtures: real photos shipped by installed packages, and real ComfyUI hosts."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfy_host import HOST_VERSIONS, ComfyHost


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name} is not installed: run `make setup`")
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="session")
def t1_photo() -> Path:
    """insightface's group photo with 6 faces (1280x886)."""
    return _package_dir("insightface") / "data" / "images" / "t1.jpg"


@pytest.fixture(scope="session")
def t1_png(t1_photo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """t1.jpg decoded once and stored losslessly: the pixels every host test compares against.

    JPEG decoders disagree by a few levels (ComfyUI's process decodes t1.jpg up to 24 levels away
    from this process's Pillow), so host tests feed PNG."""
    from PIL import Image

    path = tmp_path_factory.mktemp("photos") / "t1.png"
    Image.open(t1_photo).convert("RGB").save(path)
    return path


@pytest.fixture(scope="session")
def hanks_photo() -> Path:
    return _package_dir("insightface") / "data" / "images" / "Tom_Hanks_54745.png"


@pytest.fixture(scope="session", params=HOST_VERSIONS, ids=lambda v: f"comfyui-{v}")
def comfy_host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyHost]:
    """A running ComfyUI (each supported release in turn) with this checkout as a custom node."""
    host = ComfyHost(version=request.param, base_dir=tmp_path_factory.mktemp(f"comfyui-{request.param}"))
    host.start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="module")
def idle_comfy_host(comfy_host: ComfyHost) -> ComfyHost:
    """``comfy_host`` with the models of earlier tests unloaded, for modules that need the RAM
    themselves (training runs beside a host that already holds a release: 23 GB is not enough
    for both)."""
    comfy_host.free_memory()
    return comfy_host
