"""SDXL text conditioning for training captions of any length.

Per encoder (CLIP-L, then OpenCLIP bigG) a caption's tokens are cut into windows of
``max_position_embeddings - 2`` (75) text tokens, each encoded as BOS + tokens + EOS + padding
(the tokenizer's own pad token) in its own 77-token pass; the penultimate hidden states of the
windows are concatenated along the sequence, so a caption of 120 tokens gives 154 positions.
The two encoders' states are concatenated along the features (768 + 1280 = 2048 for SDXL); the
pooled vector is bigG's projected EOS state of the FIRST window. This is how ComfyUI encodes long
prompts (``comfy/sd1_clip.py``: windows of 75 tokens, pooled output of the first), so a model
trained here sees at inference in ComfyUI what it saw in training.

With ``truncate=True`` only the first window is kept (the usual single-window CLIP encoding,
text after 75 tokens is dropped) and the captions that lost tokens are counted.

A batch whose captions need different numbers of windows is padded to the longest with zero
states, and ``mask`` marks the real positions (the UNet's ``encoder_attention_mask``), so each
caption conditions the UNet exactly as it would alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class EncodedText:
    """Encoded captions of a batch.

    ``embeds`` [B, L, D] (L = 77 x most windows in the batch, D = sum of the encoders' hidden
    sizes), ``pooled`` [B, P] (bigG's projection size), ``mask`` [B, L] bool (True = real
    position) or None when every caption has the same number of windows; ``truncated`` counts
    the captions that lost tokens (always 0 unless truncating).
    """

    embeds: Tensor
    pooled: Tensor
    mask: Tensor | None
    truncated: int


def token_windows(tokenizer: Any, text: str, window: int, truncate: bool) -> tuple[list[list[int]], bool]:
    """The 77-position id windows of ``text`` for one tokenizer, and whether text was cut.

    Each window is [BOS] + up to ``window - 2`` text token ids + [EOS] + pad ids to ``window``.
    An empty text gives one window (BOS, EOS, padding).
    """
    ids = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids
    per_window = window - 2
    pieces = [ids[start:start + per_window] for start in range(0, len(ids), per_window)] or [[]]
    cut = truncate and len(pieces) > 1
    if truncate:
        pieces = pieces[:1]
    pad = tokenizer.pad_token_id
    return [
        [tokenizer.bos_token_id, *piece, tokenizer.eos_token_id] + [pad] * (per_window - len(piece))
        for piece in pieces
    ], cut


class TextEncoder:
    """Encodes captions with SDXL's two frozen text encoders (see the module docstring).

    ``tokenizers`` and ``encoders`` are (CLIP-L, bigG) pairs: transformers ``CLIPTokenizer`` and
    ``CLIPTextModel`` / ``CLIPTextModelWithProjection``, already on their device.
    """

    def __init__(self, tokenizers: Sequence[Any], encoders: Sequence[Any], truncate: bool = False) -> None:
        if len(tokenizers) != 2 or len(encoders) != 2:
            raise ValueError("SDXL conditioning needs two tokenizers and two text encoders (CLIP-L, bigG)")
        self.tokenizers = list(tokenizers)
        self.encoders = list(encoders)
        self.truncate = truncate

    @property
    def device(self) -> torch.device:
        return next(self.encoders[0].parameters()).device

    def _windows(self, caption: str) -> tuple[list[list[list[int]]], bool]:
        """Per encoder the caption's windows, both padded with empty windows to the same count."""
        per_encoder, cut = [], False
        for tokenizer, encoder in zip(self.tokenizers, self.encoders, strict=True):
            windows, was_cut = token_windows(tokenizer, caption, encoder.config.max_position_embeddings, self.truncate)
            per_encoder.append(windows)
            cut = cut or was_cut
        count = max(len(w) for w in per_encoder)
        for tokenizer, encoder, windows in zip(self.tokenizers, self.encoders, per_encoder, strict=True):
            empty, _ = token_windows(tokenizer, "", encoder.config.max_position_embeddings, False)
            windows.extend(empty * (count - len(windows)))
        return per_encoder, cut

    @torch.no_grad()
    def encode_one_by_one(self, captions: Sequence[str]) -> list[tuple[Tensor, Tensor, bool]]:
        """Per caption (embeds [L_i, D], pooled [P], truncated) on the encoders' device."""
        windows = [self._windows(caption) for caption in captions]
        counts = [len(w[0][0]) for w in windows]
        hidden, pooled = [], None
        for index, encoder in enumerate(self.encoders):
            ids = torch.tensor([row for w in windows for row in w[0][index]], device=self.device)
            output = encoder(ids, output_hidden_states=True)
            hidden.append(output.hidden_states[-2])
            if index == 1:
                pooled = output.text_embeds
        states = torch.cat(hidden, dim=-1)
        result, start = [], 0
        for (_, cut), count in zip(windows, counts, strict=True):
            block = states[start:start + count]
            result.append((block.reshape(-1, block.shape[-1]), pooled[start], cut))
            start += count
        return result

    def encode(self, captions: Sequence[str]) -> EncodedText:
        """The batch conditioning of ``captions`` (see :class:`EncodedText`)."""
        if not captions or not all(isinstance(c, str) for c in captions):
            raise ValueError("captions must be a non-empty list of strings")
        return collate_text(self.encode_one_by_one(captions))


def collate_text(items: Sequence[tuple[Tensor, Tensor, bool]]) -> EncodedText:
    """Stack per-caption (embeds [L_i, D], pooled [P], truncated) into an :class:`EncodedText`,
    zero-padding shorter sequences and masking them out."""
    longest = max(item[0].shape[0] for item in items)
    width = items[0][0].shape[1]
    embeds = items[0][0].new_zeros((len(items), longest, width))
    mask = torch.zeros((len(items), longest), dtype=torch.bool, device=embeds.device)
    for row, (states, _, _) in enumerate(items):
        embeds[row, : states.shape[0]] = states
        mask[row, : states.shape[0]] = True
    pooled = torch.stack([item[1] for item in items])
    uniform = all(item[0].shape[0] == longest for item in items)
    return EncodedText(embeds, pooled, None if uniform else mask, sum(bool(item[2]) for item in items))
