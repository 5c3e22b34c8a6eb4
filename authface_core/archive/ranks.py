"""Splitting an archive between processes, and the seeds that make the split invisible.

One process per GPU (``torchrun``, ``accelerate launch``, any launcher that sets ``RANK`` and
``WORLD_SIZE``, also across machines) restores a fixed share of the photos with no communication:
every world-th group of consecutive photos (:func:`make_groups`), a function of the sorted list
of relative paths, the group size, the rank and the world size only. The output folder is the
only shared state (outputs and ``manifest.jsonl``); a photo that is already finished is not
written again by whichever rank owns it, so a restart with any world size finishes exactly the
rest.

Seeds depend on the base seed and the photo's relative path only, never on the rank, the batch
a face lands in or the order of work; batches are formed inside fixed groups of photos
(:func:`make_groups`). So one process and many give the same pixels, given the same device
type and threads per process (float results also depend on those).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..errors import AuthFaceError

T = TypeVar("T")
# torch.Generator.manual_seed takes any 64-bit value; 63 bits keep the seed a positive int64 too,
# which JSON readers and numpy keep exact.
_SEED_BITS = 63


class RankError(AuthFaceError):
    """The launcher's rank variables are inconsistent."""


@dataclass(frozen=True)
class Rank:
    """This process's place in the run: ``rank`` in 0..``world``-1."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Rank:
        """From ``RANK`` and ``WORLD_SIZE`` (set by torchrun and accelerate launch for every
        process, global over all machines); one process when they are absent."""
        env = os.environ if env is None else env
        try:
            rank, world = int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
        except ValueError as err:
            raise RankError(f"RANK and WORLD_SIZE must be integers ({err}); check the launcher's settings") from err
        if world < 1 or not 0 <= rank < world:
            raise RankError(f"RANK={rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world}); check the launcher")
        return cls(rank, world)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """Items rank, rank + world, rank + 2 * world ... of ``items`` (already in a stable order):
        every item belongs to exactly one rank, and the shares differ by at most one item."""
        return list(items[self.rank :: self.world])


def make_groups(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` cut into consecutive groups of ``size`` (the last may be shorter).

    The group, not the photo, is the unit of work: a model batch only takes faces of one group,
    so the batches a face shares (and with them the last bits of its floating-point result: a
    GEMM's blocking depends on the batch size and the row's position) are the same whatever the
    number of processes or where a previous run stopped."""
    if size < 1:
        raise ValueError(f"group size must be at least 1, got {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def candidate_seed(seed: int, candidate: int) -> int:
    """The noise seed of candidate ``candidate`` of a face whose seed is ``seed``: the face's own
    seed for candidate 0 (so one candidate is the plain restore), else the first 63 bits of
    SHA-256 over the two values."""
    if candidate == 0:
        return int(seed)
    digest = hashlib.sha256(f"{int(seed)}\0candidate\0{int(candidate)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - _SEED_BITS)


def face_seed(base_seed: int, relative: str, face_index: int) -> int:
    """The noise seed of face ``face_index`` (detection order) of the photo at ``relative``:
    the first 63 bits of SHA-256 over the three values."""
    digest = hashlib.sha256(f"{int(base_seed)}\0{relative}\0{int(face_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - _SEED_BITS)
