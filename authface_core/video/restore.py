"""Restoring the faces of a video frame by frame, with temporally stable faces.

Per frame: detect, match faces to tracks (:mod:`.tracking`), align each face with its track's
smoothed similarity (:mod:`.smoothing`), restore all faces of the frame as one batch with one
noise seed per track (``noise_keys.track_key``, the key Release Noise uses in ComfyUI too),
colour-fix and paste back. A track whose face is missed for a frame or two is still restored
with its last smoothed alignment, so a failed detection does not make the face flash back to
its unrestored state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..faces.align import alignment_matrix, apply_affine, warp_affine
from ..faces.paste import paste_faces
from ..faces.select import sort_faces
from ..faces.types import AlignedFace, DetectedFace
from ..files import remove_partial, write_atomic
from ..images import to_rgb_float
from ..noise_keys import key_seed, track_key
from .media import VideoInfo, VideoWriter, probe_video, read_frames
from .smoothing import AlignmentSmoother, OneEuroSettings
from .tracking import FaceTracker, TrackerSettings

if TYPE_CHECKING:
    from ..faces.detect import FaceDetector
    from ..pipeline import AuthFacePipeline

logger = logging.getLogger("authface")


@dataclass(frozen=True)
class TemporalSettings:
    """The temporal-stability measures. ``track_noise``: each track keeps one noise seed for the
    whole clip (off: each frame draws new noise, seed + frame index, as independent photos
    would); ``smoothing``: One Euro settings for the alignment (None: each frame aligned from
    its own landmarks); ``tracker``: how faces are linked across frames."""

    track_noise: bool = True
    smoothing: OneEuroSettings | None = field(default_factory=OneEuroSettings)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)


@dataclass(frozen=True)
class FrameFace:
    """One face restored in a frame: its track, alignment (``aligned.matrix`` the smoothed one
    used for the crop) and whether the detector missed it in this frame (``coasting``)."""

    track_id: int
    aligned: AlignedFace
    coasting: bool


class VideoFaceRestorer:
    """Restores the faces of consecutive frames of one clip (state: tracks and their smoothers).

    ``restore_kwargs`` go to :meth:`AuthFacePipeline.restore` (steps, cfg, sampler, color_fix,
    batch_size, ...); ``seed`` is the clip's noise seed."""

    def __init__(
        self,
        pipeline: AuthFacePipeline,
        detector: FaceDetector,
        fps: float,
        size: int = 512,
        temporal: TemporalSettings = TemporalSettings(),
        *,
        seed: int = 0,
        align_method: str = "ffhq",
        feather: float = 1.0,
        paste_mask: str = "square",
        **restore_kwargs: Any,
    ) -> None:
        self.pipeline = pipeline
        self.detector = detector
        self.fps = float(fps)
        self.size = int(size)
        self.temporal = temporal
        self.seed = int(seed)
        self.align_method = align_method
        self.feather = feather
        self.paste_mask = paste_mask
        self.restore_kwargs = restore_kwargs
        self.tracker = FaceTracker(temporal.tracker)
        self._smoothers: dict[int, AlignmentSmoother] = {}
        self._matrices: dict[int, np.ndarray] = {}
        self.frame_index = 0
        self.track_ids: set[int] = set()

    def _matrix(self, track_id: int, face: DetectedFace) -> np.ndarray:
        raw = alignment_matrix(face, self.size, self.align_method)
        if self.temporal.smoothing is None:
            return raw
        if track_id not in self._smoothers:
            self._smoothers[track_id] = AlignmentSmoother(self.fps, self.size, self.temporal.smoothing)
        return self._smoothers[track_id](raw)

    def plan(self, rgb: np.ndarray) -> list[FrameFace]:
        """Detect and track the faces of the next frame and choose their alignments (advances the
        tracks; :meth:`restore_frame` calls it)."""
        faces = sort_faces(self.detector.detect(rgb, 0))
        ids = self.tracker.update(faces)
        planned = []
        for track_id, face in zip(ids, faces):
            self._matrices[track_id] = self._matrix(track_id, face)
            planned.append((track_id, face, False))
        for track in self.tracker.coasting():
            planned.append((track.track_id, track.face, True))
        live = {track.track_id for track in self.tracker.tracks}
        self._smoothers = {k: v for k, v in self._smoothers.items() if k in live}
        self._matrices = {k: v for k, v in self._matrices.items() if k in live}
        result = []
        for track_id, face, coasting in sorted(planned, key=lambda p: p[0]):
            matrix = self._matrices[track_id]
            aligned = AlignedFace(
                face=face, size=self.size, matrix=matrix, method=self.align_method,
                landmarks=apply_affine(matrix, face.landmarks), points5=apply_affine(matrix, face.points5),
            )
            result.append(FrameFace(track_id, aligned, coasting))
        return result

    def restore_frame(self, frame: np.ndarray) -> tuple[np.ndarray, list[FrameFace]]:
        """The next frame (any layout :func:`~authface_core.images.to_rgb_float` takes) with its
        faces restored, as HxWx3 float32 RGB in [0, 1], and the faces restored in it."""
        import torch

        rgb = to_rgb_float(frame)
        faces = self.plan(rgb)
        index = self.frame_index
        self.frame_index += 1
        if not faces:
            return rgb, faces
        self.track_ids.update(f.track_id for f in faces)
        crops = np.stack([warp_affine(rgb, f.aligned.matrix, (self.size, self.size)) for f in faces])
        if self.temporal.track_noise:
            seed: int | list[int] = [key_seed(self.seed, track_key(f.track_id)) for f in faces]
        else:
            seed = self.seed + index
        restored = self.pipeline.restore(
            torch.from_numpy(crops).permute(0, 3, 1, 2), seed=seed, **self.restore_kwargs
        )
        out = restored.permute(0, 2, 3, 1).cpu().numpy()
        pasted = paste_faces(rgb, out, [f.aligned for f in faces], feather=self.feather, mask=self.paste_mask)
        return pasted, faces


