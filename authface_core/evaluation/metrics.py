"""The metrics ``authface evaluate`` reports: column names, direction and meaning."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One report column: ``key`` in metrics.csv, ``label`` in tables, better ``higher`` or not."""

    key: str
    label: str
    higher_better: bool
    description: str


METRICS: tuple[Metric, ...] = (
    Metric("psnr", "PSNR↑", True, "dB, peak 255, on the channel in psnr_ssim_channel (Y by default)"),
    Metric("ssim", "SSIM↑", True, "Gaussian 11x11 sigma 1.5 (Wang et al. 2004), on the channel in psnr_ssim_channel"),
    Metric("lpips", "LPIPS↓", False, "LPIPS v0.1 (lpips package), AlexNet backbone"),
    Metric("id_similarity", "IDS↑ (cos)", True, "cosine similarity of identity embeddings, restored vs reference"),
    Metric("id_distance", "ID dist↓", False, "embedder's distance: dlib Euclidean, ArcFace angle in degrees (Deg.)"),
    Metric("id_kept", "ID kept↑", True, "share of faces within the embedder's same-person threshold"),
    Metric("lmd", "LMD↓", False, "mean distance of dlib's 68 landmarks, restored vs GT, in crop pixels"),
    Metric("musiq", "MUSIQ↑", True, "MUSIQ (KonIQ) via pyiqa"),
    Metric("maniqa", "MANIQA↑", True, "MANIQA (KonIQ) via pyiqa"),
    Metric("clipiqa", "CLIPIQA↑", True, "CLIP-IQA via pyiqa"),
    Metric("niqe", "NIQE↓", False, "NIQE via pyiqa"),
)
PER_METHOD: tuple[Metric, ...] = (
    Metric("fid", "FID↓", False, "clean-fid FID against the GT (or --fid-reference) folder"),
)
BY_KEY = {metric.key: metric for metric in METRICS + PER_METHOD}
