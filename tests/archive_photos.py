"""A small real photo archive for the archive tests and benchmark: crops and resizes of
insightface's t1.jpg (6 faces) and Tom_Hanks_54745.png and scikit-image's astronaut, in nested
folders, with a faceless image and a file that is not an image."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

NOT_AN_IMAGE = "notes/readme.txt"


def _insightface_image(name: str) -> np.ndarray:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations, "insightface is not installed: run `make setup`"
    image = cv2.imread(str(Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / name))
    assert image is not None, name
    return image


def archive_images() -> dict[str, np.ndarray]:
    """Relative path -> BGR uint8 image (16-bit for one), sorted by path."""
    import skimage.data

    t1 = _insightface_image("t1.jpg")  # 1280x886, faces in a row
    hanks = _insightface_image("Tom_Hanks_54745.png")
    astronaut = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    ramp = np.linspace(0, 255, 96 * 128, dtype=np.float64).reshape(96, 128)
    images = {
        "1998/wedding/t1_left.jpg": t1[180:520, 0:560],
        "1998/wedding/t1_right.jpg": t1[60:500, 720:1280],
        "1998/wedding/t1_small.jpg": cv2.resize(t1, (560, 388), interpolation=cv2.INTER_AREA),
        "2004/hanks.png": cv2.resize(hanks, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA),
        "2004/hanks [mirror].jpg": hanks[:, ::-1],
        "2004/hanks_16bit.png": (hanks.astype(np.uint16) * 257)[16:-16, 16:-16],
        "astronaut.png": astronaut[0:300, 80:380],
        "empty_sky.png": np.stack([ramp, ramp[::-1], np.full_like(ramp, 200)], axis=2).astype(np.uint8),
    }
    return dict(sorted(images.items()))


def build_archive(root: Path) -> Path:
    """Write :func:`archive_images` (and :data:`NOT_AN_IMAGE`) under ``root``; returns ``root``."""
    for relative, image in archive_images().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(path.suffix, image)
        assert ok, relative
        data.tofile(str(path))
    (root / NOT_AN_IMAGE).parent.mkdir(parents=True, exist_ok=True)
    (root / NOT_AN_IMAGE).write_text("captions of the 1998 album")
    return root