@dataclass(frozen=True)
class VideoSummary:
    """What :func:`restore_video` did: frames written, faces restored (coasting ones included),
    distinct tracks, and the source's properties."""

    frames: int
    faces: int
    tracks: int
    info: VideoInfo


def restore_video(
    source: str | Path,
    target: str | Path,
    restorer: VideoFaceRestorer,
    crf: int = 18,
    progress: Callable[[int, int], None] | None = None,
) -> VideoSummary:
    """Restore every frame of ``source`` with ``restorer`` (made for this clip: its ``fps`` should
    be the source's) and write ``target`` with the source's frame rate, size and audio (see
    :class:`~authface_core.video.media.VideoWriter`). The video is encoded under a temporary name
    and renamed into place when complete, so ``target`` is never a partial video; temporary files
    an interrupted run left are deleted first. ``progress(done, total)`` is called after each
    frame (total 0 when the container does not declare a frame count)."""
    info = probe_video(source)
    target = Path(target)
    for leftover in remove_partial(target):
        logger.info("removed %s, left by an interrupted write", leftover)
    counts = {"frames": 0, "faces": 0}

    def encode(temp: Path) -> None:
        with VideoWriter(temp, info, audio_from=source if info.has_audio else None, crf=crf,
                         suffix=target.suffix) as writer:
            for frame in read_frames(source):
                restored, found = restorer.restore_frame(frame)
                counts["faces"] += len(found)
                writer.write(np.rint(np.clip(restored, 0.0, 1.0) * 255.0).astype(np.uint8))
                if progress is not None:
                    progress(writer.frames_written, info.frames)
        counts["frames"] = writer.frames_written

    write_atomic(target, encode)
    if not counts["faces"]:
        logger.warning("no face found in any frame of %s: the video was re-encoded unchanged", source)
    return VideoSummary(counts["frames"], counts["faces"], len(restorer.track_ids), info)
