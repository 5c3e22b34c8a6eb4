"""Stage I training: steps per second of the tiny test configuration, and the memory plan of the
full SDXL configuration.

1. Speed: ``python -m training.stage1``'s loop (in this process) on the tiny release of the
   tests (``tests/test_pipeline.py``'s ``build_tiny_release``: 2-block UNet, 3-layer CLIP pair,
   tokenizers from the ComfyUI host) with two real photos at 64x64, one batch of 2 per step, no
   checkpoint or validation inside the timed steps. Seconds per step are the median of the
   logged step times after 5 warm-up steps. This measures the loop's overhead (data loading,
   VAE encode, text encoding, UNet fwd+bwd, AdamW), not SDXL's cost.
2. Memory plan: the parameter counts of SDXL base's UNet, text encoders and VAE (built on the
   meta device from their configurations, nothing allocated) turned into bytes per GPU for each
   choice a user makes: precision of the run, AdamW or 8-bit AdamW, EMA or not, and how DeepSpeed
   ZeRO-2 / FSDP shard the state over N GPUs. Activations are not included: they depend on
   resolution, batch and gradient checkpointing (at 1024x1024, batch 1, gradient checkpointing
   keeps them to a few GB in bf16; without it they reach tens of GB).

Run: ``python -m bench.bench_stage1 [--steps 30] [--gpus 8]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from .sdxl_shapes import SDXL_UNET_CONFIG

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3
WARMUP_STEPS = 5



def _speed(steps: int) -> dict[str, float]:
    """Median seconds per step of the tiny configuration (see the module docstring)."""
    import cv2
    import skimage.data

    sys.path.insert(0, str(REPO / "tests"))
    from test_pipeline import build_tiny_release

    from training.stage1.config import Stage1Config
    from training.stage1.loop import METRICS_FILE, train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        release = build_tiny_release(root / "release")
        data = root / "data"
        data.mkdir()
        for name, image in (("astronaut", skimage.data.astronaut()), ("coffee", skimage.data.coffee())):
            cv2.imwrite(str(data / f"{name}.png"), image[..., ::-1])
            (data / f"{name}.txt").write_text(f"a photo of {name}, soft lighting, sharp focus")
        config = Stage1Config(
            pretrained_model=str(release), data_dir=str(data), output_dir=str(root / "out"), resolution=64,
            train_batch_size=2, total_batch_size=2, max_train_steps=steps + WARMUP_STEPS, learning_rate=1e-4,
            checkpointing_steps=10**6, validation_steps=10**6, validation_sampling_steps=1,
            validation_loss_samples=0, report_to="none", dataloader_num_workers=0,
        )
        train(config)
        lines = (root / "out" / METRICS_FILE).read_text().splitlines()
        seconds = [r["seconds"] for r in map(json.loads, lines) if r["kind"] == "train"][WARMUP_STEPS:]
    step = statistics.median(seconds)
    return {"seconds_per_step": step, "steps_per_second": 1.0 / step, "images_per_second": 2.0 / step}


def _parameter_counts() -> dict[str, int]:
    """Parameters of SDXL base's UNet, CLIP-L, OpenCLIP bigG and VAE (meta-device builds)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    comfy = REPO / ".cache" / "hosts" / "comfyui-0.30.0" / "comfy"
    with init_empty_weights():
        models = {
            "unet": UNet2DConditionModel(**SDXL_UNET_CONFIG),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_json_file(str(comfy / "sd1_clip_config.json"))),
            "text_encoder_2": CLIPTextModelWithProjection(
                CLIPTextConfig.from_json_file(str(comfy / "clip_config_bigg.json"))),
            "vae": AutoencoderKL(
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4),
        }
    return {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}


def _plan_rows(counts: dict[str, int], gpus: int) -> list[tuple[str, str, str, str, float]]:
    """(strategy, precision, optimizer, EMA, GiB per GPU) of the states that scale with the model.

    Bytes per UNet parameter (P):
    - one GPU / DDP with accelerate's mixed precision (autocast: the trained weights, their
      gradients and the optimizer stay float32 whatever the compute precision): weights 4,
      gradients 4, AdamW m and v 8 (bitsandbytes 8-bit AdamW: 2), EMA 4 (always float32);
    - DeepSpeed ZeRO-2 (ZeRO paper, Rajbhandari et al. 2020, Sec. 5): bf16 keeps 2-byte weights
      on every GPU and shards 2-byte gradients plus 12 bytes of float32 master weights, m and v
      over the N GPUs (2P + 14P/N); fp32 keeps 4-byte weights and shards 4 + 8 (4P + 12P/N). EMA
      stays whole on every GPU. AdamW only (DeepSpeed wraps its own optimizer);
    - FSDP full shard: everything of the DDP row divided by N (no EMA: not supported with FSDP
      here), plus the full weights of the one block being gathered (transient, not counted).
    Frozen parts on every GPU: text encoders in the compute precision, VAE in float32.
    """
    unet = counts["unet"]
    rows = []
    for precision, low in (("fp32", 4), ("bf16 mixed", 2)):
        frozen = (counts["text_encoder"] + counts["text_encoder_2"]) * low + counts["vae"] * 4
        for optimizer, optimizer_bytes in (("AdamW", 8), ("AdamW 8-bit", 2)):
            for ema in (0, 4):
                label = "EMA" if ema else "-"
                ddp = unet * (4 + 4 + optimizer_bytes + ema) + frozen
                rows.append(("1 GPU / DDP", precision, optimizer, label, ddp / GIB))
                if optimizer == "AdamW":
                    sharded = (low + 12) if low == 2 else (4 + 8)
                    zero2 = unet * (low + ema + sharded / gpus) + frozen
                    rows.append((f"ZeRO-2 x{gpus}", precision, optimizer, label, zero2 / GIB))
                if not ema:
                    fsdp = unet * (4 + 4 + optimizer_bytes) / gpus + frozen
                    rows.append((f"FSDP x{gpus}", precision, optimizer, label, fsdp / GIB))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_stage1")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of the tiny configuration")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs for the sharded rows of the memory plan")
    args = parser.parse_args(argv if argv is not None else [])

    speed = _speed(args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32")
    print(f"tiny Stage I configuration (64x64, batch 2 per step, AdamW, no EMA): "
          f"{speed['steps_per_second']:.1f} steps/s ({speed['seconds_per_step'] * 1000:.0f} ms/step, "
          f"{speed['images_per_second']:.1f} images/s; median of {args.steps} steps)")

    counts = _parameter_counts()
    print("\nfull SDXL parameters: " + ", ".join(f"{k} {v / 1e9:.3f}B" for k, v in counts.items()))
    print("memory per GPU for weights, gradients, optimizer, EMA and frozen parts (GiB; activations extra):")
    print(f"{'strategy':<14} {'precision':<11} {'optimizer':<12} {'EMA':<4} {'GiB/GPU':>8}")
    for strategy, precision, optimizer, ema, gib in _plan_rows(counts, args.gpus):
        print(f"{strategy:<14} {precision:<11} {optimizer:<12} {ema:<4} {gib:8.1f}")
    print("weights, gradients and optimizer stay float32 under accelerate's mixed precision; bf16 halves the "
          "activations and the frozen text encoders. 8-bit AdamW (bitsandbytes) needs CUDA.")


if __name__ == "__main__":
    main(sys.argv[1:])
