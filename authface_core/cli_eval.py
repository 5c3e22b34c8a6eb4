"""``authface degrade`` and ``authface evaluate`` (see authface_core.evaluation)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

logger = logging.getLogger("authface")


def add_eval_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``degrade`` and ``evaluate`` on the ``authface`` sub-command parser; each sets
    ``handler`` to the function that runs it."""
    from .evaluation.fullref import CHANNELS
    from .evaluation.synthetic import PRESETS
    from .identity import EMBEDDERS

    degrade = commands.add_parser(
        "degrade", help="make a synthetic low-quality test set from high-quality faces",
        description="Writes OUT/gt/NAME.png (the HQ face at --size), OUT/lq/NAME.png (degraded: blur, downsample, "
        "noise, JPEG, as Stage II trains) and OUT/degradations.jsonl (drawn parameters and seed per image). "
        "Each image has its own seed from --seed and its name: the same command writes the same bytes.",
    )
    degrade.add_argument("hq_dir", type=Path, help="folder of high-quality images (aligned crops unless --align)")
    degrade.add_argument("out_dir", type=Path, help="output folder (created)")
    degrade.add_argument("--preset", choices=sorted(PRESETS), default="celeba-test",
                         help="degradation ranges (default celeba-test: GFPGAN's CelebA-Test recipe)")
    degrade.add_argument("--size", type=int, default=512, help="working size of gt/ and lq/ (default 512)")
    degrade.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    degrade.add_argument("--align", action="store_true",
                         help="inputs are photos: FFHQ-align their largest face first (dlib)")
    for flag, field, metavar in (("--blur-sigma", "blur_sigma", ("MIN", "MAX")),
                                 ("--downsample", "downsample_range", ("MIN", "MAX")),
                                 ("--noise", "noise_range", ("MIN", "MAX")),
                                 ("--jpeg", "jpeg_range", ("MIN", "MAX"))):
        kind = int if field == "jpeg_range" else float
        degrade.add_argument(flag, dest=field, nargs=2, type=kind, metavar=metavar,
                             help=f"override the preset's {field} (noise in 8-bit levels, JPEG quality 1-100)")
    degrade.set_defaults(handler=run_degrade)

    evaluate = commands.add_parser(
        "evaluate", help="score restored faces against GT / LQ faces and write a report",
        description="Pairs images by file name. Writes REPORT/metrics.csv, summary.json, table.md, index.html "
        "and plots/. Metrics whose package or weights are missing are skipped and named in the report.",
    )
    evaluate.add_argument("--restored", type=Path, action="append", required=True,
                          help="folder of restored faces; repeat for several methods")
    evaluate.add_argument("--gt", type=Path, help="ground-truth folder (PSNR, SSIM, LPIPS, LMD, identity, FID)")
    evaluate.add_argument("--lq", type=Path, help="low-quality input folder (identity reference without --gt)")
    evaluate.add_argument("--out", type=Path, required=True, help="report folder (created)")
    evaluate.add_argument("--weights-dir", type=Path,
                          help="folder with metric weights (LPIPS backbone, FID Inception, pyiqa files); "
                          "nothing is downloaded")
    evaluate.add_argument("--embedder", choices=EMBEDDERS,
                          help="identity embedding (default: arcface with --insightface-root, else dlib)")
    evaluate.add_argument("--insightface-root", type=Path,
                          help="folder holding models/<pack>/ (ArcFace identity and the IDS angle)")
    evaluate.add_argument("--pack", default="buffalo_l", help="insightface pack for arcface (default buffalo_l)")
    evaluate.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone")
    evaluate.add_argument("--fid-reference", type=Path, help="folder to compute FID against (default: --gt)")
    evaluate.add_argument("--device", default="cpu", help="torch device for the network metrics (default cpu)")
    evaluate.add_argument("--psnr-channel", choices=CHANNELS, default="y",
                          help="PSNR/SSIM on BT.601 Y (default, BasicSR's test_y_channel) or on RGB "
                          "(SSIM the mean over channels), as some BFR papers report")
    evaluate.add_argument("--batch-size", type=int, default=8, help="images per metric batch (default 8)")
    evaluate.set_defaults(handler=run_evaluate)


def run_degrade(args: argparse.Namespace) -> int:
    from .evaluation.synthetic import PRESETS, make_test_set

    overrides = {name: tuple(getattr(args, name)) for name in
                 ("blur_sigma", "downsample_range", "noise_range", "jpeg_range") if getattr(args, name) is not None}
    config = dataclasses.replace(PRESETS[args.preset], **overrides)
    result = make_test_set(args.hq_dir, args.out_dir, config, args.preset, args.size, args.seed, args.align)
    print(f"authface degrade: wrote {len(result.written)} pair(s) to {args.out_dir}"
          + (f"; {len(result.problems)} file(s) left out (see the warnings)" if result.problems else ""))
    return 0 if result.written else 1


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import EvalSettings, evaluate
    from .evaluation.report import write_report

    settings = EvalSettings(
        restored=args.restored, gt=args.gt, lq=args.lq, weights_dir=args.weights_dir, embedder=args.embedder or ("arcface" if args.insightface_root else "dlib"),
        insightface_root=args.insightface_root, pack=args.pack, lpips_net=args.lpips_net,
        fid_reference=args.fid_reference, device=args.device, batch_size=args.batch_size,
        psnr_channel=args.psnr_channel,
    )
    result = evaluate(settings)
    write_report(result, args.out)
    print((args.out / "table.md").read_text(encoding="utf-8"))
    return 0 if result.rows else 1
