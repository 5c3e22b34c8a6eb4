"""Identity guidance: during sampling, nudge each face's predicted clean latent toward the identity
of its reference, with the gradient of an ArcFace identity loss (training-free).

At a sampling step with noise level sigma the model predicts the clean latent x0 (ComfyUI's
"denoised", after classifier-free guidance). Guidance replaces it by

    x0' = x0 - scale * g / rms(g),   g = d/dx0 sum_i (1 - cos(E(crop_i(D(x0_i))), e_i)),

where D is the VAE decoder (latent -> image in [0, 1]), crop_i warps face i's decoded crop to
insightface's 112 x 112 ArcFace template with a similarity fitted to its five landmarks (the
warp of ``arcface.arcface_input``, done with ``grid_sample`` so that it is differentiable), E is
ArcFace's IResNet (``iresnet.py``, weights from the pack's ONNX file) and e_i the unit embedding
of face i's reference. Taking the gradient on x0 instead of through the denoiser to x_t is the
"manifold preserving" shortcut of MPGD (He et al., "Manifold Preserving Guided Diffusion",
ICLR 2024, Alg. 1: x0 <- x0 - c_t grad_x0 L(x0)): no backward pass through the UNet, so a step
costs one decoder forward + backward and one IResNet forward + backward per face. Each face's
gradient is normalised to unit RMS (ours) so that ``scale`` reads as the step length in latent
standard deviations, whatever the embedder's gradient magnitude. The sampler then steps toward
the changed x0 (every ComfyUI sampler derives its step from "denoised"), so stock samplers work.

Guidance is applied only while ``sigma_min <= sigma <= sigma_max``; with ``scale`` 0 or outside
that range ``denoised`` is returned untouched (the very same tensor), so sampling is bit for bit
the unguided one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MissingDependencyError
from ..faces.align import estimate_similarity, to_homogeneous
from ..faces.types import five_points_from_68
from .arcface import ARCFACE_TEMPLATE_112, INPUT_SIZE, recognition_file
from .iresnet import IResNet, iresnet, load_onnx_weights

# The IResNet depth of each pack's recognition model (insightface model zoo: buffalo_l's
# w600k_r50 is IResNet-50, antelopev2's glintr100 IResNet-100).
PACK_ARCHITECTURE: dict[str, str] = {"buffalo_l": "r50", "antelopev2": "r100"}


def load_torch_arcface(insightface_root: str | Path, pack: str = "buffalo_l") -> IResNet:
    """The pack's ArcFace as a differentiable torch IResNet in eval mode, with ordinary (not
    inference-mode) weights even when called under ``torch.inference_mode``. Raises ModelFileError
    when the pack's file is missing, ValueError when it is not an IResNet of that depth,
    MissingDependencyError when the ``onnx`` package (which reads the file) is not installed."""
    path = recognition_file(insightface_root, pack)
    if importlib.util.find_spec("onnx") is None:
        raise MissingDependencyError("onnx", "Identity guidance (reading the ArcFace .onnx weights)")
    with torch.inference_mode(False):
        return load_onnx_weights(iresnet(PACK_ARCHITECTURE[pack]), path).requires_grad_(False)


def _pixels_to_grid(size: int) -> np.ndarray:
    """3x3 map from pixel coordinates (centres at integers) of a ``size`` image to grid_sample's
    normalised coordinates with align_corners=False: u_n = (2u + 1) / size - 1."""
    return np.array([[2.0 / size, 0.0, 1.0 / size - 1.0], [0.0, 2.0 / size, 1.0 / size - 1.0], [0.0, 0.0, 1.0]])


def arcface_thetas(landmarks: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """(N, 2, 3) ``affine_grid`` matrices that sample each face's 112 x 112 ArcFace crop from a
    ``size`` x ``size`` image whose (68, 2) pixel landmarks are ``landmarks[i]``."""
    thetas = []
    for points in landmarks:
        to_template = to_homogeneous(estimate_similarity(five_points_from_68(points), ARCFACE_TEMPLATE_112))
        # affine_grid maps output (template) coordinates to input (crop) coordinates.
        theta = _pixels_to_grid(size) @ np.linalg.inv(to_template) @ np.linalg.inv(_pixels_to_grid(INPUT_SIZE))
        thetas.append(theta[:2])
    return torch.from_numpy(np.stack(thetas)).float()


def arcface_inputs(images: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """(N, 3, 112, 112) ArcFace inputs, RGB (pixel - 127.5) / 127.5, of (N, 3, H, W) images in
    [0, 1]: bilinear warp with a black border, like ``arcface.arcface_input``, but differentiable."""
    grid = F.affine_grid(thetas.to(images), [images.shape[0], 3, INPUT_SIZE, INPUT_SIZE], align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped * 2.0 - 1.0


def embed(embedder: torch.nn.Module, images: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """Unit-length (N, 512) embeddings of the faces in (N, 3, H, W) images in [0, 1]."""
    return F.normalize(embedder(arcface_inputs(images, thetas)).float(), dim=1)


def identity_loss(embeddings: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per face 1 - cosine similarity between unit ``embeddings`` and unit ``references``."""
    return 1.0 - (embeddings * references).sum(dim=1)


