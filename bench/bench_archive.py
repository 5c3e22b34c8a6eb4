"""Archive mode of ``authface restore``: photos/s, faces/s and how busy the model keeps the device.

A small real archive (tests/archive_photos.py: crops and resizes of t1.jpg, Tom Hanks and the
astronaut, 8 photos with about 15 dlib faces and one faceless image) is restored by
:class:`~authface_core.archive.ArchiveRun` (the code behind ``authface restore IN_DIR``) with the
random-weight release fixture (Vega-shaped SDXL, tests/release_fixture.py) loaded once, at each
step count and batch size asked for, each run into a fresh output folder. Printed per run: wall
seconds, photos/s, faces/s (faces kept: with ``--candidates N`` each is restored N times and
picked by dlib identity) and the busy fraction = seconds inside the model calls (the
pipeline's ``restore``: text encoding, UNet + ControlNet steps, VAE decode, colour fix) / wall
seconds of the run. The rest of the wall time is what the device waits for: reading and
detection the prefetch thread has not finished yet, paste-back, PNG encoding and the fsynced
writes.

Run: ``python -m bench.bench_archive [--size 128] [--steps 1 4] [--batch-sizes 1 4] [--candidates 1 3]``. On a CPU
the model and the prefetch thread share the same cores, so the busy fraction here is a lower
bound of what a GPU run sees.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="face crop size (default 128)")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 4], help="step counts (default 1 4)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4], help="faces per model call (default 1 4)")
    parser.add_argument("--candidates", type=int, nargs="+", default=[1], help="best-of-N counts (default 1)")
    args = parser.parse_args([] if argv is None else argv)

    sys.path.insert(0, str(REPO / "tests"))
    from archive_photos import build_archive
    from release_fixture import cached_release

    from authface_core.archive import ArchiveRun, ArchiveSettings, Rank, discover
    from authface_core.faces.detect import get_detector
    from authface_core.identity import load_embedder
    from authface_core.pipeline import AuthFacePipeline

    release = cached_release("plain")
    start = time.perf_counter()
    pipeline = AuthFacePipeline.from_release(release)
    print(f"release {release.name} loaded in {time.perf_counter() - start:.1f} s; crops {args.size} px, CFG 8, ddpm")
    detector = get_detector("dlib")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = discover([build_archive(root / "archive")], root / "out").of_kind("image")
        # One untimed photo first: the prompt encoding is cached after it, as in a long run.
        warm = ArchiveSettings(str(release), 1, 8.0, 0, "ddpm", "wavelet", args.size, False, "fp32")
        ArchiveRun(pipeline, detector, warm, root / "warm", Rank(), 1).run(images[-2:-1])
        picker = load_embedder("dlib")
        print(f"{'steps':>5} {'batch':>5} {'cands':>5} {'photos':>6} {'faces':>5} {'batches':>7} {'wall s':>7} "
              f"{'photos/s':>8} {'faces/s':>8} {'busy':>5}")
        for steps in args.steps:
            for batch in args.batch_sizes:
                for candidates in args.candidates:
                    settings = ArchiveSettings(str(release), steps, 8.0, 0, "ddpm", "wavelet", args.size, False, "fp32",
                                               candidates)
                    out = root / f"out-{steps}-{batch}-{candidates}"
                    summary = ArchiveRun(pipeline, detector, settings, out, Rank(), batch,
                                         picker=picker if candidates > 1 else None).run(images)
                    wall = summary.wall_seconds
                    print(f"{steps:>5} {batch:>5} {candidates:>5} {summary.done:>6} {summary.faces:>5} "
                          f"{summary.batches:>7} {wall:>7.1f} {summary.done / wall:>8.3f} {summary.faces / wall:>8.3f} "
                          f"{summary.busy_fraction:>5.0%}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
