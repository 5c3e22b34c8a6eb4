"""Metric networks whose weights are read from a local folder (``--weights-dir``), never fetched.

A metric whose files are missing raises MetricUnavailable naming each file, the folder it must
be in and where it comes from; the evaluation reports the metric as skipped and goes on.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import AuthFaceError


class MetricUnavailable(AuthFaceError):
    """A metric cannot run here (package or weight file missing); the message says how to fix it."""


def need_package(module: str, metric: str, pip_name: str) -> None:
    """Raise MetricUnavailable when ``module`` is not importable."""
    if importlib.util.find_spec(module) is None:
        raise MetricUnavailable(f"{metric} needs the Python package {pip_name!r}: pip install {pip_name}")


def need_files(weights_dir: Path | None, metric: str, files: dict[str, str]) -> list[Path]:
    """The paths of ``files`` (file name -> where to get it) in ``weights_dir``; raises
    MetricUnavailable naming every missing file, the folder and the source."""
    if weights_dir is None:
        listing = "; ".join(f"{name} ({source})" for name, source in files.items())
        raise MetricUnavailable(f"{metric} needs --weights-dir DIR holding {listing}")
    folder = Path(weights_dir).expanduser().resolve()
    missing = {name: source for name, source in files.items() if not (folder / name).is_file()}
    if missing:
        listing = "; ".join(f"{name} ({source})" for name, source in missing.items())
        raise MetricUnavailable(f"{metric} needs these files in {folder}, missing: {listing}")
    return [folder / name for name in files]
