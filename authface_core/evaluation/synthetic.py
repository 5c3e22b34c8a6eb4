"""Synthetic low-quality test sets from high-quality faces (``authface degrade``).

Every image gets its own seed, drawn from the run's seed and the file name, so a set does not
depend on which other files are in the folder or on the order they are read, and the same
command writes the same bytes on every machine (OpenCV's resize, filter and codecs are
deterministic for a given build). The degradation is the one Stage II trains with
(:mod:`authface_core.degradation`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..degradation import DegradationConfig, degrade
from ..images import write_png
from .files import IMAGE_SUFFIXES, ImageFileError, list_images, read_rgb

logger = logging.getLogger("authface")

# CelebA-Test as GFPGAN's paper (Wang et al. 2021, section 4.1) synthesises it and BFRffusion /
# AuthFace evaluate on: its Eq. 1 with a Gaussian blur kernel, sigma in [0.1, 10], downsampling
# r in [0.8, 8], noise delta in [0, 20], JPEG q in [60, 100]. "train" is Stage II's training mix
# (isotropic and anisotropic kernels, DegradationConfig's defaults). mild / medium / severe are
# our own thirds of those ranges, for seeing how a method degrades with the input.
PRESETS: dict[str, DegradationConfig] = {
    "celeba-test": DegradationConfig(iso_prob=1.0),
    "train": DegradationConfig(),
    "mild": DegradationConfig(blur_sigma=(0.1, 3.0), downsample_range=(0.8, 2.0), noise_range=(0.0, 5.0),
                              jpeg_range=(85, 100)),
    "medium": DegradationConfig(blur_sigma=(2.0, 6.0), downsample_range=(2.0, 4.0), noise_range=(5.0, 12.0),
                                jpeg_range=(70, 90)),
    "severe": DegradationConfig(blur_sigma=(5.0, 10.0), downsample_range=(4.0, 8.0), noise_range=(12.0, 20.0),
                                jpeg_range=(60, 75)),
}


def image_seed(seed: int, name: str) -> int:
    """The seed of the image named ``name`` in a run with ``seed``: 63 bits of
    sha256("<seed>:<name>"), independent of the platform and of the other files."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def resize_to(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized to ``size`` x ``size``: area averaging to shrink, bicubic to enlarge."""
    if image.shape[:2] == (size, size):
        return image
    shrink = size < max(image.shape[:2])
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interpolation)


def align_largest_face(image: np.ndarray, size: int) -> np.ndarray | None:
    """The largest face of ``image`` FFHQ-aligned to a ``size`` crop, or None without a face."""
    from ..faces.align import align_face
    from ..faces.detect import detect_faces

    faces = detect_faces([image]).faces
    if not faces:
        return None
    crop, _ = align_face(image, max(faces, key=lambda face: face.size), size)
    return crop


@dataclass
class DegradeResult:
    """What a ``make_test_set`` run did: names written, and problems (file: message)."""

    written: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def make_test_set(
    hq_dir: Path,
    out_dir: Path,
    config: DegradationConfig,
    preset: str,
    size: int = 512,
    seed: int = 0,
    align: bool = False,
) -> DegradeResult:
    """Write ``out_dir/gt/NAME.png`` (the HQ face at ``size``), ``out_dir/lq/NAME.png`` (its
    degraded copy, same size) and ``out_dir/degradations.jsonl`` (one line per image: name,
    source, seed, preset and the drawn parameters) for every image in ``hq_dir``, and
    ``out_dir/degradation_settings.json`` (the ranges used and the files left out, with why).

    With ``align`` the largest face of each photo is FFHQ-aligned first (photos without a face
    are reported and left out); otherwise inputs are taken to be aligned crops and resized.
    Unreadable files are reported and left out; the rest of the run goes on.
    """
    if size < 16:
        raise ValueError(f"--size must be at least 16 px, got {size}")
    images, notes = list_images(hq_dir)
    result = DegradeResult(problems=list(notes))
    if not images:
        raise ImageFileError(f"{hq_dir} holds no images (files ending in {', '.join(IMAGE_SUFFIXES)})")
    for sub in ("gt", "lq"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    records = []
    for name, path in images.items():
        try:
            image = read_rgb(path)
        except ImageFileError as err:
            result.problems.append(str(err))
            continue
        if align:
            crop = align_largest_face(image, size)
            if crop is None:
                result.problems.append(f"{path}: no face found to align; left out")
                continue
            image = crop
        # Bicubic warps and resizes overshoot [0, 1]; gt/ is stored as 8-bit levels anyway.
        gt = np.rint(np.clip(resize_to(image, size), 0.0, 1.0) * 255.0) / 255.0
        record: dict[str, float | int | str] = {}
        lq = degrade(gt.astype(np.float32), config, np.random.default_rng(image_seed(seed, name)), record)
        write_png(out_dir / "gt" / f"{name}.png", gt, bits=8)
        write_png(out_dir / "lq" / f"{name}.png", lq, bits=8)
        records.append({"name": name, "source": path.name, "seed": image_seed(seed, name), "preset": preset,
                        "size": size, **record})
        result.written.append(name)
    lines = [json.dumps(record, sort_keys=True) for record in records]
    (out_dir / "degradations.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    settings = {"preset": preset, "seed": seed, "size": size, "align": align, **dataclasses.asdict(config),
                "left_out": result.problems}
    (out_dir / "degradation_settings.json").write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")
    for problem in result.problems:
        logger.warning("%s", problem)
    return result
