"""Stage II training pairs: aligned HQ faces, their eye/mouth boxes, LQ inputs degraded on the fly.

Determinism. Every random choice is a pure function of the run's ``seed`` and a position, never
of a global generator or worker state, so a resumed run (or another worker count, or a
validation re-run) sees exactly the same data:

- the order of epoch ``e`` is ``default_rng([seed, ORDER_STREAM, e]).permutation(N)``;
- the LQ of sample ``i`` in epoch ``e`` uses ``default_rng([seed, TRAIN_STREAM, e, i])``, so each
  epoch degrades each face anew;
- held-out validation LQs use ``default_rng([seed, VALIDATION_STREAM, i])``, the same at every
  validation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from authface_core.degradation import DegradationConfig, degrade
from authface_core.faces.align import apply_affine, resize_matrix
from authface_core.faces.masks import component_boxes
from training.prepare_stage2 import CACHE_NAME, LandmarkRecord, list_images, read_cache, read_square_rgb

ORDER_STREAM = 0
TRAIN_STREAM = 1
VALIDATION_STREAM = 2

Key = tuple[int, int]


def lq_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator that degrades training sample ``index`` in ``epoch``."""
    return np.random.default_rng([seed, TRAIN_STREAM, epoch, index])


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """(S, S, 3) float32 image resized to (size, size, 3): area averaging when shrinking (the
    paper's 1024 -> 512 FFHQ resize), bicubic clipped to [0, 1] when enlarging."""
    if image.shape[0] == size:
        return image
    interpolation = cv2.INTER_AREA if size < image.shape[0] else cv2.INTER_CUBIC
    return np.clip(cv2.resize(image, (size, size), interpolation=interpolation), 0.0, 1.0)