class IdentityGuidance:
    """The x0 update above for the faces of one batch.

    ``embedder``: the ArcFace IResNet (``load_torch_arcface``); ``decode``: a differentiable map
    from the sampler's latents (N, C, h, w) to images (N, 3, H, W) in [0, 1]; ``references``:
    (F, 512) unit embeddings, one per face; ``thetas``: (F, 2, 3) from ``arcface_thetas`` for the
    decoded size. A batch of k * F latents is taken as k candidates of the F faces, candidate-major
    (face i of candidate c at row c * F + i).
    """

    def __init__(self, embedder: torch.nn.Module, decode: Callable[[torch.Tensor], torch.Tensor],
                 references: torch.Tensor, thetas: torch.Tensor, scale: float, sigma_min: float = 0.0,
                 sigma_max: float = float("inf")) -> None:
        if references.shape[0] != thetas.shape[0]:
            raise ValueError(f"{references.shape[0]} reference embeddings for {thetas.shape[0]} faces")
        if scale < 0:
            raise ValueError(f"the guidance scale must be 0 (off) or more, got {scale}")
        self.embedder = embedder
        self.decode = decode
        self.references = references
        self.thetas = thetas
        self.scale = scale
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def applies(self, sigma: float) -> bool:
        return self.scale > 0 and self.sigma_min <= sigma <= self.sigma_max

    def _per_row(self, tensor: torch.Tensor, rows: int) -> torch.Tensor:
        faces = tensor.shape[0]
        if rows % faces:
            raise ValueError(f"the latent batch has {rows} rows, which is not a multiple of the {faces} faces "
                             "guided: connect the aligned faces that are being restored")
        return tensor.repeat(rows // faces, *([1] * (tensor.ndim - 1)))

    def loss_and_gradient(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row identity loss of ``x0`` and its gradient with respect to ``x0`` (float32)."""
        with torch.inference_mode(False), torch.enable_grad():
            # A clone made outside inference mode is an ordinary tensor that autograd accepts.
            latent = x0.detach().clone().float().requires_grad_(True)
            self.embedder.to(latent.device)
            images = self.decode(latent)
            rows = latent.shape[0]
            references = self._per_row(self.references, rows).to(images.device)
            loss = identity_loss(embed(self.embedder, images.float(), self._per_row(self.thetas, rows)),
                                 references)
            (gradient,) = torch.autograd.grad(loss.sum(), latent)
        return loss.detach(), gradient

    def __call__(self, denoised: torch.Tensor, sigma: float) -> torch.Tensor:
        """``denoised`` moved one normalised gradient step toward the references, or ``denoised``
        itself when guidance does not apply at ``sigma``."""
        if not self.applies(sigma):
            return denoised
        _, gradient = self.loss_and_gradient(denoised)
        rms = gradient.flatten(1).pow(2).mean(dim=1).sqrt().clamp_min(1e-12)
        step = gradient / rms.view(-1, *([1] * (gradient.ndim - 1)))
        return denoised - (self.scale * step).to(denoised.dtype)
