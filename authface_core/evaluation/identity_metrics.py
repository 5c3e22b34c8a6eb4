"""Identity and landmark metrics between restored faces and their references.

Both are aligned face crops of one size (what ``authface restore --aligned`` and ``authface
degrade`` write). Landmarks are dlib's 68 points found on each crop
(:func:`~authface_core.identity.landmarks.crop_landmarks`); the embedders re-align from them.
LMD is the mean Euclidean distance between corresponding landmarks, in pixels of the crop (the
landmark distance of face restoration papers, e.g. PSFRGAN / RestoreFormer++ "LMD").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..identity import FaceEmbedder, IdentityComparison
from ..identity.landmarks import crop_landmarks


def landmark_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance in pixels between two (68, 2) landmark sets."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=1).mean())


class IdentityScorer:
    """Embeddings and landmarks of face crops, references cached by name across methods."""

    def __init__(self, embedder: FaceEmbedder) -> None:
        self.embedder = embedder
        self._references: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def reference(self, names: Sequence[str], crops: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(embedding, landmarks) of each reference crop, computed once per name."""
        todo = [i for i, name in enumerate(names) if name not in self._references]
        if todo:
            landmarks = [crop_landmarks(crops[i]) for i in todo]
            embeddings = self.embedder.embed([crops[i] for i in todo], landmarks)
            for i, embedding, lm in zip(todo, embeddings, landmarks, strict=True):
                self._references[names[i]] = (embedding, lm)
        return [self._references[name] for name in names]

    def score(
        self, names: Sequence[str], restored: Sequence[np.ndarray], references: Sequence[np.ndarray]
    ) -> tuple[list[IdentityComparison], list[float]]:
        """Identity comparisons and LMD of restored[i] against references[i] (named names[i])."""
        ref = self.reference(names, references)
        landmarks = [crop_landmarks(crop) for crop in restored]
        embeddings = self.embedder.embed(restored, landmarks)
        rows = self.embedder.compare_embeddings(embeddings, np.stack([e for e, _ in ref]))
        lmd = [landmark_distance(lm, ref_lm) for lm, (_, ref_lm) in zip(landmarks, ref, strict=True)]
        return rows, lmd
