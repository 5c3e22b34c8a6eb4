"""Facial-component discriminator for SDXL latent patches (eyes ~9, mouth ~14 latent px).

Modelled on the role of GFPGAN's ``FacialComponentDiscriminator`` (Wang et al. 2021): a VGG-style
stack with two stride-2 stages, whose features after each stage are the multi-scale features
``psi`` of the style (Gram) loss, and a patch-logit head. Written for latents: 4 input channels,
crops of 16-24 px (see ``facial.DEFAULT_OUTPUT_SIZES``), no normalisation layers (the GAN batch
holds as few as 2 patches per sample, and batch statistics would couple real and fake batches).
"""

from __future__ import annotations

import torch
from torch import nn

# LeakyReLU slope of StyleGAN2/GFPGAN discriminators.
_NEGATIVE_SLOPE = 0.2


def _conv(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1),
        nn.LeakyReLU(_NEGATIVE_SLOPE),
    )


class ComponentDiscriminator(nn.Module):
    """Discriminator for one facial component in latent space.

    Layout (``b = base``): conv(in, b) -> [conv(b, 2b, stride 2) -> conv(2b, 2b)] = level 1 ->
    [conv(2b, 4b, stride 2) -> conv(4b, 4b)] = level 2 -> conv(4b, 1) patch logits. All 3x3
    convolutions with LeakyReLU(0.2) except the linear head.

    Args:
        in_channels: latent channels (4 for SDXL).
        base: width of the first stage; ``base=32`` gives about 0.28M parameters, a quarter of
            GFPGAN's width of 64, fitting inputs 1/20 the size of its 80x80 RGB eye patches.

    ``forward(x)`` takes ``x`` (N, in_channels, H, W) with H, W >= 4 (so level 2 is at least
    1x1) and returns ``(logits, [level1, level2])``: ``logits`` (N, 1, ceil(H/4), ceil(W/4))
    raw scores (real > 0), ``level1`` (N, 2b, ceil(H/2), ceil(W/2)), ``level2``
    (N, 4b, ceil(H/4), ceil(W/4)).
    """

    def __init__(self, in_channels: int = 4, base: int = 32) -> None:
        super().__init__()
        if in_channels <= 0 or base <= 0:
            raise ValueError(f"in_channels and base must be positive, got {in_channels}, {base}")
        self.in_channels = in_channels
        self.stem = _conv(in_channels, base, 1)
        self.level1 = nn.Sequential(_conv(base, 2 * base, 2), _conv(2 * base, 2 * base, 1))
        self.level2 = nn.Sequential(_conv(2 * base, 4 * base, 2), _conv(4 * base, 4 * base, 1))
        self.head = nn.Conv2d(4 * base, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected patches of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if min(x.shape[-2:]) < 4:
            raise ValueError(f"patches must be at least 4x4 latent px, got {tuple(x.shape[-2:])}")
        f1 = self.level1(self.stem(x))
        f2 = self.level2(f1)
        return self.head(f2), [f1, f2]
