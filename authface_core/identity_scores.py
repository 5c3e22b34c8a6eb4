"""Identity scores of restored faces against their references, and the scores made visible."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .faces.draw import label_image
from .identity import FaceEmbedder, IdentityComparison


def score_against_references(
    embedder: FaceEmbedder,
    crops: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    crop_landmarks: Sequence[np.ndarray] | None = None,
    reference_landmarks: Sequence[np.ndarray] | None = None,
) -> list[IdentityComparison]:
    """Crop j against reference ``j % len(references)``: with F references and a candidate-major
    batch of N x F crops (``authface_core.candidates``) every candidate of face i meets reference
    i. Each reference is embedded once. Landmarks: one (68, 2) array per crop (or per reference)
    in its pixels, None to let the embedder find them."""
    if not references or len(crops) % len(references):
        raise ValueError(f"got {len(crops)} crops for {len(references)} references: need a whole number "
                         "of crops per reference")
    repeats = len(crops) // len(references)
    reference_embeddings = embedder.embed(references, reference_landmarks)
    return embedder.compare_embeddings(embedder.embed(crops, crop_landmarks),
                                       np.tile(reference_embeddings, (repeats, 1)))

SAME_COLOUR = (80, 255, 80)  # RGB: same person at the embedding's threshold
OTHER_COLOUR = (255, 80, 80)


def score_text(similarity: float, same_person: bool) -> str:
    return f"id {similarity:.3f} {'same' if same_person else 'DIFFERENT'}"


def scored_crop(crop: np.ndarray, title: str, similarity: float, same_person: bool) -> np.ndarray:
    """``crop`` with ``title`` and its score written top-left, green when the embedding calls it
    the same person, red otherwise."""
    colour = SAME_COLOUR if same_person else OTHER_COLOUR
    return label_image(crop, [title, score_text(similarity, same_person)], colour)


def report_lines(titles: Sequence[str], similarities: Sequence[float], same_person: Sequence[bool],
                 notes: Sequence[str] = ()) -> str:
    """One line per scored crop, then the notes (which reference face was used)."""
    lines = [f"{title}: {score_text(s, v)}" for title, s, v in zip(titles, similarities, same_person)]
    return "\n".join([*lines, *notes])
