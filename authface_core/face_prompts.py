"""Per-face attribute prompts: one text per face index of a batch (MGFR's attribute text prompts).

MGFR (Tao et al., ICLR 2025, "Overcoming False Illusions in Real-World Face Restoration with
Multi-Modal Guided Diffusion Model") guides restoration with attribute prompts such as "a woman
with blue eyes". Here the user writes one line per face, ``INDEX: TEXT``; faces without a line keep
the release's prompt. The text of a line goes *before* the release's positive prompt because the
release encodes one 77-token window (``token_window.py``) and its positive prompt already fills 62
of the 75 text positions: attributes written after it would be cut.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch

from authface_core.errors import AuthFaceError
from authface_core.prompts import POSITIVE_PROMPT

_LINE = re.compile(r"^\s*(\d+)\s*:\s*(.*?)\s*$")


class FacePromptError(AuthFaceError, ValueError):
    """The per-face prompt text cannot be read or names a face that is not in the batch."""


def parse_face_prompts(text: str, face_count: int) -> dict[int, str]:
    """Face index -> attribute text, from lines ``INDEX: TEXT``.

    Blank lines and lines starting with ``#`` are ignored. Indices count the faces of the batch
    from 0 (the order of AuthFace Align Faces' crops). Raises FacePromptError for a line without an
    index, an empty text, an index given twice, or an index outside ``0 .. face_count - 1``.
    """
    prompts: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise FacePromptError(f"line {number} ({line.strip()!r}) has no face index: write one line per "
                                  "face as 'INDEX: text', e.g. '0: a woman with blue eyes'")
        index, attributes = int(match.group(1)), match.group(2)
        if not attributes:
            raise FacePromptError(f"line {number} gives face {index} no text: write a prompt after the "
                                  "colon or delete the line (the face then keeps the release's prompt)")
        if index in prompts:
            raise FacePromptError(f"face {index} has two lines ({number} and an earlier one): keep one")
        if index >= face_count:
            raise FacePromptError(f"line {number} names face {index}, but the batch has {face_count} "
                                  f"face(s), numbered 0 to {face_count - 1}: see the detection preview")
        prompts[index] = attributes
    return prompts


def face_prompt(attributes: str, with_release_prompt: bool) -> str:
    """The prompt one face is encoded with: its attributes, then the release's positive prompt."""
    return f"{attributes}, {POSITIVE_PROMPT}" if with_release_prompt else attributes


def _repeat_tokens(cond: torch.Tensor, length: int) -> torch.Tensor:
    # Cross-attention over a token sequence repeated k times gives the same output (every key and
    # value appears k times, the softmax weights split evenly): ComfyUI pads conds of different
    # lengths this way when it batches them (comfy/conds.py, CONDCrossAttn.concat).
    return cond.repeat(1, length // cond.shape[1], 1)


def batch_conditionings(base: list, per_face: Sequence[list | None]) -> list:
    """One conditioning whose batch row i is face i's: ``per_face[i]``, or ``base`` where it is None.

    A conditioning is ComfyUI's list of ``[cond, extras]`` entries: ``cond`` a (1, tokens, channels)
    tensor, ``extras`` a dict (``pooled_output`` (1, channels), size conditioning, scheduling keys,
    a ControlNet). Every face's conditioning must have ``base``'s entries (the same CLIP and schedule
    give that). Entry j of the result keeps ``base``'s entry j extras, with ``cond`` and every tensor
    extra concatenated over the faces in order. Token counts that differ (long prompts) are brought
    to their least common multiple by repetition, which leaves attention unchanged. Samplers repeat a
    conditioning to the latent batch only when its batch is smaller, so a batch of exactly one row per
    face conditions each face on its own text (comfy/utils.py, repeat_to_batch_size).
    """
    if not per_face:
        raise ValueError("no conditioning to batch: the batch has no face")
    faces = [base if conditioning is None else conditioning for conditioning in per_face]
    if any(len(conditioning) != len(base) for conditioning in faces):
        raise FacePromptError("a face's prompt encodes to a different number of entries than the positive "
                              "conditioning (scheduled hooks differ): use the CLIP that made the positive")
    batched = []
    for j, (base_cond, base_extras) in enumerate(base):
        entries = [conditioning[j] for conditioning in faces]
        if base_cond.shape[0] != 1 or any(entry[0].shape[0] != 1 for entry in entries):
            raise FacePromptError("the positive conditioning is already a batch: connect AuthFace "
                                  "Conditioning's positive output directly")
        length = math.lcm(*(entry[0].shape[1] for entry in entries))
        cond = torch.cat([_repeat_tokens(entry[0], length) for entry in entries])
        extras = dict(base_extras)
        for key, value in base_extras.items():
            if not isinstance(value, torch.Tensor):
                continue
            if any(not isinstance(entry[1].get(key), torch.Tensor) for entry in entries):
                raise FacePromptError(f"a face's prompt encodes without '{key}', which the positive "
                                      "conditioning has: use the CLIP that made the positive")
            extras[key] = torch.cat([entry[1][key] for entry in entries])
        batched.append([cond, extras])
    return batched
