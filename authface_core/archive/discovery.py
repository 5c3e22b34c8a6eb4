"""Which files ``authface restore`` works on: the inputs named on the command line, folders walked
recursively, each file given a stable relative path (its output name, seed and manifest key)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AuthFaceError

# The still-image formats OpenCV's imdecode reads (its imgcodecs documentation, "imread").
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    (".png", ".jpg", ".jpeg", ".jpe", ".jp2", ".bmp", ".dib", ".tif", ".tiff", ".webp",
     ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".exr", ".hdr", ".pic")
)
OUTPUT_SUFFIX = ".png"


class InputError(AuthFaceError):
    """An input or output path of ``authface restore`` cannot be used; the message says why."""


@dataclass(frozen=True)
class InputFile:
    """One file to restore. ``relative`` (POSIX separators) is its path below the folder it was
    found in, or its bare name when it was named directly: it places the output below ``--out``,
    derives the seeds and keys the manifest. ``kind`` is "image" or "video"."""

    source: Path
    relative: str
    kind: str

    def image_target(self, out: Path) -> Path:
        """``out/<relative with a .png suffix>``, where an image's restoration is written."""
        return out / Path(self.relative).with_suffix(OUTPUT_SUFFIX)


@dataclass
class Inputs:
    """What :func:`discover` found: the files in a stable order (sorted by relative path) and
    the files it left out because they are neither images nor videos."""

    files: list[InputFile] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[InputFile]:
        return [f for f in self.files if f.kind == kind]


def _kind(path: Path) -> str | None:
    from ..video.media import is_video

    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return "video" if is_video(path) else None


def _walk(folder: Path, out: Path) -> list[Path]:
    """Files below ``folder`` in sorted order, leaving out hidden entries and the output folder
    (when it lies inside the input, a rerun must not restore its own results)."""
    out_resolved = out.resolve()
    found = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != out_resolved)
        found += [here / name for name in sorted(files) if not name.startswith(".")]
    return found


def discover(paths: Sequence[Path], out: Path) -> Inputs:
    """The images and videos of ``paths`` (files or folders, folders walked recursively).

    Files named directly are taken whatever their suffix (a wrong one fails when decoded); files
    found in folders are taken by suffix (:data:`IMAGE_SUFFIXES`, video suffixes) and the rest
    listed in ``skipped``. Raises InputError for a path that does not exist, for two inputs that
    would write the same output and for an output that would overwrite an input.
    """
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InputError(f"input file(s) or folder(s) not found: {', '.join(missing)}")
    inputs = Inputs()
    for path in paths:
        if path.is_dir():
            for file in _walk(path, out):
                kind = _kind(file)
                if kind is None:
                    inputs.skipped.append(file)
                else:
                    inputs.files.append(InputFile(file, file.relative_to(path).as_posix(), kind))
        else:
            inputs.files.append(InputFile(path, path.name, _kind(path) or "image"))
    inputs.files.sort(key=lambda f: f.relative)
    _check_targets(inputs.of_kind("image"), out)
    return inputs


def _check_targets(images: Sequence[InputFile], out: Path) -> None:
    seen: dict[Path, InputFile] = {}
    for image in images:
        target = image.image_target(out)
        if target in seen:
            raise InputError(
                f"{seen[target].source} and {image.source} would both be written to {target}; rename one of them"
            )
        seen[target] = image
    sources = {image.source.resolve() for image in images}
    for target in seen:
        if target.resolve() in sources:
            raise InputError(f"writing {target} would overwrite an input image; choose another --out folder")
