"""LPIPS (Zhang et al., CVPR 2018) through the ``lpips`` package, backbone weights read locally.

The package ships LPIPS's own linear layers (``lpips/weights/v0.1/*.pth``); the backbone is
torchvision's ImageNet network, which the package would fetch from the internet. Here the
backbone starts random (``pnet_rand=True``) and is filled from torchvision's own file in
``--weights-dir`` (loaded with ``weights_only=True``), so the computation is the package's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .weights import MetricUnavailable, need_files, need_package

# torchvision's file names for the backbones (torchvision.models AlexNet_Weights.IMAGENET1K_V1,
# VGG16_Weights.IMAGENET1K_V1), which is also what torch.hub keeps in its checkpoints folder.
BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
}
_SOURCE = "torchvision's ImageNet weights: python -c \"import torchvision; torchvision.models.{fn}(weights='DEFAULT')\" " \
    "on a machine with internet, then copy it from ~/.cache/torch/hub/checkpoints/"


class LPIPSMetric:
    """LPIPS distance (lower = closer) between batches of RGB images, on ``device``."""

    def __init__(self, weights_dir: Path | None, net: str = "alex", device: str = "cpu") -> None:
        if net not in BACKBONE_FILES:
            raise ValueError(f"LPIPS backbone must be one of {', '.join(BACKBONE_FILES)}, got {net!r}")
        need_package("lpips", "LPIPS", "lpips")
        fn = "alexnet" if net == "alex" else "vgg16"
        (path,) = need_files(weights_dir, f"LPIPS ({net})", {BACKBONE_FILES[net]: _SOURCE.format(fn=fn)})
        import lpips
        import torch

        with warnings.catch_warnings():
            # The package calls torchvision's deprecated pretrained=False; nothing is fetched.
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
        state = torch.load(path, map_location="cpu", weights_only=True)
        load_backbone(model.net, state)
        self.model = model.eval().to(device)
        self.device = device
        self.name = f"lpips_{net}"

    def __call__(self, restored: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) LPIPS of restored[i] vs reference[i] (HxWx3 float RGB in [0, 1], equal sizes)."""
        import torch

        def batch(images: Sequence[np.ndarray]) -> torch.Tensor:
            array = np.stack([np.asarray(im, dtype=np.float32) for im in images]).transpose(0, 3, 1, 2)
            return torch.from_numpy(array).to(self.device) * 2.0 - 1.0  # the package's [-1, 1] input

        with torch.no_grad():
            return self.model(batch(restored), batch(reference)).flatten().cpu().numpy().astype(np.float64)


def load_backbone(net, state: dict) -> None:
    """Copy torchvision ``features.<i>.*`` tensors into lpips' ``slice<k>.<i>.*`` modules (the
    package splits torchvision's ``features`` into slices, keeping each layer's index as name)."""
    import torch

    targets = {}
    for name, tensor in net.state_dict().items():
        _, index, param = name.split(".", 2)
        targets[f"features.{index}.{param}"] = name
    missing = sorted(set(targets) - set(state))
    if missing:
        raise MetricUnavailable(f"the LPIPS backbone file lacks {', '.join(missing[:3])}: not torchvision's weights")
    net.load_state_dict({targets[key]: torch.as_tensor(state[key]) for key in targets})
