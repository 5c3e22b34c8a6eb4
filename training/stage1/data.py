"""Stage I training data: captioned face images, and the seeded, resumable order they are read in.

Order: the data is read as an endless stream of epochs, each a permutation of the dataset drawn
from ``torch.Generator().manual_seed(seed + epoch)``. Optimizer step ``s`` consumes the next
``G = train_batch_size x gradient_accumulation x processes`` samples of the stream; within a step,
micro-step ``m`` of process ``r`` takes samples ``(m x processes + r) x train_batch_size`` onwards,
so processes read disjoint shards. Each sample carries its offset in the stream, which seeds its
random draws (see :func:`sample_seed`): how a step's samples are split over processes and
micro-steps does not change what is computed. The reader's position is (epoch, position in that
epoch's permutation): saved with each checkpoint, it makes a resumed run read exactly what the
uninterrupted run would have.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from training.data.captions import compose_prompt, scan_dataset
from training.data.prepare_faces import read_photo

logger = logging.getLogger("authface.training")


@dataclass(frozen=True)
class StreamPosition:
    """Where the reader stands: ``position`` samples into the permutation of ``epoch``."""

    epoch: int
    position: int

    def offset(self, dataset_size: int) -> int:
        """Samples read since the start of the stream."""
        return self.epoch * dataset_size + self.position

    @classmethod
    def at(cls, offset: int, dataset_size: int) -> StreamPosition:
        epoch, position = divmod(offset, dataset_size)
        return cls(epoch, position)


def sample_seed(seed: int, offset: int) -> int:
    """A 63-bit seed for the random draws of the sample at stream ``offset`` in a run of ``seed``."""
    state = np.random.SeedSequence([seed, offset]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


class StreamSampler(Sampler[list[tuple[int, int]]]):
    """Endless micro-batches for one process (see the module docstring).

    Yields lists of ``batch_size`` (stream offset, dataset index) pairs: for each optimizer step
    from ``start`` on, this process's ``accumulation`` micro-batches in order.
    """

    def __init__(self, dataset_size: int, batch_size: int, accumulation: int, processes: int, rank: int,
                 seed: int, start: StreamPosition) -> None:
        if dataset_size < 1:
            raise ValueError("the dataset is empty")
        if not 0 <= rank < processes:
            raise ValueError(f"rank {rank} is outside 0..{processes - 1}")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.accumulation = accumulation
        self.processes = processes
        self.rank = rank
        self.seed = seed
        self.start = start

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.accumulation * self.processes

    def permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.dataset_size, generator=generator).tolist()

    def _stream(self, first: int, count: int) -> list[int]:
        """``count`` stream entries from offset ``first``."""
        out: list[int] = []
        offset = first
        while len(out) < count:
            where = StreamPosition.at(offset, self.dataset_size)
            take = min(count - len(out), self.dataset_size - where.position)
            out.extend(self.permutation(where.epoch)[where.position:where.position + take])
            offset += take
        return out

    def step_batches(self, step_offset: int) -> list[list[tuple[int, int]]]:
        """This process's micro-batches of the step starting at stream offset ``step_offset``."""
        samples = self._stream(step_offset, self.samples_per_step)
        batches = []
        for micro in range(self.accumulation):
            first = (micro * self.processes + self.rank) * self.batch_size
            batches.append([(step_offset + k, samples[k]) for k in range(first, first + self.batch_size)])
        return batches

    def position_after(self, steps: int) -> StreamPosition:
        """The reader's position after ``steps`` optimizer steps from ``start``."""
        return StreamPosition.at(self.start.offset(self.dataset_size) + steps * self.samples_per_step,
                                 self.dataset_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        offset = self.start.offset(self.dataset_size)
        while True:
            yield from self.step_batches(offset)
            offset += self.samples_per_step


def fit_square(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Resize an HxWx3 float32 image so its shorter side is ``size`` (area-averaging when
    shrinking, Lanczos when enlarging), then centre-crop to ``size`` x ``size``, values clipped to
    [0, 1]. Returns the crop and its (top, left) in the resized image."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        method = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LANCZOS4
        image = cv2.resize(image, (new_w, new_h), interpolation=method)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.clip(image[top:top + size, left:left + size], 0.0, 1.0), (top, left)


class CaptionedFaces(Dataset):
    """The captioned images under ``root`` (see :func:`training.data.captions.scan_dataset`).

    Images are read as :func:`training.data.prepare_faces.read_photo` reads them (any bit depth,
    grey repeated to RGB, EXIF rotation applied; an undecodable file raises its
    ``CorruptImageError``). Item ``i`` is a dict: ``pixels`` [3, size, size] float32 in
    [-1, 1], ``time_ids`` [6] float32
    (SDXL's original height/width, crop top/left, target height/width), ``index`` ``i``.
    ``prompts[i]`` is the caption prompt of image ``i``. Images without a usable caption are
    left out and logged. Raises ValueError when no image is usable.
    """

    def __init__(self, root: str | Path, size: int) -> None:
        usable, rejected = scan_dataset(root)
        for path, reason in rejected[:10]:
            logger.warning("skipping %s: %s", path, reason)
        if len(rejected) > 10:
            logger.warning("... and %d more images without a usable caption", len(rejected) - 10)
        if not usable:
            raise ValueError(
                f"no captioned images under {root} ({len(rejected)} without a usable caption): point "
                "data_dir at the images/ folder written by `python -m training.prepare_stage1`"
            )
        self.root = Path(root)
        self.size = size
        self.paths = [path for path, _ in usable]
        self.prompts = [compose_prompt(caption) for _, caption in usable]
        self.skipped = len(rejected)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        image, _ = read_photo(self.paths[index])
        height, width = image.shape[:2]
        crop, (top, left) = fit_square(image, self.size)
        pixels = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1) * 2.0 - 1.0
        time_ids = torch.tensor([height, width, top, left, self.size, self.size], dtype=torch.float32)
        return {"pixels": pixels, "time_ids": time_ids, "index": index}


class StreamItems(Dataset):
    """``dataset`` addressed by the (stream offset, index) pairs :class:`StreamSampler` yields;
    each item gains ``offset``."""

    def __init__(self, dataset: CaptionedFaces) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor | int]:
        offset, index = key
        return {**self.dataset[index], "offset": offset}
