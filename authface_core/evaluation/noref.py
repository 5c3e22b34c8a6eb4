"""No-reference quality (MUSIQ, MANIQA, CLIP-IQA, NIQE via pyiqa) and FID (via clean-fid), with
weights read from ``--weights-dir``.

pyiqa fetches weights into its cache folder unless the file is already there; it is pointed at
``--weights-dir`` after checking that every file the metric needs is present, so nothing is
downloaded. pyiqa is not a dependency of the ``eval`` extra: it pins transformers>=5 and pulls
bitsandbytes, datasets and opencv-python-headless (a second cv2); install it by hand to get
these metrics.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .weights import need_files, need_package

_PYIQA_SOURCE = "pyiqa's weight release (Hugging Face chaofengc/IQA-PyTorch-Weights)"
# pyiqa metric name -> (file names it loads, higher is better). Files from pyiqa's archs:
# musiq_arch.py (koniq10k), maniqa_arch.py (koniq), clipiqa_arch.py (OpenAI CLIP RN50),
# niqe_arch.py.
PYIQA_METRICS: dict[str, tuple[dict[str, str], bool]] = {
    "musiq": ({"musiq_koniq_ckpt-e95806b9.pth": _PYIQA_SOURCE}, True),
    "maniqa": ({"ckpt_koniq10k.pt": _PYIQA_SOURCE}, True),
    "clipiqa": ({"RN50.pt": "OpenAI CLIP's RN50 checkpoint (the openai-clip package's download)"}, True),
    "niqe": ({"niqe_modelparameters.mat": _PYIQA_SOURCE}, False),
}
FID_FILE = "inception-2015-12-05.pt"
_FID_SOURCE = "clean-fid's Inception (StyleGAN2-ADA metrics release, the file cleanfid downloads)"


class PyiqaMetric:
    """One pyiqa no-reference metric on ``device``; raises MetricUnavailable when pyiqa or a
    weight file is missing."""

    def __init__(self, name: str, weights_dir: Path | None, device: str = "cpu") -> None:
        files, self.higher_better = PYIQA_METRICS[name]
        need_package("pyiqa", name.upper(), "pyiqa")
        (first, *_) = need_files(weights_dir, name.upper(), files)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import pyiqa
        import pyiqa.utils.download_util as download_util

        # load_file_from_url looks in DEFAULT_CACHE_DIR first; every file is there (checked).
        download_util.DEFAULT_CACHE_DIR = str(first.parent)
        self.model = pyiqa.create_metric(name, device=device, as_loss=False)
        self.device = device
        self.name = name

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        array = np.stack([np.asarray(im, dtype=np.float32) for im in images]).transpose(0, 3, 1, 2)
        with torch.no_grad():
            scores = self.model(torch.from_numpy(array).to(self.device))
        return scores.flatten().cpu().numpy().astype(np.float64)


def fid(folder: Path, reference: Path, weights_dir: Path | None, device: str = "cpu") -> float:
    """clean-fid's FID ("clean" mode) between the images of two folders, Inception from
    ``weights_dir``. Raises MetricUnavailable when clean-fid or the file is missing."""
    need_package("cleanfid", "FID", "clean-fid")
    (path,) = need_files(weights_dir, "FID", {FID_FILE: _FID_SOURCE})
    import torch
    from cleanfid.fid import fid_from_feats, get_folder_features
    from cleanfid.inception_torchscript import InceptionV3W

    model = InceptionV3W(str(path.parent), download=False, resize_inside=False).to(device).eval()

    def features(images: Path) -> np.ndarray:
        return get_folder_features(str(images), model=lambda x: model(x), num_workers=0, batch_size=32,
                                   device=torch.device(device), mode="clean", verbose=False)

    return float(fid_from_feats(features(folder), features(reference)))
