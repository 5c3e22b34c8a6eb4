"""Best-of-N restoration: the candidate batch layout, its memory estimate and the pick per face.

Layout: candidate-major. With F faces and N candidates the latent batch holds all faces'
candidate 0, then all faces' candidate 1, ...: item ``k * F + i`` is candidate k of face i. ComfyUI
tiles a smaller conditioning batch (``comfy.utils.repeat_to_batch_size``) and ControlNet hint batch
(``comfy.controlnet.broadcast_image_to``) over the latent batch, so every candidate of face i gets
face i's hint and prompt with no change to either, and the first F items are the plain run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .faces.types import FaceSet
from .noise_keys import NoiseKey, candidate_key

GIB = 1024 ** 3


def candidate_keys(faces: int, candidates: int) -> list[NoiseKey | None]:
    """The noise keys of the candidate-major batch of ``faces`` x ``candidates`` items."""
    if faces < 1 or candidates < 1:
        raise ValueError(f"need at least one face and one candidate, got {faces} faces, {candidates} candidates")
    return [candidate_key(face, k) for k in range(candidates) for face in range(faces)]


def candidate_count(batch: int, faces: int) -> int:
    """N for a candidate batch of ``batch`` items restoring ``faces`` faces; ValueError when the
    batch is not a whole number of candidates per face."""
    if faces < 1 or batch < faces or batch % faces:
        raise ValueError(f"got {batch} restored crops for {faces} faces: connect the decoded candidates "
                         "of the faces given to AuthFace Candidates (a multiple of the face count)")
    return batch // faces


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a sampling run needs and has: weights still to load plus activations per latent
    (for its guidance pair), against what the device has free."""

    items: int
    weight_bytes: int
    activation_bytes_per_item: int
    available_bytes: int

    @property
    def required_bytes(self) -> int:
        return self.weight_bytes + self.items * self.activation_bytes_per_item

    @property
    def fits(self) -> bool:
        return self.required_bytes <= self.available_bytes

    def largest_batch(self) -> int:
        """The most latents that fit next to the weights (0 when not even the weights fit)."""
        spare = self.available_bytes - self.weight_bytes
        return max(0, spare // max(self.activation_bytes_per_item, 1))


def check_candidates_fit(faces: int, candidates: int, estimate: MemoryEstimate) -> None:
    """ValueError with the estimate and the largest N that fits when ``faces`` x ``candidates``
    latents (``estimate.items``) need more memory than the device has free."""
    if estimate.fits:
        return
    largest = estimate.largest_batch() // max(faces, 1)
    advice = (f"use at most {largest} candidates per face" if largest >= 1
              else "restore fewer faces at a time or use a smaller working size")
    raise ValueError(
        f"{candidates} candidates for {faces} faces ({estimate.items} latents) need about "
        f"{estimate.required_bytes / GIB:.1f} GiB (weights {estimate.weight_bytes / GIB:.1f} GiB + "
        f"{estimate.activation_bytes_per_item / GIB:.2f} GiB per latent) but only "
        f"{estimate.available_bytes / GIB:.1f} GiB is free: {advice}.")


@dataclass(frozen=True)
class CandidatePick:
    """The candidate kept for one face: its number, its identity similarity to the reference, the
    embedding's same-person verdict, and the similarities of all the face's candidates."""

    face: int
    candidate: int
    similarity: float
    same_person: bool
    similarities: tuple[float, ...]


def pick_best(similarities: np.ndarray, same_person: np.ndarray) -> list[CandidatePick]:
    """Per face, the candidate with the highest similarity (the first on ties).

    ``similarities`` and ``same_person`` have shape (N, F): candidate k of face i at [k, i]."""
    sims = np.asarray(similarities, dtype=np.float64)
    verdicts = np.asarray(same_person, dtype=bool)
    if sims.ndim != 2 or verdicts.shape != sims.shape:
        raise ValueError(f"expected (candidates, faces) arrays of one shape, got {sims.shape} and {verdicts.shape}")
    picks = []
    for face in range(sims.shape[1]):
        best = int(np.argmax(sims[:, face]))
        picks.append(CandidatePick(face=face, candidate=best, similarity=float(sims[best, face]),
                                   same_person=bool(verdicts[best, face]),
                                   similarities=tuple(float(s) for s in sims[:, face])))
    return picks


@dataclass
class PickedFaceSet(FaceSet):
    """A FaceSet after AuthFace Pick Best: ``picks[i]`` records which candidate face i kept and
    its score. Everything else (faces, alignment, crop size) is the restored faces' own."""

    picks: list[CandidatePick] = field(default_factory=list)


def picked_faces(faces: FaceSet, picks: Sequence[CandidatePick]) -> PickedFaceSet:
    """``faces`` with the picks recorded."""
    return PickedFaceSet(image_sizes=list(faces.image_sizes), faces=list(faces.faces),
                         aligned=list(faces.aligned), crop_size=faces.crop_size, picks=list(picks))
