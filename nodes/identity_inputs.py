"""Inputs shared by the identity nodes: the embedder choice and the reference faces."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from comfy_api.v0_0_2 import io

from authface_core.faces.types import FaceSet
from authface_core.identity import load_embedder
from authface_core.reference_faces import reference_faces

from .model_paths import insightface_root
from .runtime import images_to_numpy

log = logging.getLogger("authface")

EMBEDDERS = ["dlib", "arcface_buffalo_l", "arcface_antelopev2"]
REFERENCE_KINDS = ["aligned_crops", "photo"]


def embedder_input() -> io.Combo.Input:
    return io.Combo.Input("embedder", options=EMBEDDERS, default="dlib",
                          tooltip="dlib: dlib's face recognition ResNet (shipped, offline; same person below "
                          "distance 0.6); arcface_*: insightface's ArcFace from models/insightface/models/<pack>/")


def reference_inputs() -> list:
    return [
        io.Image.Input("reference", tooltip="aligned_crops: the low-quality aligned faces (one per face, or one "
                       "for all); photo: a photo of the person (one for every face, or one per face)"),
        io.Combo.Input("reference_kind", options=REFERENCE_KINDS, default="aligned_crops",
                       tooltip="photo: the reference is detected and aligned like the faces (largest face used)"),
    ]


def make_embedder(name: str):
    if name.startswith("arcface_"):
        pack = name.removeprefix("arcface_")
        return load_embedder("arcface", insightface_root=insightface_root(pack), pack=pack)
    return load_embedder(name)


@dataclass(frozen=True)
class References:
    """One reference crop per face, their 68 landmarks in crop pixels (None: the embedder finds
    them), and notes on which face of a reference photo was used."""

    crops: list[np.ndarray]
    landmarks: list[np.ndarray] | None
    notes: list[str]


def rescaled(points: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Crop-pixel ``points`` of a ``from_size`` crop in a ``to_size`` crop of the same square
    (pixel centres at integers, so x maps to (x + 0.5) s - 0.5)."""
    return (points + 0.5) * (to_size / from_size) - 0.5


def crop_landmarks(faces: FaceSet, size: int) -> list[np.ndarray] | None:
    """The aligned faces' 68 landmarks in ``size`` crops, or None when ``faces`` has no alignment."""
    if not faces.aligned or not faces.crop_size:
        return None
    return [rescaled(a.landmarks, faces.crop_size, size) for a in faces.aligned]


def references(reference: torch.Tensor, kind: str, count: int, size: int,
               landmarks: list[np.ndarray] | None) -> References:
    """The references of ``count`` faces for ``size`` crops; ``landmarks`` are the faces' own (in
    ``size`` crops, or None), which aligned reference crops share when there is one per face."""
    arrays = [a[..., :3] for a in images_to_numpy(reference)]
    if kind == "photo":
        found = reference_faces(arrays, count, size)
        notes = list(dict.fromkeys(ref.note for ref in found))
        for note in notes:
            log.info("AuthFace: %s", note)
        return References([ref.crop for ref in found], [ref.aligned.landmarks for ref in found], notes)
    if len(arrays) not in (1, count):
        raise ValueError(f"got {len(arrays)} reference crops for {count} faces: connect the aligned faces that "
                         "were restored (or one crop for all), or set reference_kind to photo")
    height, width = arrays[0].shape[:2]
    if height != width:
        raise ValueError(f"aligned reference crops must be square, got {width}x{height}: for a photo of the "
                         "person set reference_kind to photo")
    if len(arrays) == 1:
        return References(arrays * count, None, [])
    return References(arrays, None if landmarks is None else [rescaled(lm, size, width) for lm in landmarks], [])
