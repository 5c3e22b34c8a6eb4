"""Restoring this rank's share of an archive: faces of several photos batched into each model call.

A background thread reads photos and cuts out their faces (decode, detection, alignment) and
another pastes, encodes and writes the finished ones, while the main thread runs the model, so
the device does not wait for the CPU work. The photos come in
groups of ``batch_size`` consecutive photos (:func:`~authface_core.archive.ranks.make_groups`);
the faces of a group queue up across its photos and go to
:meth:`~authface_core.pipeline.AuthFacePipeline.restore` in batches of ``batch_size`` (a group's
last batch may be smaller), each face with its own seed. A photo is pasted, written (atomically)
and recorded in the manifest as soon as its last face is back.

A group with any unfinished photo is restored whole, its finished photos included (they are not
written again): their faces must share the batches they shared before for the others to come out
bit-identical to an uninterrupted run.

Best-of-N (``candidates`` > 1): every batch is restored N times, candidate k with the seeds
:func:`~authface_core.archive.ranks.candidate_seed` gives (candidate 0 is the plain restore, bit
for bit), and per face the candidate whose identity embedding is closest to the face's input
crop is kept.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AuthFaceError
from ..files import remove_partial, write_bytes_atomic
from .discovery import InputFile
from .manifest import MANIFEST_NAME, ManifestTail, append_record, finished_paths, parse_records, run_fields
from .photos import PreparedPhoto, face_landmarks, finish_photo, prepare_photo
from .progress import RunProgress
from .ranks import Rank, candidate_seed, make_groups

if TYPE_CHECKING:
    from ..faces.detect import FaceDetector
    from ..identity.base import FaceEmbedder
    from ..pipeline import AuthFacePipeline

logger = logging.getLogger("authface")

# Photos read ahead of the model: enough to fill the next batch while this one runs.
_PREFETCH_PHOTOS = 4
# Finished photos waiting to be written (each holds its decoded image: bounded for memory).
_WRITE_QUEUE = 4
# How often rank 0 looks at the manifest while it waits for the other ranks.
_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class ArchiveSettings:
    """Everything that decides an output's pixels. A photo recorded as done with other settings
    is restored again. ``model`` is the release folder's resolved path."""

    model: str
    steps: int
    cfg: float
    seed: int
    sampler: str
    color_fix: str
    size: int
    aligned: bool
    dtype: str
    candidates: int = 1


@dataclass
class RunSummary:
    """What one rank did. ``model_seconds``: wall time inside the model calls; ``wall_seconds``:
    from the start of the work to the last write of this rank."""

    done: int = 0
    failed: int = 0
    faces: int = 0
    already_finished: int = 0
    share: int = 0
    batches: int = 0
    model_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def busy_fraction(self) -> float:
        """Share of the wall time the device spent in model calls."""
        return self.model_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass(frozen=True)
class _Failed:
    file: InputFile
    error: Exception


@dataclass(frozen=True)
class _Job:
    """One photo of a group to restore; ``write`` False for a finished photo restored again only
    to keep its group's batches."""

    file: InputFile
    group: int
    write: bool


