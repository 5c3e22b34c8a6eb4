"""``authface restore CLIP.mp4 --out DIR``: the command line's video route (called by
:mod:`authface_core.cli` for inputs with a video suffix)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .media import VideoError, output_suffix, probe_video
from .restore import TemporalSettings, VideoFaceRestorer, VideoSummary, restore_video

if TYPE_CHECKING:
    from ..faces.detect import FaceDetector
    from ..pipeline import AuthFacePipeline

logger = logging.getLogger("authface")


def video_target(source: Path, out: Path) -> Path:
    """``out/<stem><suffix>`` (suffix from :func:`~authface_core.video.media.output_suffix`).
    Raises VideoError when it would overwrite the source."""
    target = out / (source.stem + output_suffix(source))
    if target.resolve() == source.resolve():
        raise VideoError(f"writing {target} would overwrite the input video; choose another --out folder")
    return target


def restore_video_file(
    source: Path, out: Path, pipeline: AuthFacePipeline, detector: FaceDetector | None, args: argparse.Namespace
) -> tuple[Path, VideoSummary]:
    """Restore the faces of one video with the command's sampling arguments, tracks, one noise
    per track and smoothed alignment; returns the written file and what was done."""
    from tqdm import tqdm

    if detector is None:
        raise VideoError(f"{source}: --aligned takes face crops, not videos; drop --aligned for {source.name}")
    target = video_target(source, out)
    info = probe_video(source)
    restorer = VideoFaceRestorer(
        pipeline, detector, float(info.fps), args.size, TemporalSettings(), seed=args.seed,
        steps=args.steps, cfg=args.cfg, sampler=args.sampler, color_fix=args.color_fix, batch_size=args.batch_size,
    )
    with tqdm(total=info.frames or None, desc=source.name, unit="frame", leave=False) as bar:
        summary = restore_video(source, target, restorer, progress=lambda done, total: bar.update(done - bar.n))
    logger.info(
        "wrote %s: %d frames at %s fps, %d faces in %d tracks%s", target, summary.frames, info.fps,
        summary.faces, summary.tracks, ", audio copied" if info.has_audio else "",
    )
    return target, summary
