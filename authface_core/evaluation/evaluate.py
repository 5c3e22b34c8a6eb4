"""``authface evaluate``: restored folders scored against GT / LQ folders, paired by file name.

Per image and method: PSNR, SSIM, LPIPS (with GT); identity similarity, distance and kept flag
(against GT, or LQ without GT); LMD (with GT); MUSIQ, MANIQA, CLIP-IQA, NIQE (no reference).
Per method: FID. With both ``--gt`` and ``--lq``, the LQ inputs are scored as a method of their
own ("input") so tables show where the methods started. Problems with single images (corrupt
file, no partner, different sizes) are reported and the image is left out; metrics that cannot
run (package or weights missing) are reported as skipped, with the reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AuthFaceError
from .files import ImageFileError, list_images, read_rgb
from .fullref import CHANNELS, psnr, ssim
from .metrics import METRICS
from .weights import MetricUnavailable

logger = logging.getLogger("authface")

INPUT_METHOD = "input"


@dataclass
class EvalSettings:
    """What to score and how (see ``authface evaluate --help``)."""

    restored: list[Path]
    gt: Path | None = None
    lq: Path | None = None
    weights_dir: Path | None = None
    embedder: str = "dlib"
    insightface_root: Path | None = None
    pack: str = "buffalo_l"
    lpips_net: str = "alex"
    fid_reference: Path | None = None
    device: str = "cpu"
    batch_size: int = 8
    psnr_channel: str = "y"


@dataclass
class EvalResult:
    """Rows (one dict per method and image), per-method values (FID), skipped metrics with
    reasons, problems with single files, throughput (images/s per metric) and settings."""

    methods: dict[str, Path]
    rows: list[dict] = field(default_factory=list)
    per_method: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    throughput: dict[str, float] = field(default_factory=dict)
    embedder: dict[str, str | float] = field(default_factory=dict)
    reference_kind: str = "gt"
    psnr_channel: str = "y"

    def metric_keys(self) -> list[str]:
        """Per-image metric columns that hold at least one value."""
        return [m.key for m in METRICS if any(not _missing(row.get(m.key)) for row in self.rows)]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def method_names(folders: Sequence[Path]) -> dict[str, Path]:
    """Method name (folder name, made unique with its parent's name or a number) -> folder."""
    names: dict[str, Path] = {}
    for folder in folders:
        name = folder.resolve().name or str(folder)
        if name in names or name == INPUT_METHOD:
            name = f"{folder.resolve().parent.name}/{name}"
        base, count = name, 2
        while name in names:
            name, count = f"{base}#{count}", count + 1
        names[name] = folder
    return names


class _Timer:
    """Seconds and images per metric, for the images/s figures of the report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.images: dict[str, int] = defaultdict(int)

    def run(self, key: str, count: int, fn: Callable[[], object]):
        start = time.perf_counter()
        out = fn()
        self.seconds[key] += time.perf_counter() - start
        self.images[key] += count
        return out

    def rates(self) -> dict[str, float]:
        return {k: self.images[k] / s for k, s in self.seconds.items() if s > 0}


def _load_optional(result: EvalResult, key: str, load: Callable[[], object]) -> object | None:
    try:
        return load()
    except (MetricUnavailable, AuthFaceError, ImportError) as err:
        result.skipped[key] = str(err)
        logger.warning("%s skipped: %s", key, err)
        return None


def evaluate(settings: EvalSettings) -> EvalResult:
    """Score every restored folder (see the module docstring). Raises ValueError for unusable
    settings (no restored folder, no reference at all, unknown embedder)."""
    if not settings.restored:
        raise ValueError("give at least one --restored DIR")
    if settings.gt is None and settings.lq is None:
        raise ValueError("give --gt DIR (full-reference metrics and identity) or --lq DIR (identity vs input)")
    if settings.psnr_channel not in CHANNELS:
        raise ValueError(f"--psnr-channel must be one of {', '.join(CHANNELS)}, got {settings.psnr_channel!r}")
    if settings.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {settings.batch_size}")
    methods = method_names(settings.restored)
    if settings.gt is not None and settings.lq is not None:
        methods = {INPUT_METHOD: settings.lq, **methods}
    reference_dir = settings.gt if settings.gt is not None else settings.lq
    result = EvalResult(methods=methods, reference_kind="gt" if settings.gt is not None else "lq",
                        psnr_channel=settings.psnr_channel)
    references, notes = list_images(reference_dir)
    result.problems += notes

    from ..identity import load_embedder

    embedder = load_embedder(settings.embedder, settings.insightface_root, settings.pack)
    result.embedder = {
        "name": embedder.name, "distance": embedder.distance_name, "threshold_metric": embedder.threshold_metric,
        "same_person_threshold": embedder.same_person_threshold, "threshold_source": embedder.threshold_source,
    }
    from .identity_metrics import IdentityScorer

    scorer = IdentityScorer(embedder)
    full_reference = settings.gt is not None
    lpips = None
    if full_reference:
        from .perceptual import LPIPSMetric

        lpips = _load_optional(result, "lpips", lambda: LPIPSMetric(settings.weights_dir, settings.lpips_net,
                                                                   settings.device))
    from .noref import PYIQA_METRICS, PyiqaMetric

    noref = {}
    for name in PYIQA_METRICS:
        metric = _load_optional(result, name, lambda n=name: PyiqaMetric(n, settings.weights_dir, settings.device))
        if metric is not None:
            noref[name] = metric
    if not full_reference:
        for key in ("psnr", "ssim", "lpips", "lmd"):
            result.skipped[key] = "needs --gt DIR (ground-truth faces)"

    timer = _Timer()
    for method, folder in methods.items():
        try:
            images, notes = list_images(folder)
        except ImageFileError as err:
            result.problems.append(f"{method}: {err}")
            continue
        result.problems += notes
        for name in sorted(set(references) - set(images)):
            if method != INPUT_METHOD:
                result.problems.append(f"{method}: no restored image named {name}.* in {folder} (reference "
                                       f"{references[name].name} left out for this method)")
        pairs = []
        for name in sorted(images):
            if name not in references:
                result.problems.append(f"{method}: {images[name]} has no partner named {name}.* in {reference_dir}; "
                                       "left out (files are paired by name without extension)")
                continue
            pairs.append(name)
        for start in range(0, len(pairs), settings.batch_size):
            _score_batch(result, method, pairs[start:start + settings.batch_size], images, references,
                         scorer, lpips, noref, full_reference, timer)
        fid_reference = settings.fid_reference or settings.gt
        if fid_reference is not None and "fid" not in result.skipped:
            from .noref import fid

            try:
                value = timer.run("fid", len(pairs), lambda: fid(folder, fid_reference, settings.weights_dir,
                                                                 settings.device))
                result.per_method.setdefault(method, {})["fid"] = value
            except (MetricUnavailable, ImportError) as err:
                result.skipped["fid"] = str(err)
                logger.warning("fid skipped: %s", err)
        elif fid_reference is None:
            result.skipped["fid"] = "needs --gt DIR or --fid-reference DIR"
    result.throughput = timer.rates()
    for problem in result.problems:
        logger.warning("%s", problem)
    return result


def _score_batch(result: EvalResult, method: str, names: list[str], images: dict[str, Path],
                 references: dict[str, Path], scorer, lpips, noref: dict, full_reference: bool,
                 timer: _Timer) -> None:
    """Score one batch of pairs, appending a row per image that could be read and paired."""
    restored, reference, kept = [], [], []
    for name in names:
        try:
            a, b = read_rgb(images[name]), read_rgb(references[name])
        except ImageFileError as err:
            result.problems.append(f"{method}: {err}; left out")
            continue
        if a.shape != b.shape:
            result.problems.append(f"{method}: {images[name]} is {a.shape[1]}x{a.shape[0]} but {references[name]} "
                                   f"is {b.shape[1]}x{b.shape[0]}; left out (restore at the reference's size, "
                                   "e.g. authface restore --size)")
            continue
        restored.append(a)
        reference.append(b)
        kept.append(name)
    if not kept:
        return
    rows = [{"method": method, "name": name, "file": str(images[name]), "reference": str(references[name])}
            for name in kept]
    count = len(kept)
    if full_reference:
        for row, a, b in zip(rows, restored, reference, strict=True):
            row["psnr"] = timer.run("psnr", 1, lambda a=a, b=b: psnr(a, b, result.psnr_channel))
            row["ssim"] = timer.run("ssim", 1, lambda a=a, b=b: ssim(a, b, result.psnr_channel))
        if lpips is not None:
            values = timer.run("lpips", count, lambda: lpips(restored, reference))
            for row, value in zip(rows, values, strict=True):
                row["lpips"] = float(value)
    comparisons, lmd = timer.run("identity", count, lambda: scorer.score(kept, restored, reference))
    for row, comparison, distance in zip(rows, comparisons, lmd, strict=True):
        row["id_similarity"] = comparison.similarity
        row["id_distance"] = comparison.distance
        row["id_kept"] = 1.0 if comparison.same_person else 0.0
        if full_reference:
            row["lmd"] = distance
    for key, metric in noref.items():
        values = timer.run(key, count, lambda metric=metric: metric(restored))
        for row, value in zip(rows, values, strict=True):
            row[key] = float(value)
    result.rows += rows


def summarise(result: EvalResult) -> dict[str, dict[str, float]]:
    """Per method: the mean of every metric over its images (finite values), FID, and ``images``."""
    summary: dict[str, dict[str, float]] = {}
    for method in result.methods:
        rows = [row for row in result.rows if row["method"] == method]
        entry: dict[str, float] = {"images": float(len(rows))}
        for key in result.metric_keys():
            values = [row[key] for row in rows if not _missing(row.get(key)) and math.isfinite(row[key])]
            if values:
                entry[key] = float(np.mean(values))
        entry.update(result.per_method.get(method, {}))
        summary[method] = entry
    return summary
