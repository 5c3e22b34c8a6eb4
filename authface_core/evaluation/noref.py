"""No-reference quality (MUSIQ, MANIQA, CLIP-IQA, NIQE via pyiqa) and FID (via clean-fid), with
weights read from ``--weights-dir``.

Nothing is downloaded and no pickle is executed: network weights are read with
``torch.load(weights_only=True)`` and copied into the package's own network, built without its
pretrained download (pyiqa ``pretrained=False``; clean-fid's downloader swapped for the local
file while the network is built). NIQE's parameters are a MATLAB ``.mat`` file pyiqa reads with
scipy. pyiqa is installed with ``--no-deps`` (the Makefile): its declared requirements add
opencv-python-headless (which overwrites opencv-python's cv2), bitsandbytes, datasets, pyarrow,
pre-commit and more, none of which MUSIQ or NIQE import. MANIQA also needs timm and builds timm's ViT-B/8 with
``pretrained=True`` (fetched from a model hub inside pyiqa's constructor); CLIP-IQA needs the
``clip`` package (openai-clip) and OpenAI's TorchScript archive; both are reported as skipped
with that reason unless their packages are present.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .weights import MetricUnavailable, need_files, need_package

_PYIQA_SOURCE = "pyiqa's weight release (Hugging Face chaofengc/IQA-PyTorch-Weights)"


@dataclass(frozen=True)
class PyiqaSpec:
    """How one pyiqa metric is loaded: its weight file and where it comes from, the modules it
    imports beyond pyiqa (module -> pip name) and whether the file is a torch state dict or
    NIQE's .mat. Directions and labels are in metrics.METRICS."""

    file: str
    source: str
    packages: tuple[tuple[str, str], ...] = ()
    state_dict: bool = True


# File names as pyiqa's archs name them: musiq_arch.py (koniq10k), maniqa_arch.py (koniq),
# clipiqa_arch.py (OpenAI CLIP RN50), niqe_arch.py.
PYIQA_METRICS: dict[str, PyiqaSpec] = {
    "musiq": PyiqaSpec("musiq_koniq_ckpt-e95806b9.pth", _PYIQA_SOURCE),
    "maniqa": PyiqaSpec("ckpt_koniq10k.pt", _PYIQA_SOURCE, (("timm", "timm"),)),
    "clipiqa": PyiqaSpec("RN50.pt", "OpenAI CLIP's RN50 checkpoint (the openai-clip package's download)",
                         (("clip", "openai-clip"),)),
    "niqe": PyiqaSpec("niqe_modelparameters.mat", _PYIQA_SOURCE, state_dict=False),
}
# pytorch-fid's port of the TF Inception graph FID is defined with (2015-12-05), the file
# clean-fid's "legacy_pytorch" mode loads (cleanfid/inception_pytorch.py FID_WEIGHTS_URL).
FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_MODE = "legacy_pytorch"
_FID_SOURCE = "pytorch-fid's Inception weights (github.com/mseitzer/pytorch-fid releases, fid_weights)"


def load_state(path: Path) -> dict:
    """A tensor state dict read with ``weights_only=True``; MetricUnavailable when the file holds
    anything else (a pickled module, a TorchScript archive)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or zipfile errors here
        raise MetricUnavailable(f"{path} is not a plain tensor state dict loadable with weights_only=True: {err}") from err
    if not isinstance(state, dict):
        raise MetricUnavailable(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


class PyiqaMetric:
    """One pyiqa no-reference metric on ``device``; raises MetricUnavailable when pyiqa, a
    package the metric imports or its weight file is missing."""

    def __init__(self, name: str, weights_dir: Path | None, device: str = "cpu") -> None:
        spec = PYIQA_METRICS[name]
        need_package("pyiqa", name.upper(), "pyiqa")
        for module, pip_name in spec.packages:
            need_package(module, name.upper(), pip_name)
        (path,) = need_files(weights_dir, name.upper(), {spec.file: spec.source})
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import pyiqa
        from pyiqa.archs.arch_util import clean_state_dict

        if spec.state_dict:
            self.model = pyiqa.create_metric(name, device=device, as_loss=False, pretrained=False)
            # pyiqa's own loader unpickles (weights_only=False); the same copy, safely.
            self.model.net.load_state_dict(clean_state_dict(load_state(path)), strict=True)
        else:
            self.model = pyiqa.create_metric(name, device=device, as_loss=False, pretrained_model_path=str(path))
        self.device = device
        self.name = name

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) scores of HxWx3 float RGB images in [0, 1]."""
        import torch

        array = np.stack([np.asarray(im, dtype=np.float32) for im in images]).transpose(0, 3, 1, 2)
        with torch.no_grad():
            scores = self.model(torch.from_numpy(array).to(self.device))
        return scores.flatten().cpu().numpy().astype(np.float64)


