"""What every face embedder offers, and pairwise identity comparison.

An embedder turns face crops into identity vectors; two vectors are compared with cosine
similarity (the score users see, the same for every embedder) and with the embedder's own
distance, against the threshold its authors documented for "same person".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..faces.align import check_rgb_image


@dataclass(frozen=True)
class IdentityComparison:
    """One pair of faces compared.

    ``similarity``: cosine similarity of the two embeddings in [-1, 1], higher = more alike.
    ``distance``: the embedder's own distance (``FaceEmbedder.distance_name``: dlib's Euclidean
    distance, or for ArcFace the angle in degrees, the "IDS"/"Deg." of face restoration papers).
    ``same_person``: the pair passes the embedder's documented same-person threshold.
    """

    similarity: float
    distance: float
    same_person: bool


class FaceEmbedder(ABC):
    """Face crops -> identity embeddings.

    Attributes: ``name``; ``dimension`` of the embeddings; ``distance_name`` (what
    ``IdentityComparison.distance`` holds); ``threshold_metric`` ("distance" or "similarity")
    and ``same_person_threshold``: a pair is the same person when its distance is below, or its
    similarity above, the threshold; ``threshold_source``: where that threshold comes from.
    """

    name: str
    dimension: int
    distance_name: str
    threshold_metric: str
    same_person_threshold: float
    threshold_source: str

    def embed(
        self, crops: Sequence[np.ndarray], landmarks: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """(N, dimension) float32 embeddings of ``crops`` (each HxWx3 float32 RGB in [0, 1],
        typically an aligned face crop of any size). ``landmarks``: one (68, 2) array per crop in
        crop pixels; without them the embedder finds the landmarks itself (see
        :func:`~authface_core.identity.landmarks.crop_landmarks`). Each crop is re-aligned to
        the embedder's own template. Raises ValueError on bad crops or landmarks.
        """
        images = [check_rgb_image(crop, f"face crop {i}") for i, crop in enumerate(crops)]
        if landmarks is None:
            from .landmarks import crop_landmarks

            points = [crop_landmarks(image) for image in images]
        else:
            points = [np.asarray(lm, dtype=np.float64) for lm in landmarks]
            if len(points) != len(images):
                raise ValueError(f"got {len(images)} crops but {len(points)} landmark arrays")
            for i, lm in enumerate(points):
                if lm.shape != (68, 2):
                    raise ValueError(f"landmarks {i} must have shape (68, 2), got {lm.shape}")
        if not images:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.asarray(self._embed(images, points), dtype=np.float32)

    @abstractmethod
    def _embed(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        """Embeddings of checked crops with their (68, 2) landmarks."""

    @abstractmethod
    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The embedder's own distance between rows a[i] and b[i] (``distance_name``)."""

    def compare_embeddings(self, a: np.ndarray, b: np.ndarray) -> list[IdentityComparison]:
        """Rows a[i] vs b[i] of two (N, dimension) embedding arrays."""
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"embeddings must be two (N, D) arrays of one shape, got {a.shape} and {b.shape}")
        similarity = cosine_similarity(a, b)
        distance = self.distances(a, b)
        if self.threshold_metric == "distance":
            same = distance < self.same_person_threshold
        else:
            same = similarity > self.same_person_threshold
        return [
            IdentityComparison(float(s), float(d), bool(k))
            for s, d, k in zip(similarity, distance, same, strict=True)
        ]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays, clipped to [-1, 1]; 0 for a zero row."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("nd,nd->n", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.clip(values, -1.0, 1.0)


def compare(
    embedder: FaceEmbedder,
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    landmarks_a: Sequence[np.ndarray] | None = None,
    landmarks_b: Sequence[np.ndarray] | None = None,
) -> list[IdentityComparison]:
    """Face crops a[i] vs b[i] (see :meth:`FaceEmbedder.embed`), one comparison per pair.

    Raises ValueError when the two sequences differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"compare needs pairs: got {len(a)} and {len(b)} crops")
    return embedder.compare_embeddings(embedder.embed(a, landmarks_a), embedder.embed(b, landmarks_b))
