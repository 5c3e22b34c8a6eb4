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
- LMD: the 68 landmarks of the restored crop (the GT's are cached);
- MUSIQ and NIQE through pyiqa (when installed) and FID's Inception features (clean-fid's
  legacy_pytorch network, per image) plus the Frechet distance of 3,000 x 2,048 features
  (CelebA-Test's size), all with random weights or parameters of the real format.

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
    _noref_rates(restored, rate)

    print(f"{n} face pairs of t1.jpg at {args.size}x{args.size}, CPU, {torch.get_num_threads()} threads")
    width = max(len(label) for label in rates)
    for label, value in rates.items():
        print(f"  {label:<{width}}  {value:8.1f} images/s")
    share = dlib_per_face / args.step_seconds
    print(f"identity check (dlib, as evaluate runs it) per face: {1000 * dlib_per_face:.0f} ms = "
          f"{100 * share:.2f}% of one 512 sampling step ({args.step_seconds} s: {DESIGN_STEP_SOURCE})")


def _noref_rates(restored: list[np.ndarray], rate) -> None:
    """MUSIQ, NIQE (pyiqa, when installed) and FID's Inception features, random weights."""
    import importlib.util
    import time

    import scipy.io

    from authface_core.evaluation.noref import (
        FID_FILE,
        PYIQA_METRICS,
        PyiqaMetric,
        fid_network,
        frechet_distance,
    )

    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder)
        torch.save(torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False,
                                                   init_weights=False).state_dict(), weights / FID_FILE)
        model = fid_network(weights)
        batch = torch.nn.functional.interpolate(
            torch.from_numpy(np.stack(restored).transpose(0, 3, 1, 2)).float() * 255, size=(299, 299), mode="bilinear")
        rate("FID Inception features (legacy_pytorch, 299 px)", lambda: model(batch))
        feats = np.random.default_rng(0).normal(size=(2, 3000, 2048))
        start = time.perf_counter()
        frechet_distance(feats[0], feats[1])
        print(f"FID distance of 3,000 vs 3,000 features: {time.perf_counter() - start:.1f} s")
        if importlib.util.find_spec("pyiqa") is None:
            print("pyiqa not installed: MUSIQ and NIQE not timed")
            return
        import pyiqa

        torch.save(pyiqa.create_metric("musiq", device="cpu", pretrained=False).net.state_dict(),
                   weights / PYIQA_METRICS["musiq"].file)
        a = np.random.default_rng(0).normal(size=(36, 36))
        scipy.io.savemat(weights / PYIQA_METRICS["niqe"].file,
                         {"mu_prisparam": np.zeros((1, 36)), "cov_prisparam": a @ a.T / 36 + np.eye(36)})
        for name in ("musiq", "niqe"):
            metric = PyiqaMetric(name, weights)
            rate(f"{name.upper()} (pyiqa)", lambda m=metric: m(restored))


if __name__ == "__main__":
    main(sys.argv[1:])