class _Writer:
    """Runs ``finish`` on each submitted item in a background thread, in order. ``close`` waits
    for the queue to drain and re-raises an exception the thread met."""

    def __init__(self, finish: Callable[[PreparedPhoto | _Failed], None]) -> None:
        self._finish = finish
        self._queue: queue.Queue[PreparedPhoto | _Failed | None] = queue.Queue(maxsize=_WRITE_QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="authface-write", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._finish(item)
                except BaseException as err:  # noqa: BLE001 - handed to the main thread by close()
                    self._error = err

    def submit(self, item: PreparedPhoto | _Failed) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class ArchiveRun:
    """One rank's run over an output folder ``out``. ``detector`` None restores ``--aligned``
    crops; ``embedder`` (optional) adds identity scores (restored face vs its LQ crop) to each
    record; ``picker`` is the identity embedder that chooses among candidates (required when
    ``settings.candidates`` > 1). ``batch_size`` faces go into each model call on ``pipeline``'s
    device."""

    def __init__(
        self,
        pipeline: AuthFacePipeline,
        detector: FaceDetector | None,
        settings: ArchiveSettings,
        out: Path,
        rank: Rank,
        batch_size: int,
        embedder: FaceEmbedder | None = None,
        picker: FaceEmbedder | None = None,
    ) -> None:
        if settings.candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {settings.candidates}")
        if settings.candidates > 1 and picker is None:
            raise ValueError("choosing among candidates needs an identity embedder (picker)")
        self.pipeline = pipeline
        self.detector = detector
        self.settings = settings
        self.out = out
        self.rank = rank
        self.batch_size = int(batch_size)
        self.embedder = embedder
        self.picker = picker
        self.manifest = out / MANIFEST_NAME
        self.summary = RunSummary()

    def run(self, images: Sequence[InputFile]) -> RunSummary:
        """Restore this rank's unfinished share of ``images`` (all ranks pass the same list); rank 0
        then waits for the other ranks' photos to be recorded, showing one bar for the run."""
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            data = self.manifest.read_bytes()
        except FileNotFoundError:
            data = b""
        finished = finished_paths(list(parse_records(data.decode("utf-8", errors="replace"))), self._settings_record(), self.out)
        pending = [f for f in images if f.relative not in finished]
        groups = self.rank.share(make_groups(images, self.batch_size))
        jobs = [
            _Job(file, index, file.relative not in finished)
            for index, group in enumerate(groups)
            if any(f.relative not in finished for f in group)
            for file in group
        ]
        mine = [job.file for job in jobs if job.write]
        self.summary = RunSummary(already_finished=len(images) - len(pending), share=len(mine))
        logger.info(
            "%d photo(s) in the archive, %d already finished; this rank (%d of %d) restores %d",
            len(images), self.summary.already_finished, self.rank.rank, self.rank.world, len(mine),
        )
        for group in groups:
            for file in group:
                for leftover in remove_partial(file.image_target(self.out)):
                    logger.info("removed %s, left by an interrupted write", leftover)
        progress = RunProgress(ManifestTail(self.manifest, len(data)), [f.relative for f in pending], self.rank.is_main)
        start = time.perf_counter()
        try:
            self._restore_share(jobs, progress)
            self.summary.wall_seconds = time.perf_counter() - start
            while self.rank.is_main and not progress.all_finished:
                time.sleep(_POLL_SECONDS)
                progress.poll()
        finally:
            progress.close()
        logger.info(
            "rank %d finished: %d restored, %d failed, %d faces in %d batches; %.1f s, model busy %.0f%% of it",
            self.rank.rank, self.summary.done, self.summary.failed, self.summary.faces, self.summary.batches,
            self.summary.wall_seconds, 100 * self.summary.busy_fraction,
        )
        return self.summary

    def _settings_record(self) -> dict[str, Any]:
        return asdict(self.settings)

    def _prepared(self, jobs: Sequence[_Job]) -> Iterator[tuple[_Job, PreparedPhoto | _Failed]]:
        """Photos prepared by a background thread, in ``jobs`` order."""
        ready: queue.Queue[tuple[_Job, PreparedPhoto | _Failed] | None] = queue.Queue(maxsize=_PREFETCH_PHOTOS)
        stop = threading.Event()

        def work() -> None:
            for job in jobs:
                if stop.is_set():
                    return
                try:
                    item: PreparedPhoto | _Failed = prepare_photo(
                        job.file, job.file.image_target(self.out), self.detector, self.settings.size, self.settings.seed
                    )
                except Exception as err:  # noqa: BLE001 - one odd photo (a detector error included) must not end the run
                    item = _Failed(job.file, err)
                ready.put((job, item))
            ready.put(None)

        thread = threading.Thread(target=work, name="authface-prepare", daemon=True)
        thread.start()
        try:
            while (item := ready.get()) is not None:
                yield item
        finally:
            stop.set()

    def _restore_share(self, jobs: Sequence[_Job], progress: RunProgress) -> None:
        writer = _Writer(self._finish)
        try:
            self._restore_jobs(jobs, progress, writer)
        finally:
            writer.close()

    def _restore_jobs(self, jobs: Sequence[_Job], progress: RunProgress, writer: _Writer) -> None:
        waiting: deque[tuple[PreparedPhoto, int]] = deque()
        to_write: set[PreparedPhoto] = set()
        photos = self._prepared(jobs)
        upcoming = next(photos, None)
        group = -1
        while waiting or upcoming is not None:
            if not waiting and upcoming is not None:
                group = upcoming[0].group
            # A batch takes faces of one group only (see make_groups).
            while upcoming is not None and upcoming[0].group == group and len(waiting) < self.batch_size:
                job, item = upcoming
                if isinstance(item, _Failed) or item.face_count == 0:
                    if job.write:
                        writer.submit(item)
                else:
                    waiting.extend((item, n) for n in range(item.face_count))
                    if job.write:
                        to_write.add(item)
                upcoming = next(photos, None)
                progress.poll()
            if not waiting:
                continue
            batch = [waiting.popleft() for _ in range(min(self.batch_size, len(waiting)))]
            self._restore_batch(batch)
            for photo in dict.fromkeys(photo for photo, _ in batch):
                if photo.complete and photo in to_write:
                    to_write.discard(photo)
                    writer.submit(photo)
            progress.poll()

    def _restore_batch(self, batch: list[tuple[PreparedPhoto, int]]) -> None:
        import torch

        lq = torch.from_numpy(np.stack([photo.crops[n] for photo, n in batch])).permute(0, 3, 1, 2)
        start = time.perf_counter()
        # One call per candidate, each exactly the plain call but for the seeds: candidate 0 is
        # then the plain restore bit for bit (a longer batch could change the kernels' blocking).
        candidates = np.stack([
            self.pipeline.restore(
                lq,
                steps=self.settings.steps,
                cfg=self.settings.cfg,
                seed=[candidate_seed(photo.seeds[n], k) for photo, n in batch],
                sampler=self.settings.sampler,  # type: ignore[arg-type]
                color_fix=self.settings.color_fix,  # type: ignore[arg-type]
                batch_size=len(batch),
            ).permute(0, 2, 3, 1).cpu().numpy()
            for k in range(self.settings.candidates)
        ])
        seconds = time.perf_counter() - start
        self.summary.model_seconds += seconds
        self.summary.batches += 1
        for index, (photo, n) in enumerate(batch):
            photo.model_seconds += seconds / len(batch)
            chosen = 0
            if self.settings.candidates > 1:
                chosen, similarities = self._pick(photo, n, candidates[:, index])
                photo.picks[n] = (chosen, similarities)
            photo.restored[n] = candidates[chosen, index]

    def _pick(self, photo: PreparedPhoto, n: int, candidates: np.ndarray) -> tuple[int, list[float]]:
        """The candidate of face ``n`` most similar to its input crop, and every candidate's
        similarity (rounded to 1e-4; ties go to the lower candidate number)."""
        assert self.picker is not None
        landmarks = face_landmarks(photo)
        own = None if landmarks is None else [landmarks[n]]
        reference = self.picker.embed([photo.crops[n]], own)
        embedded = self.picker.embed(list(candidates), None if own is None else own * len(candidates))
        scores = self.picker.compare_embeddings(np.repeat(reference, len(candidates), axis=0), embedded)
        similarities = [score.similarity for score in scores]
        return int(np.argmax(similarities)), [round(value, 4) for value in similarities]

    def _identity(self, photo: PreparedPhoto) -> dict[str, Any]:
        from ..identity import compare

        assert self.embedder is not None
        restored = [photo.restored[n] for n in range(photo.face_count)]
        landmarks = face_landmarks(photo)
        try:
            scores = compare(self.embedder, list(photo.crops), restored, landmarks, landmarks)
        except (AuthFaceError, ValueError) as err:
            return {"identity_error": str(err)}
        return {"identity_embedder": self.embedder.name, "identity": [asdict(score) for score in scores]}

    def _finish(self, photo: PreparedPhoto | _Failed) -> None:
        """Write a restored photo and record it (in the writer thread), or record a failure."""
        if isinstance(photo, _Failed):
            self._record_failure(photo.file, photo.error)
            return
        try:
            data = finish_photo(photo)
            extra = self._identity(photo) if self.embedder is not None and photo.face_count else {}
            write_bytes_atomic(photo.target, data)
        except (AuthFaceError, ValueError, OSError) as err:
            self._record_failure(photo.file, err)
            return
        record = {
            "path": photo.file.relative,
            "status": "done",
            "output": photo.target.relative_to(self.out).as_posix(),
            "output_bytes": len(data),
            "faces": photo.face_count,
            "boxes": photo.boxes(),
            "seeds": photo.seeds,
            "seconds": round(time.perf_counter() - photo.started, 4),
            "prepare_seconds": round(photo.prepare_seconds, 4),
            "model_seconds": round(photo.model_seconds, 4),
            **self._candidates(photo),
            **extra,
            **self._common(),
        }
        append_record(self.manifest, record)
        self.summary.done += 1
        self.summary.faces += photo.face_count
        if photo.face_count == 0:
            logger.warning("no face found in %s: copied through unchanged to %s", photo.file.source, photo.target)
        else:
            logger.info("wrote %s (%d face(s))", photo.target, photo.face_count)

    def _candidates(self, photo: PreparedPhoto) -> dict[str, Any]:
        if not photo.picks:
            return {}
        picks = [photo.picks[n] for n in range(photo.face_count)]
        return {"candidate_embedder": self.picker.name if self.picker is not None else None,
                "candidates": [{"chosen": chosen, "similarities": similarities} for chosen, similarities in picks]}

    def _record_failure(self, file: InputFile, error: Exception) -> None:
        logger.error("%s: %s", file.source, error if isinstance(error, AuthFaceError) else repr(error))
        append_record(self.manifest, {"path": file.relative, "status": "failed", "error": str(error), **self._common()})
        self.summary.failed += 1

    def _common(self) -> dict[str, Any]:
        return run_fields(self._settings_record(), self.rank)
