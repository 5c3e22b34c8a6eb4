"""Real video clips for the video tests and the flicker benchmark: a real photo moved by known
sub-pixel shifts, encoded with PyAV (H.264, optionally with an AAC tone as its sound)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def drift(frames: int) -> np.ndarray:
    """Known motion (dx, dy) in pixels per frame: a slow sub-pixel pan (0.37 px per frame to the
    right) with a vertical sway of 0.8 px amplitude over 24 frames, like a hand-held camera."""
    t = np.arange(frames, dtype=np.float64)
    return np.stack([0.37 * t, 0.8 * np.sin(2.0 * np.pi * t / 24.0)], axis=1)


def shift_matrix(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def moved_frames(photo: np.ndarray, shifts: np.ndarray) -> list[np.ndarray]:
    """``photo`` (HxWx3 uint8 RGB) translated by each (dx, dy) of ``shifts``: bicubic, with the
    border reflected, rounded to uint8."""
    height, width = photo.shape[:2]
    src = photo.astype(np.float32)
    return [
        np.clip(np.rint(cv2.warpAffine(src, shift_matrix(dx, dy), (width, height), flags=cv2.INTER_CUBIC,
                                       borderMode=cv2.BORDER_REFLECT_101)), 0, 255).astype(np.uint8)
        for dx, dy in shifts
    ]


def undo_shift(frame: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``frame`` (float) moved back by (-dx, -dy)."""
    height, width = frame.shape[:2]
    return cv2.warpAffine(np.asarray(frame, np.float32), shift_matrix(-dx, -dy), (width, height),
                          flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)


def write_clip(path: Path, frames: list[np.ndarray], fps: Fraction, tone_hz: float | None = 440.0,
               sample_rate: int = 16000, crf: int = 12) -> Path:
    """Encode ``frames`` (uint8 RGB, one size) as H.264 yuv420p at ``fps``; with ``tone_hz``, add
    an AAC mono sine of the clip's duration as its audio stream."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": str(crf)}
        audio = None
        if tone_hz is not None:
            audio = container.add_stream("aac", rate=sample_rate)
            audio.layout = "mono"
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        if audio is not None:
            count = int(round(len(frames) / fps * sample_rate))
            t = np.arange(count) / sample_rate
            samples = (0.3 * np.sin(2.0 * np.pi * tone_hz * t)).astype(np.float32)[None]
            sound = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            sound.sample_rate, sound.pts = sample_rate, 0
            container.mux(audio.encode(sound))
            container.mux(audio.encode(None))
    return path


def audio_packets(path: Path) -> list[bytes]:
    """The bytes of every audio packet of ``path`` (empty when it has no audio)."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def audio_seconds(path: Path) -> float:
    """Duration of the decoded audio of ``path`` in seconds (0 without audio)."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return 0.0
        frames = list(container.decode(container.streams.audio[0]))
        return sum(f.samples for f in frames) / frames[0].sample_rate if frames else 0.0
