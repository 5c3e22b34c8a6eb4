"""Identity scores on real photos (dlib's embedding), reference photos, and pick-best on real faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from authface_core.candidates import pick_best, picked_faces
from authface_core.faces.types import FaceSet
from authface_core.identity import load_embedder
from authface_core.identity_scores import SAME_COLOUR, report_lines, score_against_references, scored_crop
from authface_core.reference_faces import ReferenceFace, reference_face, reference_faces
from identity_photos import OTHER_PERSON, SAME_PERSON, read_photo

SIZE = 256


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def people(hanks_photo: Path) -> dict[str, ReferenceFace]:
    """Aligned faces of three photos of Barack Obama, one of Joe Biden, one of Tom Hanks."""
    faces = {name: reference_face(read_photo(name), SIZE) for name in (*SAME_PERSON, OTHER_PERSON)}
    faces["hanks"] = reference_face(read_rgb(hanks_photo), SIZE)
    return faces


def score(embedder, crops: list[ReferenceFace], refs: list[ReferenceFace]):
    return score_against_references(embedder, [c.crop for c in crops], [r.crop for r in refs],
                                    [c.aligned.landmarks for c in crops], [r.aligned.landmarks for r in refs])


def test_same_person_ranks_above_different_people(people: dict[str, ReferenceFace]) -> None:
    """Three genuinely different photos of one man (different days, lighting, expression) score
    higher against each other than against two other men, and dlib calls them the same person."""
    embedder = load_embedder("dlib")
    others = [people[OTHER_PERSON], people["hanks"]]
    for name in SAME_PERSON:
        mates = [people[m] for m in SAME_PERSON if m != name]
        same = score(embedder, mates, [people[name]])
        different = score(embedder, others, [people[name]])
        print(name, "same:", [round(s.similarity, 3) for s in same], "other:",
              [round(s.similarity, 3) for s in different])
        assert min(s.similarity for s in same) > max(s.similarity for s in different)
        assert all(s.same_person for s in same) and not any(s.same_person for s in different)


def test_pick_best_keeps_the_real_match_per_face(people: dict[str, ReferenceFace]) -> None:
    """Two faces, three candidates each (candidate-major); face 0's reference is Obama, face 1's
    Biden. The pick is the candidate showing the reference's person, and the record says so."""
    embedder = load_embedder("dlib")
    obama, obama2, biden, hanks = people["obama.jpg"], people["obama2.jpg"], people[OTHER_PERSON], people["hanks"]
    candidates = [hanks, obama, biden, hanks, obama2, obama]  # k * 2 + i
    scores = score(embedder, candidates, [obama, biden])
    similarities = np.array([s.similarity for s in scores]).reshape(3, 2)
    same = np.array([s.same_person for s in scores]).reshape(3, 2)
    picks = pick_best(similarities, same)
    assert (picks[0].candidate, picks[1].candidate) == (2, 1)
    assert picks[0].similarity == similarities[:, 0].max() and picks[0].same_person
    record = picked_faces(FaceSet(image_sizes=[(1, 1)], crop_size=SIZE), picks)
    assert [p.candidate for p in record.picks] == [2, 1]


def test_reference_photo_with_several_faces_names_the_face_used(t1_photo: Path) -> None:
    ref = reference_face(read_rgb(t1_photo), SIZE)
    assert "has 6 faces; using the largest, face" in ref.note
    assert ref.crop.shape == (SIZE, SIZE, 3)


def test_reference_photo_without_a_face_is_refused() -> None:
    noise = np.random.default_rng(0).random((200, 300, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"the reference photo \(300x200\) has no face"):
        reference_face(noise, SIZE)
    with pytest.raises(ValueError, match="got 2 reference photos for 3 faces"):
        reference_faces([noise, noise], 3, SIZE)


def test_scored_crop_and_report(people: dict[str, ReferenceFace]) -> None:
    crop = people["obama.jpg"].crop
    labelled = scored_crop(crop, "face 0", 0.93, True)
    changed = np.any(np.abs(labelled - np.clip(crop, 0, 1)) > 0.01, axis=2)  # beyond 8-bit rounding
    assert 0.005 < changed.mean() < 0.2 and not changed[SIZE // 2:].any(), "text belongs in the top of the crop"
    greenish = np.all(np.abs(labelled * 255 - SAME_COLOUR) < 40, axis=2)
    assert greenish.sum() > 20
    assert report_lines(["face 0"], [0.93], [True], ["note"]) == "face 0: id 0.930 same\nnote"
