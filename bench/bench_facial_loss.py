"""Cost of the time-aware latent facial loss per Stage II batch (CPU).

Times one generator-side pass (crop + both discriminators + Gram style, forward and backward)
and one discriminator step for 4 SDXL latents of 4x64x64 (512x512 faces), and prints the
discriminators' parameter counts. Run: ``python -m bench.bench_facial_loss``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from authface_core.losses.discriminator import ComponentDiscriminator
from authface_core.losses.facial import DEFAULT_OUTPUT_SIZES, FacialComponentLoss, discriminator_loss

BATCH = 4
REPEATS = 20


def _boxes(batch: int) -> torch.Tensor:
    # Image-pixel boxes of a 512x512 aligned face: eyes ~9 latent px wide, mouth ~14.
    one = [[110.0, 206.0, 182.0, 262.0], [310.0, 206.0, 382.0, 262.0], [198.0, 334.0, 310.0, 406.0]]
    return torch.tensor([one] * batch)


def _median_ms(fn: Callable[[], None]) -> float:
    fn()  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    discs = {"eyes": ComponentDiscriminator(), "mouth": ComponentDiscriminator()}
    loss_fn = FacialComponentLoss()
    z0 = torch.randn(BATCH, 4, 64, 64)
    z0_pred = torch.randn(BATCH, 4, 64, 64, requires_grad=True)
    boxes = _boxes(BATCH)
    t = torch.rand(BATCH)

    def generator_side() -> None:
        z0_pred.grad = None
        loss_fn(discs, z0_pred, z0, boxes, t)["total"].backward()

    def discriminator_side() -> None:
        real, fake = loss_fn.crop(z0, boxes), loss_fn.crop(z0_pred, boxes)
        for name, disc in discs.items():
            disc.zero_grad(set_to_none=True)
            discriminator_loss(disc, real[name], fake[name]).backward()

    g_ms = _median_ms(generator_side)
    d_ms = _median_ms(discriminator_side)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32")
    print(f"batch {BATCH} latents 4x64x64, crops {DEFAULT_OUTPUT_SIZES} latent px")
    for name, disc in discs.items():
        count = sum(p.numel() for p in disc.parameters())
        print(f"D_{name}: {count:,} parameters")
    print(f"facial loss, generator side (crop + D + Gram, fwd+bwd): {g_ms:.1f} ms/batch")
    print(f"discriminator step losses (fwd+bwd, both D):            {d_ms:.1f} ms/batch")
    print(f"(medians of {REPEATS} runs after one warm-up)")


if __name__ == "__main__":
    main()
