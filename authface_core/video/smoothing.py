"""Temporal smoothing of a face track's alignment, so landmark jitter does not shake the crop.

The filter is the One Euro filter of Casiez, Roussel and Vogel, "1 Euro Filter: A Simple
Speed-based Low-pass Filter for Noisy Input in Interactive Systems", CHI 2012 (section 3 and the
pseudo-code of its appendix): an exponential smoother whose cutoff frequency rises with the
signal's (itself smoothed) speed, fc = min_cutoff + beta * |dx/dt|, so a still face is held
steady (low cutoff: jitter removed) and a moving one followed without lag (high cutoff).

It runs on the four parameters of the source-to-crop similarity (crop centre in the source,
log of the crop side, rotation angle), not on the six matrix entries: those mix rotation and
scale into the translation, and averaging them would shear the crop. Positions and sizes are in
units of the track's first crop side, so one setting serves small and large faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..faces.align import alignment_matrix, apply_affine, similarity_scale, to_homogeneous
from ..faces.types import FaceSet, FixedAlignment


@dataclass(frozen=True)
class OneEuroSettings:
    """One Euro filter settings. ``min_cutoff`` (Hz) sets the smoothing of a still face (lower:
    steadier, more lag on slow moves); ``beta`` (1 / crop side) how fast the cutoff rises with
    speed (higher: less lag when the face moves); ``d_cutoff`` (Hz) smooths the speed estimate
    (the paper's 1 Hz). Defaults chosen with ``bench/bench_video.py``'s flicker figures."""

    min_cutoff: float = 0.5
    beta: float = 4.0
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ValueError(
                f"One Euro settings need min_cutoff > 0, d_cutoff > 0 and beta >= 0, got {self}"
            )


def _alpha(cutoff: float, rate: float) -> float:
    """Smoothing factor of an exponential filter with ``cutoff`` Hz sampled at ``rate`` Hz
    (the paper's alpha = 1 / (1 + tau / T_e), tau = 1 / (2 pi f_c))."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau * rate)


class OneEuroFilter:
    """The One Euro filter on a vector signal sampled at ``rate`` Hz (each component filtered with
    the cutoff of its own speed)."""

    def __init__(self, rate: float, settings: OneEuroSettings = OneEuroSettings()) -> None:
        if not rate > 0:
            raise ValueError(f"the sampling rate must be positive (frames per second), got {rate}")
        self.rate = float(rate)
        self.settings = settings
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None

    def __call__(self, value: np.ndarray) -> np.ndarray:
        """Filter the next sample; returns the smoothed value (the first sample passes as is)."""
        x = np.asarray(value, dtype=np.float64)
        if self._value is None:
            self._value, self._speed = x.copy(), np.zeros_like(x)
            return x.copy()
        s = self.settings
        speed = (x - self._value) * self.rate
        a_d = _alpha(s.d_cutoff, self.rate)
        self._speed = a_d * speed + (1.0 - a_d) * self._speed
        cutoff = s.min_cutoff + s.beta * np.abs(self._speed)
        a = np.array([_alpha(float(c), self.rate) for c in cutoff.ravel()]).reshape(x.shape)
        self._value = a * x + (1.0 - a) * self._value
        return self._value.copy()


def similarity_params(matrix: np.ndarray, size: int) -> np.ndarray:
    """(centre x, centre y, crop side, angle) of a source-to-crop similarity for a ``size`` px
    crop: the source point at the crop's centre, the crop's side in source pixels and its
    rotation in radians."""
    m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    inverse = np.linalg.inv(to_homogeneous(m))[:2]
    centre = apply_affine(inverse, np.array([(size - 1) / 2.0, (size - 1) / 2.0]))
    side = size / similarity_scale(m)
    angle = math.atan2(m[1, 0], m[0, 0])
    return np.array([centre[0], centre[1], side, angle])


def similarity_from_params(params: np.ndarray, size: int) -> np.ndarray:
    """Inverse of :func:`similarity_params`: the (2, 3) source-to-crop matrix."""
    cx, cy, side, angle = (float(v) for v in params)
    scale = size / side
    rot = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    middle = np.array([(size - 1) / 2.0, (size - 1) / 2.0])
    shift = middle - rot @ np.array([cx, cy])
    return np.hstack([rot, shift[:, None]])


class AlignmentSmoother:
    """Smooths one track's alignment matrices over time (see the module docstring)."""

    def __init__(self, rate: float, size: int, settings: OneEuroSettings = OneEuroSettings()) -> None:
        self.size = int(size)
        self._filter = OneEuroFilter(rate, settings)
        self._unit: float | None = None
        self._angle: float | None = None
        self.matrix: np.ndarray | None = None

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        """The smoothed (2, 3) matrix after this frame's raw ``matrix`` (also kept in
        :attr:`matrix`, for frames where the track's face is missed)."""
        cx, cy, side, angle = similarity_params(matrix, self.size)
        if self._unit is None:
            self._unit = side
        if self._angle is not None:
            # Keep the angle continuous across the +-pi cut so the filter never averages across it.
            angle = self._angle + math.remainder(angle - self._angle, 2.0 * math.pi)
        self._angle = angle
        u = self._unit
        out = self._filter(np.array([cx / u, cy / u, math.log(side / u), angle]))
        self.matrix = similarity_from_params(
            np.array([out[0] * u, out[1] * u, u * math.exp(out[2]), out[3]]), self.size
        )
        return self.matrix


def smooth_face_tracks(faces: FaceSet, method: str, fps: float, settings: OneEuroSettings = OneEuroSettings(),
                       size: int = 512) -> FaceSet:
    """``faces`` of a frame batch (frames in batch order) with every tracked face's alignment fixed
    to its track's smoothed ``method`` matrix (smoothed at ``size`` px; alignment rescales it to
    any crop size), ready for alignment; faces keep their order. Raises ValueError when no face
    carries a track id."""
    if faces.faces and all(face.track_id < 0 for face in faces.faces):
        raise ValueError("these faces carry no track ids: set order=track on AuthFace Detect Faces")
    smoothers: dict[int, AlignmentSmoother] = {}
    smoothed = [replace(face, fixed_alignment=None) for face in faces.faces]
    for i in sorted(range(len(smoothed)), key=lambda i: smoothed[i].image_index):
        face = smoothed[i]
        if face.track_id < 0:
            continue
        smoother = smoothers.setdefault(face.track_id, AlignmentSmoother(fps, size, settings))
        matrix = smoother(alignment_matrix(face, size, method))
        smoothed[i] = replace(face, fixed_alignment=FixedAlignment(size, method, matrix))
    return FaceSet(image_sizes=list(faces.image_sizes), faces=smoothed)