def fid_network(weights_dir: Path | None, device: str = "cpu"):
    """clean-fid's legacy-pytorch feature function (images in [0, 255] -> 2048-d pool features)
    with the Inception weights of ``weights_dir``."""
    need_package("cleanfid", "FID", "clean-fid")
    (path,) = need_files(weights_dir, "FID", {FID_FILE: _FID_SOURCE})
    state = load_state(path)
    import cleanfid.inception_pytorch as inception

    download = inception.load_state_dict_from_url
    # fid_inception_v3() builds the network and fetches the file by URL: hand it the local one.
    inception.load_state_dict_from_url = lambda url, **kwargs: state
    try:
        with warnings.catch_warnings():
            # The package calls torchvision's deprecated pretrained=False; nothing is fetched.
            warnings.simplefilter("ignore", UserWarning)
            model = inception.InceptionV3(output_blocks=[3], resize_input=False).to(device).eval()
    finally:
        inception.load_state_dict_from_url = download

    def features(x):
        # clean-fid's feature_extractor("pytorch_inception"): [0, 255] in, pooled features out.
        return model(x / 255)[0].squeeze(-1).squeeze(-1)

    return features


def frechet_distance(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID between two (N, D) feature sets: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))
    (Heusel et al. 2017, Eq. 6), S the sample covariances.

    With A_i the centred features over sqrt(N_i - 1) (S_i = A_i^T A_i), the non-zero eigenvalues
    of S1 S2 are those of M M^T, M = A1 A2^T, so Tr((S1 S2)^(1/2)) is the sum of the square roots
    of the eigenvalues of the smaller of M M^T and M^T M: exact, symmetric, and on a 2-core CPU
    seconds where scipy's sqrtm of the 2048 x 2048 product (clean-fid's fid_from_feats) takes
    ~30 s per method."""
    from scipy import linalg

    a1 = (feats1 - feats1.mean(0)) / np.sqrt(len(feats1) - 1)
    a2 = (feats2 - feats2.mean(0)) / np.sqrt(len(feats2) - 1)
    diff = feats1.mean(0) - feats2.mean(0)
    m = a1 @ a2.T
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    trace_sqrt = np.sqrt(np.clip(linalg.eigvalsh(gram), 0.0, None)).sum()
    return float(diff @ diff + (a1 * a1).sum() + (a2 * a2).sum() - 2.0 * trace_sqrt)


def folder_features(folder: Path, model, device: str = "cpu") -> np.ndarray:
    """(N, 2048) Inception features of a folder's images through clean-fid's ``legacy_pytorch``
    pipeline (its file listing, PyTorch bilinear resize to 299, batching)."""
    import torch
    from cleanfid.fid import get_folder_features

    with warnings.catch_warnings():
        # clean-fid's PyTorch resizer calls warnings.filterwarnings("ignore") for the whole process.
        return get_folder_features(str(folder), model=model, num_workers=0, batch_size=32,
                                   device=torch.device(device), mode=FID_MODE, verbose=False)


def fid(folder: Path, reference: Path, weights_dir: Path | None, device: str = "cpu") -> float:
    """FID between the images of two folders: features from clean-fid's ``legacy_pytorch`` mode
    (pytorch-fid's Inception), distance from frechet_distance. Raises MetricUnavailable when
    clean-fid or the file is missing, or when a folder has fewer than two images (no covariance)."""
    model = fid_network(weights_dir, device)
    feats = []
    for images in (folder, reference):
        feats.append(folder_features(images, model, device).astype(np.float64))
        if len(feats[-1]) < 2:
            raise MetricUnavailable(f"FID needs at least two images in {images}, found {len(feats[-1])}")
    return frechet_distance(*feats)
