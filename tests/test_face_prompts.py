"""Per-face prompt lines and the batching of per-face conditionings (no host needed)."""

from __future__ import annotations

import pytest
import torch

from authface_core.face_prompts import FacePromptError, batch_conditionings, face_prompt, parse_face_prompts
from authface_core.prompts import POSITIVE_PROMPT


def test_lines_name_faces_by_index() -> None:
    text = "# attributes\n 1 : a woman with blue eyes \n\n0:an old man"
    assert parse_face_prompts(text, 3) == {1: "a woman with blue eyes", 0: "an old man"}
    assert parse_face_prompts("", 2) == {}


@pytest.mark.parametrize(("text", "message"), [
    ("a woman with blue eyes", "has no face index"),
    ("0:", "no text"),
    ("0: a\n0: b", "two lines"),
    ("2: a child", "batch has 2 face"),
])
def test_bad_lines_are_refused_with_the_fix(text: str, message: str) -> None:
    with pytest.raises(FacePromptError, match=message):
        parse_face_prompts(text, 2)


def test_attributes_come_before_the_release_prompt() -> None:
    assert face_prompt("freckles", True) == f"freckles, {POSITIVE_PROMPT}"
    assert face_prompt("freckles", False) == "freckles"


def _conditioning(tokens: int, seed: int, control: object = None) -> list:
    generator = torch.Generator().manual_seed(seed)
    extras = {"pooled_output": torch.randn(1, 8, generator=generator), "width": 64, "height": 64}
    if control is not None:
        extras["control"] = control
    return [[torch.randn(1, tokens, 16, generator=generator), extras]]


def test_batch_rows_are_the_faces_and_the_base_keeps_its_extras() -> None:
    control = object()
    base = _conditioning(77, 0, control)
    face1 = _conditioning(154, 1)
    [[cond, extras]] = batch_conditionings(base, [None, face1, None])
    assert cond.shape == (3, 154, 16) and extras["pooled_output"].shape == (3, 8)
    assert torch.equal(cond[0], base[0][0][0].repeat(2, 1)) and torch.equal(cond[2], cond[0])
    assert torch.equal(cond[1], face1[0][0][0])
    assert torch.equal(extras["pooled_output"][1], face1[0][1]["pooled_output"][0])
    assert extras["control"] is control and extras["width"] == 64
    # Repeating the tokens leaves cross-attention unchanged (the reason long prompts may be batched).
    query = torch.randn(1, 5, 16)
    short, long = base[0][0], cond[0:1]
    attend = torch.nn.functional.scaled_dot_product_attention
    torch.testing.assert_close(attend(query, short, short), attend(query, long, long))


def test_conditionings_that_do_not_line_up_are_refused() -> None:
    base = _conditioning(77, 0)
    with pytest.raises(FacePromptError, match="different number of entries"):
        batch_conditionings(base, [base + base])
    batched = [[torch.zeros(2, 77, 16), base[0][1]]]
    with pytest.raises(FacePromptError, match="already a batch"):
        batch_conditionings(batched, [None])
