"""A random-weight insightface pack holding only an ArcFace recognition model, built once.

``<root>/models/buffalo_l/w600k_r50.onnx`` is IResNet-50 (``authface_core.identity.iresnet``,
the architecture of the real file) with seeded random weights, exported with torch.onnx like
insightface's arcface_torch ``torch2onnx.py`` (eval mode, input "data" 1x3x112x112 with a
dynamic batch, one 512-D output). Batch-norm statistics are calibrated on random inputs so
activations stay in a realistic range and the exported graph has non-trivial folded norms.

Run ``python tests/arcface_fixture.py`` to build the cache ahead of the tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from authface_core.identity import iresnet  # noqa: E402

FIXTURES_DIR = REPO / ".cache" / "fixtures"
PACK = "buffalo_l"
FILE_NAME = "w600k_r50.onnx"
SEED = 0
_CALIBRATION_BATCHES = 4
_CALIBRATION_BATCH_SIZE = 8


def cache_key() -> str:
    """12 hex digits naming this generator: its source, the architecture's, torch's version."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(Path(iresnet.__file__).read_bytes())
    digest.update(f"torch={version('torch')}".encode())
    return digest.hexdigest()[:12]


def random_arcface(seed: int = SEED) -> iresnet.IResNet:
    """IResNet-50 with seeded random weights and batch-norm statistics calibrated on noise."""
    torch.manual_seed(seed)
    model = iresnet.iresnet("r50")
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average over the calibration batches
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    generator = torch.Generator().manual_seed(seed + 1)
    model.train()
    with torch.no_grad():
        for _ in range(_CALIBRATION_BATCHES):
            size = (_CALIBRATION_BATCH_SIZE, 3, iresnet.INPUT_SIZE, iresnet.INPUT_SIZE)
            model(torch.rand(size, generator=generator) * 2.0 - 1.0)
    return model.eval()


def export_onnx(model: iresnet.IResNet, path: Path) -> None:
    """``model`` as ONNX at ``path`` (input "data" Nx3x112x112, output "fc1" Nx512)."""
    dummy = torch.zeros(1, 3, iresnet.INPUT_SIZE, iresnet.INPUT_SIZE)
    # The TorchScript exporter (deprecated since torch 2.9) is the one insightface's released
    # files come from; its graph is the layout load_onnx_weights must read.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=["data"],
            output_names=["fc1"],
            dynamic_axes={"data": {0: "batch"}, "fc1": {0: "batch"}},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )


def cached_arcface_root() -> Path:
    """An insightface root (``<root>/models/buffalo_l/w600k_r50.onnx``) under
    ``.cache/fixtures/arcface-<cache_key()>/``, built on first use under an exclusive ``fcntl``
    lock (concurrent callers wait, then reuse it); outdated builds are deleted."""
    root = FIXTURES_DIR / f"arcface-{cache_key()}"
    target = root / "models" / PACK / FILE_NAME
    if target.is_file():
        return root
    FIXTURES_DIR.mkdir(parents=True, exist_ok=True)
    with open(FIXTURES_DIR / ".arcface.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return root
        for stale in FIXTURES_DIR.glob("arcface-*"):
            if stale != root:
                shutil.rmtree(stale)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{FILE_NAME}.tmp-{os.getpid()}")
        export_onnx(random_arcface(), temp)
        temp.rename(target)
    return root


if __name__ == "__main__":
    print(cached_arcface_root())
