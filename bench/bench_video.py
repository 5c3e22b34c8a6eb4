"""Video flicker with and without the temporal measures, and the cost of tracking per frame (CPU).

A synthetic clip from a real photo: scikit-image's astronaut at 256 px moved by the known
sub-pixel pan of ``tests/video_clips.drift`` (0.37 px per frame plus a 0.8 px sway). Every
frame is restored by :class:`~authface_core.video.restore.VideoFaceRestorer` with the
random-weight release fixture (64 px crops, DDIM 2 steps, CFG 8, wavelet colour fix) under four
settings: no measure (new noise every frame, each frame aligned from its own landmarks), one
noise per track only, alignment smoothing only, and both (the default). Flicker is the mean
absolute frame-to-frame difference, in 8-bit levels, of the face region after the known motion
is undone; the input clip's own figure (interpolation alone) is the floor.

Tracking overhead: median time per frame of the tracker update plus the One Euro smoothing of
one face's alignment, next to dlib's detection of the same frame.
Run: ``python -m bench.bench_video``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from authface_core.faces.align import alignment_matrix
from authface_core.faces.detect import get_detector
from authface_core.video.restore import TemporalSettings, VideoFaceRestorer
from authface_core.video.smoothing import AlignmentSmoother
from authface_core.video.tracking import FaceTracker

REPO = Path(__file__).resolve().parents[1]
FRAMES = 10
CROP = 64
FPS = 25.0
FACE = (80, 34, 140, 92)  # the astronaut's face at 256 px (dlib box 88,41-132,84 plus a margin)
SETTINGS = {
    "no measure": TemporalSettings(track_noise=False, smoothing=None),
    "track noise only": TemporalSettings(track_noise=True, smoothing=None),
    "smoothing only": TemporalSettings(track_noise=False),
    "both (default)": TemporalSettings(),
}


def _flicker(frames: list[np.ndarray], shifts: np.ndarray, undo) -> float:
    """Mean |frame t - frame t-1| in 8-bit levels over the face, motion undone."""
    x0, y0, x1, y1 = FACE
    still = [undo(f, dx, dy)[y0:y1, x0:x1] for f, (dx, dy) in zip(frames, shifts)]
    return float(np.mean([np.abs(b - a).mean() for a, b in zip(still, still[1:])]) * 255.0)


def main() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from release_fixture import cached_release
    from skimage import data
    from video_clips import drift, moved_frames, undo_shift

    from authface_core.pipeline import AuthFacePipeline

    photo = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    shifts = drift(FRAMES)
    frames = moved_frames(photo, shifts)
    detector = get_detector("dlib")
    pipeline = AuthFacePipeline.from_release(cached_release("plain"))
    floor = _flicker([f / 255.0 for f in frames], shifts, undo_shift)
    print(f"clip: astronaut 256x256, {FRAMES} frames, known sub-pixel pan; crops {CROP} px, DDIM 2 steps, CFG 8")
    print(f"flicker of the input clip (interpolation floor): {floor:.2f} levels")
    for name, temporal in SETTINGS.items():
        restorer = VideoFaceRestorer(pipeline, detector, FPS, CROP, temporal, seed=0, steps=2, sampler="ddim",
                                     color_fix="wavelet")
        start = time.perf_counter()
        restored = [restorer.restore_frame(f)[0] for f in frames]
        seconds = (time.perf_counter() - start) / FRAMES
        print(f"flicker, {name:17s}: {_flicker(restored, shifts, undo_shift):6.2f} levels   ({seconds:.2f} s per frame)")

    tracker, smoother, track_times, detect_times = FaceTracker(), AlignmentSmoother(FPS, CROP), [], []
    for frame in frames:
        rgb = frame.astype(np.float32) / 255.0
        start = time.perf_counter()
        faces = detector.detect(rgb, 0)
        detect_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ids = tracker.update(faces)
        for face, _ in zip(faces, ids):
            smoother(alignment_matrix(face, CROP))
        track_times.append(time.perf_counter() - start)
    print(f"tracking + smoothing per frame: {statistics.median(track_times) * 1e3:.2f} ms "
          f"(dlib detection of the frame: {statistics.median(detect_times) * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
