"""Real photos for identity tests: three different photos of one person and one of another.

They come from the sdist of face_recognition 1.3.0 on PyPI (its own test photos), which
``make setup`` unpacks into .cache/photos with tools/fetch_photos.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from comfy_host import REPO

PHOTOS = REPO / ".cache" / "photos"
SAME_PERSON = ("obama.jpg", "obama2.jpg", "obama3.jpg")
OTHER_PERSON = "biden.jpg"


def photo_path(name: str) -> Path:
    path = PHOTOS / name
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: run `make setup` (tools/fetch_photos.py fetches it from PyPI)")
    return path


def read_photo(name: str) -> np.ndarray:
    """HxWx3 float32 RGB in [0, 1]."""
    return cv2.cvtColor(cv2.imread(str(photo_path(name))), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
