"""Reading and writing video files with PyAV (the ``av`` package: FFmpeg's libraries, the binding
ComfyUI's own video nodes use).

Frames are decoded to HxWx3 uint8 RGB. The writer encodes H.264 (libx264) at the source's frame
rate and size, frame i at time i / fps, and copies the source's first audio stream packet for
packet (remuxed, not re-encoded), so the sound is bit-identical and stays in sync.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import AuthFaceError, MissingDependencyError

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
# Containers the H.264 output may keep; any other source is written as Matroska, which holds
# H.264 and nearly every audio codec, so the audio can still be copied.
_KEEP_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv")
# FFmpeg's muxer for each output suffix: the writer names it, since a file written through a
# temporary name (authface_core.files) has no suffix FFmpeg could guess the container from.
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


class VideoError(AuthFaceError):
    """A video cannot be read or written; the message says why."""


def _av() -> Any:
    try:
        import av
    except ImportError as err:
        raise MissingDependencyError("av", "reading and writing video") from err
    return av


def is_video(path: str | Path) -> bool:
    """Whether ``path`` has a video file suffix (:data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def output_suffix(source: str | Path) -> str:
    """The suffix of the restored video: the source's when it can hold H.264, else ``.mkv``."""
    suffix = Path(source).suffix.lower()
    return suffix if suffix in _KEEP_SUFFIXES else ".mkv"


@dataclass(frozen=True)
class VideoInfo:
    """What the writer copies from a source: frame size, frame rate (exact fraction), the frame
    count the container declares (0 when unknown) and whether it has an audio stream."""

    width: int
    height: int
    fps: Fraction
    frames: int
    has_audio: bool


def probe_video(path: str | Path) -> VideoInfo:
    """The :class:`VideoInfo` of a video file. Raises VideoError for a missing or unreadable file
    or one without a video stream."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise VideoError(f"{path} declares no frame rate; remux it with ffmpeg -r FPS first")
            return VideoInfo(
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                fps=Fraction(rate),
                frames=int(stream.frames or 0),
                has_audio=bool(container.streams.audio),
            )
    except av.FFmpegError as err:
        raise VideoError(f"cannot read {path} as a video: {err}") from err


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """The frames of the first video stream of ``path`` in display order, each HxWx3 uint8 RGB."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as err:
        raise VideoError(f"cannot decode {path}: {err}") from err


class VideoWriter:
    """Writes RGB frames as H.264 with ``info``'s rate and size, and remuxes the audio of
    ``audio_from`` (a video or audio file; None for a silent video) when it is closed.

    ``crf`` is libx264's constant rate factor (0 lossless, 18 visually lossless, 23 its default).
    ``suffix`` chooses the container (one :func:`output_suffix` returns; default ``path``'s own).
    Use as a context manager; on an exception the partial file is closed (not deleted)."""

    def __init__(self, path: str | Path, info: VideoInfo, audio_from: str | Path | None = None, crf: int = 18,
                 suffix: str | None = None) -> None:
        av = _av()
        self.path = Path(path)
        self.info = info
        self._count = 0
        suffix = (suffix or self.path.suffix).lower()
        if suffix not in _MUXERS:
            raise VideoError(f"cannot write a {suffix or 'suffix-less'} video; use one of {', '.join(_MUXERS)}")
        self._container = av.open(str(self.path), mode="w", format=_MUXERS[suffix])
        self._video = self._container.add_stream("libx264", rate=info.fps)
        self._video.width, self._video.height = info.width, info.height
        # 4:2:0 chroma needs even sides; odd-sized sources keep full chroma instead of a crop.
        even = info.width % 2 == 0 and info.height % 2 == 0
        self._video.pix_fmt = "yuv420p" if even else "yuv444p"
        self._video.time_base = Fraction(1, 1) / info.fps
        self._video.options = {"crf": str(int(crf))}
        self._source = None
        self._audio_in = self._audio_out = None
        if audio_from is not None:
            source = av.open(str(audio_from))
            if source.streams.audio:
                self._source = source
                self._audio_in = source.streams.audio[0]
                self._audio_out = self._container.add_stream_from_template(self._audio_in)
            else:
                source.close()

    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame of the writer's size."""
        av = _av()
        array = np.ascontiguousarray(frame)
        if array.shape != (self.info.height, self.info.width, 3) or array.dtype != np.uint8:
            raise VideoError(
                f"frames must be {self.info.height}x{self.info.width}x3 uint8 RGB, got {array.shape} {array.dtype}"
            )
        picture = av.VideoFrame.from_ndarray(array, format="rgb24")
        picture.pts = self._count
        picture.time_base = self._video.time_base
        self._container.mux(self._video.encode(picture))
        self._count += 1

    @property
    def frames_written(self) -> int:
        return self._count

    def close(self) -> None:
        """Flush the encoder, copy the audio packets, finish the file."""
        try:
            self._container.mux(self._video.encode(None))
            if self._source is not None:
                for packet in self._source.demux(self._audio_in):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.stream = self._audio_out
                    self._container.mux(packet)
        finally:
            self._container.close()
            if self._source is not None:
                self._source.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()
