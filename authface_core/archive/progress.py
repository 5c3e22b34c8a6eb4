"""Rank 0's one progress bar for the whole run and every rank's log file.

The bar follows ``manifest.jsonl`` (:class:`~authface_core.archive.manifest.ManifestTail`), where
every rank records each photo it finishes, so it counts the photos and faces of all ranks with no
communication between processes.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from .manifest import ManifestTail
from .ranks import Rank

LOGS_DIR = "logs"


def attach_rank_log(out: Path, rank: Rank, logger: logging.Logger) -> logging.Handler:
    """Send ``logger``'s records (INFO and up) to ``out/logs/rank-<rank>.log`` too (appended, so a
    restarted run keeps the history); returns the handler to remove at the end."""
    folder = out / LOGS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / f"rank-{rank.rank}.log", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank {rank.rank}/{rank.world} %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    return handler


class RunProgress:
    """Photos and faces finished by all ranks out of ``pending`` (the relative paths the run set
    out to do), with rate and ETA; shown as a tqdm bar when ``show`` (rank 0)."""

    def __init__(self, tail: ManifestTail, pending: Collection[str], show: bool) -> None:
        from tqdm import tqdm

        self.tail = tail
        self.pending = set(pending)
        self.finished: set[str] = set()
        self.faces = 0
        self.bar = tqdm(total=len(self.pending), unit="photo", desc="restore", disable=not show, dynamic_ncols=True)

    def poll(self) -> None:
        """Take in the records appended since the last poll."""
        before = len(self.finished)
        for record in self.tail.new_records():
            path = record["path"]
            if path in self.pending and path not in self.finished:
                self.finished.add(path)
                self.faces += int(record.get("faces", 0))
        if len(self.finished) != before:
            elapsed = max(self.bar.format_dict["elapsed"], 1e-9)
            self.bar.set_postfix(faces=self.faces, faces_per_s=f"{self.faces / elapsed:.2f}", refresh=False)
            self.bar.update(len(self.finished) - before)

    @property
    def all_finished(self) -> bool:
        return self.finished >= self.pending

    def close(self) -> None:
        self.bar.close()
