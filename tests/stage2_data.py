"""Real aligned faces for the Stage II tests: the faces of insightface's t1.jpg and
Tom_Hanks_54745.png and scikit-image's astronaut, detected and FFHQ-aligned by the faces core."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from authface_core.faces.types import AlignedFace

REPO = Path(__file__).resolve().parents[1]


def _insightface_image(name: str) -> np.ndarray:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations, "insightface is not installed: run make setup"
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / name
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def photos() -> dict[str, np.ndarray]:
    """The three photos as RGB float32 in [0, 1]."""
    from skimage.data import astronaut

    return {"t1": _insightface_image("t1.jpg"), "hanks": _insightface_image("Tom_Hanks_54745.png"),
            "astronaut": astronaut().astype(np.float32) / 255.0}


@functools.lru_cache(maxsize=4)
def aligned_faces(size: int = 512) -> tuple[tuple[str, np.ndarray, AlignedFace], ...]:
    """(name, crop (size, size, 3) float32, AlignedFace) of every dlib face of the photos."""
    from authface_core.faces.align import align_faces
    from authface_core.faces.detect import detect_faces

    found = []
    for name, photo in photos().items():
        faces = detect_faces([photo])
        crops, aligned = align_faces([photo], faces, size=size)
        for k, (crop, info) in enumerate(zip(crops, aligned.aligned)):
            found.append((f"{name}_{k}", crop, info))
    return tuple(found)


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.round(np.clip(image, 0, 1)[..., ::-1] * 255).astype(np.uint8))
    return path


def write_hq_dir(dest: Path, size: int = 512) -> list[str]:
    """Write the aligned faces as ``dest/<name>.png``; returns the names."""
    names = []
    for name, crop, _ in aligned_faces(size):
        write_png(dest / f"{name}.png", crop)
        names.append(f"{name}.png")
    return names


def prepared_faces(root: Path, size: int = 512) -> tuple[Path, Path]:
    """The aligned faces in ``root/hq`` landmarked by ``prepare_stage2`` into ``root/landmarks``."""
    from training.prepare_stage2 import prepare

    hq = root / "hq"
    write_hq_dir(hq, size)
    prepare(hq, root / "landmarks")
    return hq, root / "landmarks"
