"""The released method's prompt window: one 77-token CLIP window per prompt and encoder.

The reference pipeline tokenizes each prompt with truncation to CLIP's 77 positions: BOS, the
first 75 text tokens, EOS, then padding. Long-prompt chunkers (ComfyUI's among them) instead
split the text over several windows and may move a whole word to the next window early, which
changes the embedding (docs/faithfulness.md, cause 1). This module rebuilds the single window from
any chunked token list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CLIP_WINDOW = 77


def single_window(chunks: Sequence[Sequence[tuple[Any, ...]]], start_token: int, end_token: int,
                  pad_token: int, length: int = CLIP_WINDOW) -> list[tuple[Any, float, int]]:
    """One window of ``length`` (token, weight, word_id) entries from chunked tokens.

    ``chunks`` are windows of (token, weight, word_id) where word_id 0 marks the tokenizer's own
    start/end/pad entries; the text tokens keep their order across chunks. The result is
    [start] + first ``length - 2`` text tokens + [end] + [pad]... with weight 1.0 on the added
    entries. Raises ValueError when the entries carry no word ids.
    """
    text_tokens = []
    for chunk in chunks:
        for entry in chunk:
            if len(entry) < 3:
                raise ValueError("tokens must carry word ids: tokenize with return_word_ids=True")
            if entry[2] != 0:
                text_tokens.append(tuple(entry))
    window = [(start_token, 1.0, 0), *text_tokens[: length - 2], (end_token, 1.0, 0)]
    window += [(pad_token, 1.0, 0)] * (length - len(window))
    return window
