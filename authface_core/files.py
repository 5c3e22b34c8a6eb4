"""Files that are whole or absent: atomic replacement with fsync, shared by the archive restore
and the training outputs.

A file is written to a temporary name beside its target, fsynced, renamed over the target with
``os.replace`` (atomic on POSIX filesystems) and the folder fsynced, so a kill or power loss at
any moment leaves the old file (or none), never half of the new one.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path

TEMP_MARK = ".tmp-"


def fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename is durable only once its folder is)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def temp_path(target: Path) -> Path:
    """The temporary file :func:`write_atomic` writes ``target`` through (hidden, beside it, named
    for the process so two writers never share one)."""
    return target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}")


def remove_partial(target: Path) -> list[Path]:
    """Delete temporary files a killed writer left for ``target``; returns them."""
    pattern = f".{glob.escape(target.name)}{TEMP_MARK}*"  # names like "IMG (1) [copy].jpg" hold glob syntax
    leftovers = sorted(target.parent.glob(pattern)) if target.parent.is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def write_atomic(target: Path, write: Callable[[Path], object]) -> None:
    """Create ``target`` through ``write(temporary path)``, then fsync it, rename it into place
    and fsync the folder. When ``write`` (or the fsync) raises, the temporary file is deleted and
    the exception passes on."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(target)
    try:
        write(temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    os.replace(temp, target)
    fsync_dir(target.parent)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    """:func:`write_atomic` for ``data`` already in memory."""
    write_atomic(target, lambda temp: temp.write_bytes(data))
