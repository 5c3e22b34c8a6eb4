"""Face tracks across the frames of a video: one track id per person.

Online tracking by detection, in the manner of SORT (Bewley et al., "Simple Online and Realtime
Tracking", ICIP 2016) without its motion model: each frame's faces are matched to the live
tracks by box overlap (IoU) or, for small fast faces whose boxes no longer overlap, by the
distance of their five landmarks relative to the face size. Pairs are taken greedily from the
best score down (a face count per frame is small, so greedy and optimal assignment agree in all
but contrived cases). A track whose face is missed is kept for ``max_missed`` frames, so one or
two failed detections do not split a person into two tracks; unmatched faces start new tracks,
numbered upwards from 0 in order of first appearance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..faces.types import AlignedFace, DetectedFace, FaceSet


@dataclass(frozen=True)
class TrackerSettings:
    """``max_missed``: frames a track survives without its face; ``min_iou``: box overlap that
    links a face to a track; ``max_point_distance``: or, mean five-point distance in units of
    the track's face size that links them."""

    max_missed: int = 2
    min_iou: float = 0.3
    max_point_distance: float = 0.35

    def __post_init__(self) -> None:
        if self.max_missed < 0 or not 0.0 < self.min_iou <= 1.0 or self.max_point_distance < 0:
            raise ValueError(
                "tracker settings need max_missed >= 0, 0 < min_iou <= 1 and max_point_distance >= 0, "
                f"got {self}"
            )


@dataclass
class Track:
    """A person followed across frames: the face last seen and frames since."""

    track_id: int
    face: DetectedFace
    missed: int = 0


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def point_distance(a: DetectedFace, b: DetectedFace) -> float:
    """Mean distance of the five landmarks of two faces, in units of ``a``'s size."""
    spread = np.linalg.norm(np.asarray(a.points5) - np.asarray(b.points5), axis=1).mean()
    return float(spread / max(a.size, 1e-6))


class FaceTracker:
    """Assigns track ids frame by frame (see the module docstring)."""

    def __init__(self, settings: TrackerSettings = TrackerSettings()) -> None:
        self.settings = settings
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(self, faces: Sequence[DetectedFace]) -> list[int]:
        """Match one frame's ``faces`` to the tracks; returns the track id of each face, in order.

        Tracks not matched this frame count one more miss and are dropped after ``max_missed``;
        :meth:`coasting` lists the ones kept."""
        s = self.settings
        pairs = []
        for t, track in enumerate(self.tracks):
            for f, face in enumerate(faces):
                iou = box_iou(track.face.box, face.box)
                distance = point_distance(track.face, face)
                if iou >= s.min_iou or distance <= s.max_point_distance:
                    pairs.append((iou - distance, t, f))
        ids = [-1] * len(faces)
        matched: set[int] = set()
        for _, t, f in sorted(pairs, key=lambda p: -p[0]):
            if t in matched or ids[f] >= 0:
                continue
            matched.add(t)
            ids[f] = self.tracks[t].track_id
            self.tracks[t].face, self.tracks[t].missed = faces[f], 0
        for t, track in enumerate(self.tracks):
            if t not in matched:
                track.missed += 1
        self.tracks = [track for track in self.tracks if track.missed <= s.max_missed]
        for f, face in enumerate(faces):
            if ids[f] < 0:
                ids[f] = self._next_id
                self.tracks.append(Track(self._next_id, face))
                self._next_id += 1
        return ids

    def coasting(self) -> list[Track]:
        """Tracks kept although their face was missed in the last frame (1..max_missed misses)."""
        return [track for track in self.tracks if track.missed > 0]


def track_faces(faces: FaceSet, settings: TrackerSettings = TrackerSettings(), carry_missed: bool = True) -> FaceSet:
    """The faces of a batch of consecutive frames with ``track_id`` set (frames in batch order).

    With ``carry_missed``, a track whose face the detector missed in a frame (for at most
    ``settings.max_missed`` frames) gets its last detected face in that frame too, marked
    ``coasting``, so the person is restored in every frame as ``authface restore`` does for a
    video. Returns a new FaceSet whose faces are listed frame by frame, each frame's faces by
    ascending track id; ``aligned`` entries, when present, follow their faces (a carried face
    keeps its last alignment)."""
    tracker = FaceTracker(settings)
    last_aligned: dict[int, AlignedFace] = {}
    tracked: list[DetectedFace] = []
    aligned: list[AlignedFace] = []
    for index in range(len(faces.image_sizes)):
        positions = faces.faces_of_image(index)
        ids = tracker.update([faces.faces[p] for p in positions])
        frame = [(track_id, replace(faces.faces[p], track_id=track_id), p) for p, track_id in zip(positions, ids)]
        if carry_missed:
            frame += [(track.track_id, replace(track.face, image_index=index, track_id=track.track_id, coasting=True),
                       None) for track in tracker.coasting()]
        for track_id, face, position in sorted(frame, key=lambda entry: entry[0]):
            tracked.append(face)
            if faces.aligned:
                if position is not None:
                    last_aligned[track_id] = faces.aligned[position]
                aligned.append(replace(last_aligned[track_id], face=face))
    return FaceSet(image_sizes=list(faces.image_sizes), faces=tracked, aligned=aligned, crop_size=faces.crop_size)