def to_chw(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float array -> (3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


class Stage2Dataset(Dataset):
    """Aligned HQ faces with cached landmarks, degraded on the fly.

    Args:
        hq_dir: the folder given to ``prepare_stage2``.
        landmarks: its ``OUT_DIR`` (or the ``landmarks.jsonl`` file itself).
        resolution: training side in pixels (paper: 512), a multiple of 8; images of another
            size are resized and their landmarks mapped with them.
        degradation: ranges of the LQ synthesis (paper's GFPGAN ranges by default).
        seed: the run's seed (module docstring).

    Faces the cache could not landmark, and cache entries whose image is gone, are left out.
    Indexing takes a key ``(epoch, index)`` (:class:`EpochBatchSampler` yields them) and returns
    ``{"hq": (3, R, R) float32 in [0, 1], "lq": the same shape, "boxes": (3, 4) float32
    component boxes at R (``faces.masks.component_boxes``: image-left eye, image-right eye,
    mouth; pixel-corner coordinates), "index": int, "epoch": int}``.

    Raises:
        FileNotFoundError: no cache file. ValueError: no usable face, bad resolution.
    """

    def __init__(self, hq_dir: str | Path, landmarks: str | Path, resolution: int = 512,
                 degradation: DegradationConfig = DegradationConfig(), seed: int = 0) -> None:
        if resolution < 8 or resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8 (the VAE's factor), got {resolution}")
        self.hq_dir = Path(hq_dir)
        cache = Path(landmarks)
        cache = cache / CACHE_NAME if cache.is_dir() else cache
        if not cache.is_file():
            raise FileNotFoundError(
                f"no landmark cache at {cache}: run python -m training.prepare_stage2 {self.hq_dir} OUT_DIR first")
        records = read_cache(cache)
        self.records: list[LandmarkRecord] = [
            records[rel] for rel in sorted(records) if records[rel].ok and (self.hq_dir / rel).is_file()]
        if not self.records:
            raise ValueError(f"{cache} lists no landmarked face that exists under {self.hq_dir}")
        self.resolution = int(resolution)
        self.degradation = degradation
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.records)

    def hq(self, index: int) -> np.ndarray:
        """HQ face ``index`` at the training resolution, (R, R, 3) float32 in [0, 1]."""
        record = self.records[index]
        image = read_square_rgb(self.hq_dir / record.path)
        if image.shape[0] != record.size:
            raise ValueError(
                f"{record.path} is {image.shape[0]} px but was {record.size} px when landmarked: "
                "the image changed; re-run prepare_stage2 with a fresh OUT_DIR")
        return resize_square(image, self.resolution)

    def boxes(self, index: int) -> np.ndarray:
        """(3, 4) float32 eye/mouth boxes of face ``index`` at the training resolution."""
        record = self.records[index]
        landmarks = apply_affine(resize_matrix(record.size, self.resolution), record.landmarks)
        return component_boxes(landmarks)

    def sample(self, epoch: int, index: int) -> dict[str, torch.Tensor | int]:
        hq = self.hq(index)
        lq = degrade(hq, self.degradation, lq_generator(self.seed, epoch, index))
        return {"hq": to_chw(hq), "lq": to_chw(lq), "boxes": torch.from_numpy(self.boxes(index)),
                "index": index, "epoch": epoch}

    def __getitem__(self, key: Key) -> dict[str, torch.Tensor | int]:
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError(f"index the dataset with (epoch, index) keys (EpochBatchSampler), got {key!r}")
        epoch, index = key
        return self.sample(int(epoch), int(index))


class EpochBatchSampler:
    """Endless batches of ``(epoch, index)`` keys for one process, from a given position on.

    A global micro-batch ``m`` holds ``batch_size * num_replicas`` samples: positions
    ``[j * G, (j + 1) * G)`` of epoch ``e``'s permutation, ``(e, j) = divmod(m, per_epoch)``,
    ``G`` the global micro-batch size; process ``rank`` takes its ``batch_size`` slice. The last
    ``N mod G`` samples of each epoch's order are dropped (they differ from epoch to epoch).
    ``start`` is the first global micro-batch to yield: the data position of a resumed run.
    """

    def __init__(self, length: int, batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 start: int = 0) -> None:
        if batch_size < 1 or num_replicas < 1 or not 0 <= rank < num_replicas or start < 0:
            raise ValueError(f"bad sampler settings: batch_size {batch_size}, num_replicas {num_replicas}, "
                             f"rank {rank}, start {start}")
        self.global_batch = batch_size * num_replicas
        if length < self.global_batch:
            raise ValueError(
                f"the dataset holds {length} faces, fewer than one global batch of {self.global_batch} "
                f"({batch_size} per process x {num_replicas} processes): lower --train-batch-size or add data")
        self.length = length
        self.batch_size = batch_size
        self.rank = rank
        self.seed = seed
        self.start = start
        self.per_epoch = length // self.global_batch

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, ORDER_STREAM, epoch]).permutation(self.length)

    def position(self, micro_batch: int) -> Key:
        """(epoch, micro-batch within the epoch) of a global micro-batch number."""
        epoch, within = divmod(micro_batch, self.per_epoch)
        return epoch, within

    def keys(self, micro_batch: int, order: np.ndarray | None = None) -> list[Key]:
        """This process's keys of global micro-batch ``micro_batch``."""
        epoch, within = self.position(micro_batch)
        order = self.order(epoch) if order is None else order
        first = within * self.global_batch + self.rank * self.batch_size
        return [(epoch, int(i)) for i in order[first:first + self.batch_size]]

    def __iter__(self) -> Iterator[list[Key]]:
        micro_batch = self.start
        cached: tuple[int, np.ndarray] | None = None
        while True:
            epoch, _ = self.position(micro_batch)
            if cached is None or cached[0] != epoch:
                cached = (epoch, self.order(epoch))
            yield self.keys(micro_batch, cached[1])
            micro_batch += 1


def validation_pairs(folder: str | Path, count: int, resolution: int, degradation: DegradationConfig,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The first ``count`` images of ``folder`` (sorted, recursive) as held-out pairs.

    Returns ``(hq, lq, names)``: (n, 3, R, R) float32 tensors in [0, 1] (n = min(count, images))
    and the images' relative paths. LQ ``i`` is degraded with ``default_rng([seed,
    VALIDATION_STREAM, i])``, identical at every validation. Raises FileNotFoundError for a
    folder without images, ValueError for a non-square image.
    """
    root = Path(folder)
    names: Sequence[str] = list_images(root)[:count]
    if not names:
        raise FileNotFoundError(f"no validation images under {root}")
    hq, lq = [], []
    for i, name in enumerate(names):
        image = resize_square(read_square_rgb(root / name), resolution)
        hq.append(to_chw(image))
        lq.append(to_chw(degrade(image, degradation, np.random.default_rng([seed, VALIDATION_STREAM, i]))))
    return torch.stack(hq), torch.stack(lq), list(names)
