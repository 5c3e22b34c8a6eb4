"""``authface restore`` over whole archives: folders walked recursively (:mod:`.discovery`), work
split between processes by rank (:mod:`.ranks`), faces batched across photos (:mod:`.run`),
atomic outputs and a resumable ``manifest.jsonl`` (:mod:`.manifest`), one progress bar and
per-rank logs (:mod:`.progress`), and ``--dry-run`` estimates (:mod:`.dryrun`).

Importing this package does not import torch.
"""

from .discovery import IMAGE_SUFFIXES, InputError, InputFile, Inputs, discover
from .dryrun import DryRunEstimate, dry_run
from .manifest import MANIFEST_NAME, read_records
from .progress import attach_rank_log
from .ranks import Rank, face_seed
from .run import ArchiveRun, ArchiveSettings, RunSummary

__all__ = [
    "IMAGE_SUFFIXES",
    "MANIFEST_NAME",
    "ArchiveRun",
    "ArchiveSettings",
    "DryRunEstimate",
    "InputError",
    "InputFile",
    "Inputs",
    "Rank",
    "RunSummary",
    "attach_rank_log",
    "discover",
    "dry_run",
    "face_seed",
    "read_records",
]
