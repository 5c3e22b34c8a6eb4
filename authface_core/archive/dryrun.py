"""``authface restore --dry-run``: how many photos and faces a run would restore and how long it
would take, without writing anything.

Faces are counted by really reading and detecting every unfinished photo (the time that takes is
measured and is part of the estimate: the run does the same work). The model's speed comes from
one of two sources, and the report names which:

- ``manifest``: the seconds per face and step that finished photos in ``OUT/manifest.jsonl``
  measured with the same model, precision and crop size (their model time over faces x
  candidates x steps);
- ``probe``: when no such record exists, the model is loaded and one sampling step on a full
  batch of grey crops is timed (after one untimed warm-up step, which also encodes the prompts).

Either way the model estimate is faces x candidates x steps x seconds per face-step (a pick
among candidates adds the identity embeddings, not counted). It leaves out loading
the model and the idle slots of each group's last, partial batch; the probe's single step also
carries one VAE decode and the colour fix, which a many-step run spreads over all its steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AuthFaceError
from .discovery import InputFile
from .manifest import MANIFEST_NAME, finished_paths, read_records
from .photos import prepare_photo
from .ranks import make_groups
from .run import ArchiveSettings

if TYPE_CHECKING:
    from ..faces.detect import FaceDetector
    from ..pipeline import AuthFacePipeline

# Settings a measured speed must share with the planned run to be reused.
_SPEED_KEYS = ("model", "size", "dtype", "cfg")


@dataclass
class DryRunEstimate:
    """The plan: ``photos`` and ``faces`` still to restore (``unreadable`` photos left out),
    ``detect_seconds`` measured on them, the model speed (``seconds_per_face_step`` from
    ``speed_source``: "manifest" or "probe") and the estimated total."""

    photos: int
    faces: int
    batches: int
    already_finished: int
    unreadable: int
    detect_seconds: float
    seconds_per_face_step: float
    speed_source: str
    steps: int
    batch_size: int
    candidates: int = 1

    @property
    def model_seconds(self) -> float:
        return self.faces * self.candidates * self.steps * self.seconds_per_face_step

    @property
    def estimated_seconds(self) -> float:
        return self.detect_seconds + self.model_seconds

    def describe(self) -> str:
        """The report printed by the command."""
        source = {
            "manifest": "measured by earlier photos of this run (manifest.jsonl)",
            "probe": "timed now on one step of one full batch of grey crops",
        }[self.speed_source]
        return "\n".join(
            [
                f"would restore {self.photos} photo(s) with {self.faces} face(s) in {self.batches} batch(es) of up to "
                f"{self.batch_size}; {self.already_finished} already finished, {self.unreadable} unreadable",
                f"model speed: {self.seconds_per_face_step:.4g} s per face and step, {source}",
                f"estimated time: {_duration(self.estimated_seconds)} on this process "
                f"(reading and detection {_duration(self.detect_seconds)}, measured now; model "
                f"{_duration(self.model_seconds)} at {self.steps} step(s)"
                + (f" x {self.candidates} candidates" if self.candidates > 1 else "")
                + "); divide by the number of processes "
                "for a multi-GPU run; model loading not included",
            ]
        )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def manifest_speed(records: Sequence[dict[str, Any]], settings: ArchiveSettings) -> float | None:
    """Seconds per face and step over the done records whose settings share :data:`_SPEED_KEYS`
    with ``settings``; None when there are none."""
    wanted = {key: getattr(settings, key) for key in _SPEED_KEYS}
    seconds = face_steps = 0.0
    for record in records:
        recorded = record.get("settings") or {}
        if record.get("status") != "done" or not record.get("faces"):
            continue
        if any(recorded.get(key) != value for key, value in wanted.items()):
            continue
        seconds += float(record.get("model_seconds", 0.0))
        face_steps += int(record["faces"]) * int(recorded.get("candidates", 1)) * int(recorded.get("steps", 0))
    return seconds / face_steps if face_steps else None


def probe_speed(pipeline: AuthFacePipeline, settings: ArchiveSettings, batch_size: int) -> float:
    """Seconds per face and step: one step on ``batch_size`` grey crops, timed after a warm-up."""
    import torch

    lq = torch.full((batch_size, 3, settings.size, settings.size), 0.5)
    options: dict[str, Any] = {"steps": 1, "cfg": settings.cfg, "sampler": settings.sampler, "color_fix": settings.color_fix,
                               "batch_size": batch_size}
    pipeline.restore(lq[:1], **options)
    start = time.perf_counter()
    pipeline.restore(lq, **options)
    return (time.perf_counter() - start) / batch_size


def dry_run(
    images: Sequence[InputFile],
    detector: FaceDetector | None,
    settings: ArchiveSettings,
    out: Path,
    batch_size: int,
    load_pipeline: Callable[[], AuthFacePipeline],
) -> DryRunEstimate:
    """Count the unfinished photos of ``images`` and their faces and estimate the run's time
    (``load_pipeline`` is called only when the manifest holds no usable speed)."""
    from dataclasses import asdict

    records = read_records(out / MANIFEST_NAME)
    finished = finished_paths(records, asdict(settings), out)
    pending = [f for f in images if f.relative not in finished]
    faces = batches = unreadable = 0
    start = time.perf_counter()
    # Batches as the run forms them: within groups of batch_size photos (see make_groups).
    for group in make_groups(pending, batch_size):
        group_faces = 0
        for file in group:
            try:
                group_faces += prepare_photo(file, file.image_target(out), detector, settings.size, 0).face_count
            except (AuthFaceError, ValueError, OSError):
                unreadable += 1
        faces += group_faces
        batches += math.ceil(group_faces / batch_size)
    detect_seconds = time.perf_counter() - start
    speed = manifest_speed(records, settings)
    source = "manifest"
    if speed is None:
        speed, source = probe_speed(load_pipeline(), settings, batch_size), "probe"
    return DryRunEstimate(
        photos=len(pending) - unreadable, faces=faces, batches=batches, already_finished=len(images) - len(pending),
        unreadable=unreadable, detect_seconds=detect_seconds, seconds_per_face_step=speed, speed_source=source,
        steps=settings.steps, batch_size=batch_size, candidates=settings.candidates,
    )
