"""The videos of an archive run, resumable like its photos.

A video is restored whole by the rank it falls to (its face tracks need every frame in order),
written under a temporary name and renamed into place (:func:`authface_core.video.restore.restore_video`),
then recorded in ``manifest.jsonl`` with the same settings as the photos. A rerun skips a video
whose last record is ``done`` with the current settings and whose output has the recorded size,
so a kill loses at most the video in flight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AuthFaceError
from .discovery import InputFile
from .manifest import MANIFEST_NAME, append_record, finished_paths, read_records, run_fields
from .ranks import Rank

if TYPE_CHECKING:
    from ..video.restore import VideoSummary

logger = logging.getLogger("authface")

RestoreVideo = Callable[[InputFile], "tuple[Path, VideoSummary]"]


def restore_archive_videos(videos: Sequence[InputFile], out: Path, settings: Mapping[str, Any], rank: Rank,
                           restore: RestoreVideo) -> tuple[int, int]:
    """Restore ``videos`` (this rank's share) with ``restore`` (which returns the written file and
    what it did) unless already finished; returns (restored, failed)."""
    manifest = out / MANIFEST_NAME
    finished = finished_paths(read_records(manifest), settings, out)
    restored = failed = 0
    for video in videos:
        if video.relative in finished:
            logger.info("%s: already restored with these settings, skipped", video.relative)
            continue
        start = time.perf_counter()
        try:
            target, summary = restore(video)
        except (AuthFaceError, ValueError, OSError) as err:
            logger.error("%s: %s", video.source, err)
            append_record(manifest, {"path": video.relative, "status": "failed", "kind": "video", "error": str(err),
                                     **run_fields(settings, rank)})
            failed += 1
            continue
        append_record(manifest, {
            "path": video.relative,
            "status": "done",
            "kind": "video",
            "output": target.relative_to(out).as_posix(),
            "output_bytes": target.stat().st_size,
            "frames": summary.frames,
            "faces": summary.faces,
            "tracks": summary.tracks,
            "seconds": round(time.perf_counter() - start, 4),
            **run_fields(settings, rank),
        })
        restored += 1
    return restored, failed
