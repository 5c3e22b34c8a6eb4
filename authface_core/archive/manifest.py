"""``OUT/manifest.jsonl``: one JSON line per finished (or failed) photo or video.

Crash safety rests on two orders of writes. An output is written atomically
(:func:`authface_core.files.write_bytes_atomic`); only then is its manifest line appended. A
photo counts as finished when its last line says ``done`` with the current settings and the
output file has the recorded size, so a kill at any moment leaves either a finished photo or one
the next run redoes (a leftover temporary file is deleted by the rank that owns the photo).

Every rank appends to the same file with ``O_APPEND`` and one ``write`` per line, which POSIX
filesystems (local disks, Lustre, GPFS, CephFS) keep whole and unmixed; NFS shared between
machines does not promise it, hence the reader skips a line it cannot parse instead of failing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ranks import Rank

MANIFEST_NAME = "manifest.jsonl"


def append_record(manifest: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line with a single ``write`` on an ``O_APPEND`` descriptor,
    then fsync."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    descriptor = os.open(manifest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def run_fields(settings: Mapping[str, Any], rank: Rank) -> dict[str, Any]:
    """The fields every record carries: the settings, which process wrote it, and when."""
    return {
        "settings": dict(settings),
        "rank": rank.rank,
        "world": rank.world,
        "pid": os.getpid(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def parse_records(text: str) -> Iterator[dict[str, Any]]:
    """The records of manifest text, skipping blank, torn or foreign lines."""
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("path"), str):
            yield record


def read_records(manifest: Path) -> list[dict[str, Any]]:
    """All records of ``manifest`` in file order ([] when it does not exist)."""
    try:
        return list(parse_records(manifest.read_text(encoding="utf-8", errors="replace")))
    except FileNotFoundError:
        return []


def finished_paths(records: list[dict[str, Any]], settings: Mapping[str, Any], out: Path) -> set[str]:
    """Relative paths whose last record is ``done`` with ``settings`` and whose output file is
    there with the recorded size."""
    last = {record["path"]: record for record in records}
    done = set()
    for path, record in last.items():
        if record.get("status") != "done" or record.get("settings") != dict(settings):
            continue
        output = out / record.get("output", "")
        if output.is_file() and output.stat().st_size == record.get("output_bytes"):
            done.add(path)
    return done


class ManifestTail:
    """Reads the records other processes append to a manifest, from a byte offset on (rank 0's
    progress bar follows the whole run this way, with no communication between ranks)."""

    def __init__(self, manifest: Path, offset: int = 0) -> None:
        self.manifest = manifest
        self.offset = offset

    def new_records(self) -> list[dict[str, Any]]:
        """Records appended since the last call (a line still being written is left for later)."""
        try:
            with open(self.manifest, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        return list(parse_records(data[:complete].decode("utf-8", errors="replace")))
