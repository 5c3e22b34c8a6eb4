"""Image folders as the evaluation commands see them: files paired by name, read as RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..images import ImageFileError, read_image_file, rgb_channel_order, to_rgb_float

# Formats OpenCV decodes that photo collections use.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The images directly in ``folder`` by file stem, and notes on files left out (a second file
    with the same stem). Raises ImageFileError when ``folder`` is not a folder."""
    if not folder.is_dir():
        raise ImageFileError(f"{folder} is not a folder")
    found: dict[str, Path] = {}
    notes = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in found:
            notes.append(f"{path}: left out, {found[path.stem].name} has the same name")
            continue
        found[path.stem] = path
    return found, notes


def read_rgb(path: Path) -> np.ndarray:
    """``path`` as HxWx3 float32 RGB in [0, 1] (8- or 16-bit files; alpha dropped, grey
    repeated). Raises ImageFileError naming the file when it cannot be read or decoded."""
    image = rgb_channel_order(read_image_file(path))
    try:
        return to_rgb_float(image)
    except ValueError as err:
        raise ImageFileError(f"{path}: {err}") from err
