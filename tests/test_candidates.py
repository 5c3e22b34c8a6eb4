"""Best-of-N without a host: keyed noise, the candidate layout, the memory refusal, the pick."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from authface_core.candidates import (
    MemoryEstimate,
    PickedFaceSet,
    candidate_count,
    candidate_keys,
    check_candidates_fit,
    pick_best,
    picked_faces,
)
from authface_core.faces.types import FaceSet
from authface_core.noise_keys import key_seed, keyed_noise, track_key

ITEM = (4, 9, 9)  # 9x9 latent: 324 values, not a multiple of 16, where torch's randn prefixes differ


def plain_noise(seed: int):
    """ComfyUI's prepare_noise for a plain batch (comfy/sample.py): one randn from torch.manual_seed."""
    def draw(count: int) -> torch.Tensor:
        return torch.randn((count, *ITEM), generator=torch.manual_seed(seed))
    return draw


def candidates_noise(seed: int, faces: int, candidates: int) -> torch.Tensor:
    return keyed_noise(plain_noise(seed), seed, candidate_keys(faces, candidates), ITEM, torch.float32)


def test_one_candidate_is_the_plain_batch_noise() -> None:
    for faces in (1, 3):
        expected = torch.randn((faces, *ITEM), generator=torch.manual_seed(7))
        assert torch.equal(candidates_noise(7, faces, 1), expected)


def test_candidate_k_of_face_i_keeps_its_noise_whatever_n() -> None:
    """Candidate-major layout: item k*F + i. The plain candidate 0 block equals the N = 1 run; a
    keyed candidate keeps its noise when N (and, for k >= 1, the face count) changes."""
    three = candidates_noise(11, 2, 3).view(3, 2, *ITEM)
    five = candidates_noise(11, 2, 5).view(5, 2, *ITEM)
    assert torch.equal(three, five[:3])
    assert torch.equal(three[0], candidates_noise(11, 2, 1))
    four_faces = candidates_noise(11, 4, 3).view(3, 4, *ITEM)
    assert torch.equal(three[1:], four_faces[1:, :2])
    assert not torch.equal(candidates_noise(12, 2, 3), candidates_noise(11, 2, 3))


def test_candidates_are_distinct_unit_normal_noise() -> None:
    noise = candidates_noise(0, 2, 4)
    flat = noise.flatten(1)
    for a in range(flat.shape[0]):
        for b in range(a + 1, flat.shape[0]):
            assert abs(float(torch.corrcoef(flat[[a, b]])[0, 1])) < 0.2
    assert abs(float(noise.mean())) < 0.05 and abs(float(noise.std()) - 1.0) < 0.05


def test_key_kinds_do_not_share_streams() -> None:
    seeds = {key_seed(3, (1, 0, 1)), key_seed(3, track_key(0)), key_seed(3, (1, 0, 1, 0)), key_seed(4, (1, 0, 1))}
    assert len(seeds) == 4
    same = keyed_noise(plain_noise(3), 3, [track_key(5), None, track_key(5)], ITEM, torch.float32)
    assert torch.equal(same[0], same[2]) and not torch.equal(same[0], same[1])
    with pytest.raises(ValueError, match=">= 0"):
        key_seed(-1, (1, 0, 1))


def test_candidate_count_checks_the_batch() -> None:
    assert candidate_count(6, 2) == 3
    with pytest.raises(ValueError, match="multiple of the face count"):
        candidate_count(5, 2)


def test_memory_refusal_names_the_estimate_and_what_fits() -> None:
    gib = 1024 ** 3
    fits = MemoryEstimate(items=8, weight_bytes=2 * gib, activation_bytes_per_item=gib, available_bytes=12 * gib)
    check_candidates_fit(2, 4, fits)
    too_many = MemoryEstimate(items=40, weight_bytes=2 * gib, activation_bytes_per_item=gib, available_bytes=12 * gib)
    with pytest.raises(ValueError, match=r"20 candidates for 2 faces \(40 latents\) need about 42.0 GiB.*"
                                         r"12.0 GiB is free: use at most 5 candidates per face"):
        check_candidates_fit(2, 20, too_many)
    nothing = MemoryEstimate(items=2, weight_bytes=20 * gib, activation_bytes_per_item=gib, available_bytes=12 * gib)
    with pytest.raises(ValueError, match="restore fewer faces"):
        check_candidates_fit(1, 2, nothing)


def test_pick_best_keeps_the_highest_score_per_face() -> None:
    similarities = np.array([[0.2, 0.9], [0.7, 0.1], [0.5, 0.9]])  # (candidates, faces)
    same = similarities > 0.6
    picks = pick_best(similarities, same)
    assert [(p.face, p.candidate) for p in picks] == [(0, 1), (1, 0)]
    assert picks[0].similarity == 0.7 and picks[0].same_person
    assert picks[1].similarities == (0.9, 0.1, 0.9)
    faces = picked_faces(FaceSet(image_sizes=[(10, 10)], crop_size=64), picks)
    assert isinstance(faces, PickedFaceSet) and isinstance(faces, FaceSet)
    assert faces.picks == picks and faces.crop_size == 64
