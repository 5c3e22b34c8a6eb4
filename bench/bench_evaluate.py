"""Throughput of ``authface evaluate``'s metrics on CPU, and the identity check's cost per face
against one sampling step.

The six faces of insightface's t1.jpg, FFHQ-aligned at ``--size`` (default 512, the paper's
evaluation size), with a GFPGAN-degraded copy of each as the "restored" image. Each metric is
timed as the median of ``--repeats`` runs over the six pairs (one warm-up run first), as images
per second:

- PSNR and SSIM (:mod:`authface_core.evaluation.fullref`, Y channel);
- LPIPS (lpips package, AlexNet backbone; random torchvision weights in a temporary folder:
  the cost does not depend on the values);
- identity with dlib's ResNet: landmarks found on both crops + embedding + comparison, as
  ``evaluate`` does it (references cached, so one embedding per image), and the embedding alone
  with known landmarks;
- identity with ArcFace: tests/arcface_fixture.py's random-weight IResNet-50 (``w600k_r50.onnx``'s
  architecture) through onnxruntime;
- LMD: the 68 landmarks of the restored crop (the GT's are cached).

The identity check per face (dlib, landmarks found) is set against one full-SDXL sampling step at
512x512 (``--step-seconds``; default bench_overhead's figure from docs/machine.md).

Run: ``python -m bench.bench_evaluate [--size 512] [--repeats 3] [--step-seconds S]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision

from authface_core.degradation import DegradationConfig, degrade
from authface_core.evaluation.fullref import psnr, ssim
from authface_core.evaluation.identity_metrics import IdentityScorer
from authface_core.evaluation.perceptual import BACKBONE_FILES, LPIPSMetric
from authface_core.faces.align import align_faces
from authface_core.faces.detect import detect_faces
from authface_core.identity import load_embedder
from authface_core.identity.landmarks import crop_landmarks

from .bench_overhead import DESIGN_STEP_SECONDS, DESIGN_STEP_SOURCE, _read, _t1_path
from .timing import median_seconds

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-seconds", type=float, default=DESIGN_STEP_SECONDS)
    # Under ``python -m bench`` main() gets no arguments: the command line names benchmarks.
    args = parser.parse_args(argv or [])
    torch.set_grad_enabled(False)

    photo = _read(_t1_path())
    faces = detect_faces([photo])
    crops, _ = align_faces([photo], faces, size=args.size, method="ffhq")
    gt = [np.clip(c, 0.0, 1.0) for c in crops]
    rng = np.random.default_rng(0)
    restored = [degrade(g, DegradationConfig(), rng) for g in gt]
    n = len(gt)
    names = [f"face{i}" for i in range(n)]

    sys.path.insert(0, str(REPO / "tests"))
    from arcface_fixture import cached_arcface_root

    rates: dict[str, float] = {}

    def rate(label: str, fn) -> float:
        seconds = median_seconds(fn, args.repeats)
        rates[label] = n / seconds
        return seconds / n

    rate("PSNR (Y)", lambda: [psnr(r, g) for r, g in zip(restored, gt, strict=True)])
    rate("SSIM (Y)", lambda: [ssim(r, g) for r, g in zip(restored, gt, strict=True)])
    with tempfile.TemporaryDirectory() as weights:
        torch.save(torchvision.models.alexnet().state_dict(), Path(weights) / BACKBONE_FILES["alex"])
        lpips = LPIPSMetric(Path(weights), "alex")
        rate("LPIPS (alex)", lambda: lpips(restored, gt))
    for name, root in (("dlib", None), ("arcface", cached_arcface_root())):
        embedder = load_embedder(name, insightface_root=root)
        scorer = IdentityScorer(embedder)
        scorer.reference(names, gt)
        per_face = rate(f"identity {embedder.name} (landmarks found + embed + compare)",
                        lambda s=scorer: s.score(names, restored, gt))
        landmarks = [crop_landmarks(r) for r in restored]
        rate(f"identity {embedder.name} (embed only, landmarks known)",
             lambda e=embedder: e.embed(restored, landmarks))
        if name == "dlib":
            dlib_per_face = per_face
    rate("LMD (68 landmarks of the restored crop)", lambda: [crop_landmarks(r) for r in restored])

    print(f"{n} face pairs of t1.jpg at {args.size}x{args.size}, CPU, {torch.get_num_threads()} threads")
    width = max(len(label) for label in rates)
    for label, value in rates.items():
        print(f"  {label:<{width}}  {value:8.1f} images/s")
    share = dlib_per_face / args.step_seconds
    print(f"identity check (dlib, as evaluate runs it) per face: {1000 * dlib_per_face:.0f} ms = "
          f"{100 * share:.2f}% of one 512 sampling step ({args.step_seconds} s: {DESIGN_STEP_SOURCE})")


if __name__ == "__main__":
    main(sys.argv[1:])
