"""Keyed initial noise: each latent of a batch may draw its noise from a stream named by a key.

A plain ComfyUI batch draws all its noise from one seeded stream, so an item's noise depends on
its position and on how many items come before it. A key names the stream of one item instead:
the same (seed, key) always gives the same noise, whatever the batch around it. Items without a
key (``None``) keep the plain stream: they take, in order, the items of the noise a plain batch
of that many latents would get, so a batch without keys is exactly today's noise.

A key is a tuple of non-negative ints whose first element names its kind, so keys of different
kinds never share a stream (numpy's ``SeedSequence`` pads its entropy with zeros, so ``(a, b)``
and ``(a, b, 0)`` would otherwise collide):

- ``(CANDIDATE, face, candidate)``: candidate ``candidate`` of face ``face`` (best-of-N);
- ``(TRACK, track_id)``: one noise for every frame of a face track (video).

The latent dict carries the keys under ``NOISE_KEYS`` (ComfyUI's samplers pass extra entries of
the latent dict through to the NOISE object's ``generate_noise``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

NOISE_KEYS = "authface_noise_keys"

CANDIDATE = 1
TRACK = 2

NoiseKey = tuple[int, ...]


def candidate_key(face: int, candidate: int) -> NoiseKey | None:
    """The key of candidate ``candidate`` of face ``face``. Candidate 0 has none: it keeps the
    plain stream, so it is exactly what a run without candidates gives."""
    if face < 0 or candidate < 0:
        raise ValueError(f"face and candidate must be >= 0, got face {face}, candidate {candidate}")
    return None if candidate == 0 else (CANDIDATE, face, candidate)


def track_key(track_id: int) -> NoiseKey:
    """The key shared by every frame of face track ``track_id``."""
    if track_id < 0:
        raise ValueError(f"track id must be >= 0, got {track_id}")
    return (TRACK, track_id)


def key_seed(seed: int, key: NoiseKey) -> int:
    """The 64-bit seed of ``key``'s stream under ``seed``: numpy's ``SeedSequence`` hash of the
    entropy list [seed, *key] (nearby seeds and keys give unrelated streams), the same on every
    machine."""
    if seed < 0 or any(k < 0 for k in key):
        raise ValueError(f"seed and key entries must be >= 0, got seed {seed}, key {key}")
    return int(np.random.SeedSequence([int(seed), *map(int, key)]).generate_state(1, np.uint64)[0])


def keyed_noise(plain: Callable[[int], torch.Tensor], seed: int, keys: Sequence[NoiseKey | None],
                item_shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """Noise of shape (len(keys), *item_shape): item j from ``key_seed(seed, keys[j])``'s stream,
    or, for ``None`` keys, the next item of ``plain(count)``, the host's plain noise for ``count``
    latents under ``seed`` (called once, with the number of ``None`` keys).

    Keyed items are drawn like ComfyUI draws noise: float32 normal samples from a CPU generator,
    then cast to ``dtype``. Items with equal keys get equal noise."""
    plain_count = sum(key is None for key in keys)
    plain_items = iter(plain(plain_count)) if plain_count else iter(())
    items = []
    for key in keys:
        if key is None:
            items.append(next(plain_items).to(dtype))
            continue
        generator = torch.Generator(device="cpu").manual_seed(key_seed(seed, key))
        items.append(torch.randn(tuple(item_shape), dtype=torch.float32, generator=generator).to(dtype))
    return torch.stack(items)
