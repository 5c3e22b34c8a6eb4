"""The Stage I training loop on accelerate: one code path for one GPU, DDP, FSDP and DeepSpeed.

Each optimizer step: for each of the ``gradient_accumulation`` micro-batches of this process (see
:mod:`training.stage1.data` for which), encode the images with the frozen VAE (a latent sample),
draw noise and timesteps, noise the latents with the base model's DDPM schedule and regress the
UNet's prediction on the noise (epsilon; velocity for v-prediction schedules) with a mean squared
error; then clip the gradient norm, step AdamW, the EMA and the lr schedule. The run's shape
(set-up, resume, logging, checkpoints, validation, export) is :class:`training.trainer.Trainer`'s.

The random draws of each sample (latent sample, noise, timestep) come from a CPU generator seeded
with (seed, the sample's offset in the data stream), and the data order from the seeded stream
(:mod:`training.stage1.data`): a resumed run repeats the uninterrupted one exactly, and a step
computes the same whether its samples are split over processes, micro-steps or neither.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from authface_core.errors import MissingDependencyError
from training.replicas import parameter_digest
from training.trainer import KILL_EXIT_CODE, METRICS_FILE, TORCH_DTYPES, Trainer

from .config import Stage1Config
from .data import CaptionedFaces, StreamItems, StreamPosition, StreamSampler, sample_seed
from .export import export_unet
from .models import load_parts
from .text import EncodedText, TextEncoder, collate_text, token_windows
from .validation import FixedSet, fixed_set_loss, image_grid, make_fixed_set, render, unet_eps

logger = logging.getLogger("authface.training")

__all__ = ["KILL_EXIT_CODE", "METRICS_FILE", "REPLICAS_FILE", "Stage1Result", "Stage1Trainer", "train"]

REPLICAS_FILE = "replicas.json"
# Captions encoded per text-encoder pass when precomputing.
_ENCODE_CHUNK = 16
# How many steps of each process's data order and local losses replicas.json keeps.
_RECORDED_STEPS = 256


@dataclass
class Stage1Result:
    """What a finished run produced: its last step, the exported ``unet/`` folder and single
    file (None on processes other than the main one, which alone writes them), and the mean
    loss of its last step (None when it ran no step, e.g. relaunched after finishing)."""

    step: int
    unet_dir: Path | None
    single_file: Path | None
    last_loss: float | None


def _make_optimizer(config: Stage1Config, parameters: Any) -> torch.optim.Optimizer:
    kwargs = dict(lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
                  weight_decay=config.adam_weight_decay, eps=config.adam_epsilon)
    if not config.use_8bit_adam:
        return torch.optim.AdamW(parameters, **kwargs)
    try:
        import bitsandbytes
    except ImportError as err:
        raise MissingDependencyError(
            "bitsandbytes", "8-bit AdamW (use_8bit_adam; CUDA GPUs only)", pip_name="bitsandbytes"
        ) from err
    return bitsandbytes.optim.AdamW8bit(parameters, **kwargs)


class Stage1Trainer(Trainer):
    """One Stage I run in the shape of :class:`training.trainer.Trainer`: everything is set up
    (and resumed) in :meth:`__init__`, :meth:`run` trains, checkpoints, validates and exports."""

    name = "stage1"
    # The fixed-set loss before any step is the baseline later validations are read against.
    validates_at_start = True

    def __init__(self, config: Stage1Config) -> None:
        from accelerate.utils import DistributedType
        from diffusers import DDPMScheduler, UNet2DConditionModel
        from diffusers.training_utils import EMAModel
        from torch.utils.data import DataLoader

        # accelerate only builds a CPU (gloo) process group when asked to use the CPU; several
        # processes without CUDA (torchrun on a CPU machine) can only mean that.
        cpu = config.cpu or (int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available())
        super().__init__(config, cpu=cpu)
        self.config: Stage1Config = config
        accelerator = self.accelerator
        self.distributed = accelerator.distributed_type
        if config.use_ema and self.distributed == DistributedType.FSDP:
            raise ValueError("use_ema is not supported with FSDP (parameters are sharded): use DDP or DeepSpeed ZeRO-2")
        self.is_deepspeed = self.distributed == DistributedType.DEEPSPEED
        self.is_fsdp = self.distributed == DistributedType.FSDP
        # DeepSpeed runs the module in its own dtype without autocast: inputs must match it.
        self.input_dtype = self.weight_dtype if self.is_deepspeed else torch.float32

        # Data and models.
        self.dataset = CaptionedFaces(config.data_dir, config.resolution)
        logger.info("%d captioned images in %s (%d skipped); %d process(es) x batch %d x accumulation %d = %d per step",
                    len(self.dataset), config.data_dir, self.dataset.skipped, accelerator.num_processes,
                    config.train_batch_size, self.accumulation, config.total_batch_size)
        self.parts = load_parts(config.pretrained_model, self.device, self.weight_dtype,
                                TORCH_DTYPES[config.vae_dtype])
        if config.gradient_checkpointing:
            self.parts.unet.enable_gradient_checkpointing()
        self.noise_scheduler = DDPMScheduler(**self.parts.schedule)
        self.text_encoder: TextEncoder | None = TextEncoder(
            (self.parts.tokenizer, self.parts.tokenizer_2), (self.parts.text_encoder, self.parts.text_encoder_2),
            truncate=config.caption_truncation)
        self.truncated_captions = self._count_long_captions()
        self.validation_text = self._encode_all(list(config.validation_prompts))
        self.negative_text = self._encode_all([config.validation_negative_prompt])[0]
        self.precomputed = self._precompute_captions() if config.precompute_text_embeddings else None

        # Optimizer, lr schedule, EMA.
        unet = self.parts.unet
        optimizer = _make_optimizer(config, unet.parameters())
        lr_scheduler = self.lr_scheduler_for(optimizer)
        self.ema = None
        if config.use_ema:
            self.ema = EMAModel(unet.parameters(), decay=config.ema_decay, model_cls=UNet2DConditionModel,
                                model_config=unet.config, foreach=True)
            self.ema.to(self.device)
        if self.is_deepspeed:
            # No dataloader goes through prepare(), so DeepSpeed's "auto" micro batch is set here.
            deepspeed_config = accelerator.state.deepspeed_plugin.deepspeed_config
            deepspeed_config["train_micro_batch_size_per_gpu"] = config.train_batch_size
        self.unet, self.optimizer, self.lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)

        # Resume, then the data order from the checkpoint's position on.
        start = self._data_position(self.resume())
        self.fixed = self._fixed_set()
        self.sampler = StreamSampler(len(self.dataset), config.train_batch_size, self.accumulation,
                                     accelerator.num_processes, accelerator.process_index, config.seed, start)
        loader = DataLoader(StreamItems(self.dataset), batch_sampler=self.sampler,
                            num_workers=config.dataloader_num_workers, pin_memory=torch.cuda.is_available())
        self.batches: Iterator[dict[str, Any]] = iter(loader)
        # Per step of this launch: the sample indices and this process's loss (replicas.json).
        self.samples_seen: list[list[int]] = []
        self.local_losses: list[float] = []
        self.last_loss: float | None = None

    def accumulation_steps(self, num_processes: int) -> int:
        return self.config.gradient_accumulation_steps(num_processes)

    # ----------------------------------------------------------------- set-up

    def _count_long_captions(self) -> int:
        """Log how many captions need more than one CLIP window; the number cut when truncating."""
        tokenizer, window = self.parts.tokenizer, self.parts.text_encoder.config.max_position_embeddings
        windows = [len(token_windows(tokenizer, prompt, window, False)[0]) for prompt in self.dataset.prompts]
        long = sum(count > 1 for count in windows)
        if self.config.caption_truncation:
            logger.warning("caption_truncation: %d of %d captions are longer than %d tokens and are cut to their "
                           "first %d tokens", long, len(windows), window - 2, window - 2)
            return long
        logger.info("%d of %d captions are longer than %d tokens and are encoded in several %d-token windows "
                    "(at most %d)", long, len(windows), window - 2, window, max(windows))
        return 0

    def _encode_all(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        encoded = []
        for start in range(0, len(prompts), _ENCODE_CHUNK):
            for embeds, pooled, _ in self.text_encoder.encode_one_by_one(prompts[start:start + _ENCODE_CHUNK]):
                encoded.append((embeds.cpu(), pooled.cpu()))
        return encoded

    def _precompute_captions(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every caption's conditioning, then the text encoders freed."""
        logger.info("precomputing the text embeddings of %d captions", len(self.dataset))
        encoded = self._encode_all(self.dataset.prompts)
        self.parts.text_encoder = self.parts.text_encoder_2 = None
        self.text_encoder = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return encoded

    def _caption_text(self, indices: list[int]) -> EncodedText:
        if self.precomputed is not None:
            return collate_text([(*self.precomputed[i], False) for i in indices])
        return self.text_encoder.encode([self.dataset.prompts[i] for i in indices])

    @torch.no_grad()
    def _latents(self, pixels: torch.Tensor, generators: list[torch.Generator] | None) -> torch.Tensor:
        """Scaled VAE latents: a posterior sample per image, drawn from its generator (the
        posterior mean when ``generators`` is None)."""
        vae = self.parts.vae
        posterior = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist
        latents = posterior.mean.float()
        if generators is not None:
            shape = latents.shape[1:]
            eps = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(self.device)
            latents = latents + posterior.std.float() * eps
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * vae.config.scaling_factor

    def _fixed_set(self) -> FixedSet | None:
        dataset = self.dataset
        count = min(self.config.validation_loss_samples, len(dataset))
        if count == 0:
            return None
        items = [dataset[i] for i in range(count)]
        latents = torch.cat([self._latents(item["pixels"][None], None).cpu() for item in items])
        text = [(e.cpu(), p.cpu()) for e, p, _ in (
            [(*self.precomputed[i], False) for i in range(count)] if self.precomputed is not None
            else self.text_encoder.encode_one_by_one(dataset.prompts[:count]))]
        time_ids = torch.stack([item["time_ids"] for item in items])
        return make_fixed_set(latents, text, time_ids, self.config.seed + 1,
                              self.noise_scheduler.config.num_train_timesteps)

    def extras(self) -> dict[str, Any]:
        return {} if self.ema is None else {"ema": self.ema}

    def _data_position(self, state: dict[str, Any] | None) -> StreamPosition:
        """Where the data stream continues: the checkpoint's position, or the start."""
        if state is None:
            return StreamPosition(0, 0)
        if self.ema is not None:
            self.ema.to(self.device)  # extras are loaded onto the CPU
        if state["dataset_size"] != len(self.dataset):
            logger.warning("the dataset had %d images when step %d was saved and has %d now: the data order differs "
                           "from the interrupted run's", state["dataset_size"], self.step, len(self.dataset))
        logger.info("continuing at epoch %d, position %d", state["epoch"], state["position"])
        self.metrics.write({"kind": "resume", "step": self.step, "checkpoint": self.resumed_from.name})
        return StreamPosition(int(state["epoch"]), int(state["position"]))

    # ----------------------------------------------------------------- one step

    def _loss(self, batch: dict[str, Any]) -> torch.Tensor:
        generators = [torch.Generator().manual_seed(sample_seed(self.config.seed, int(offset)))
                      for offset in batch["offset"]]
        latents = self._latents(batch["pixels"], generators)
        scheduler = self.noise_scheduler
        noise = torch.stack([torch.randn(latents.shape[1:], generator=g) for g in generators]).to(self.device)
        timesteps = torch.cat([torch.randint(0, scheduler.config.num_train_timesteps, (1,), generator=g)
                               for g in generators]).to(self.device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        if scheduler.config.prediction_type == "epsilon":
            target = noise
        else:
            target = scheduler.get_velocity(latents, noise, timesteps)
        text = self._caption_text(batch["index"].tolist())
        dtype, device = self.input_dtype, self.device
        prediction = unet_eps(
            self.unet, noisy.to(dtype), timesteps, text.embeds.to(device, dtype), text.pooled.to(device, dtype),
            batch["time_ids"].to(device, dtype), None if text.mask is None else text.mask.to(device),
        )
        return torch.nn.functional.mse_loss(prediction.float(), target.float())

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every micro-batch of one optimizer step, then the EMA; returns this process's mean
        loss and the clipped gradient norm."""
        accelerator, config = self.accelerator, self.config
        losses, grad_norm, seen = [], None, []
        for _ in range(self.accumulation):
            batch = next(self.batches)
            seen.extend(batch["index"].tolist())
            with accelerator.accumulate(self.unet):
                loss = self._loss(batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(self.unet.parameters(), config.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        if self.ema is not None:
            self.ema.step(accelerator.unwrap_model(self.unet).parameters())
        self.samples_seen.append(seen)
        return torch.stack(losses).mean(), grad_norm

    def log_step(self, outcome: tuple[torch.Tensor, torch.Tensor | None], seconds: float) -> dict[str, str]:
        local, grad_norm = outcome
        step, config = self.step, self.config
        self.local_losses.append(float(local))
        loss = self.last_loss = float(self.accelerator.reduce(local, reduction="mean"))
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss} at step {step}: lower learning_rate, or use bf16 "
                                     "instead of fp16 mixed precision")
        values = {"train/loss": loss, "train/lr": self.lr_scheduler.get_last_lr()[0],
                  "train/images_per_second": config.total_batch_size / seconds}
        if grad_norm is not None:
            values["train/grad_norm"] = float(grad_norm)
        self.accelerator.log(values, step=step)
        position = self.sampler.position_after(step - self.start_step)
        self.metrics.write({"kind": "train", "step": step, "loss": loss, "lr": values["train/lr"],
                            "grad_norm": values.get("train/grad_norm"), "seconds": seconds,
                            "epoch": position.epoch, "position": position.position})
        return {"loss": f"{loss:.4f}", "lr": f"{values['train/lr']:.2e}",
                "img_s": f"{values['train/images_per_second']:.2f}"}

    def begin(self) -> None:
        accelerator = self.accelerator
        self.metrics.write({"kind": "start", "step": self.step, "processes": accelerator.num_processes,
                            "accumulation": self.accumulation, "mixed_precision": accelerator.mixed_precision,
                            "distributed_type": str(self.distributed.value), "dataset_size": len(self.dataset),
                            "truncated_captions": self.truncated_captions})

    # ----------------------------------------------------------------- validation, checkpoints, export

    def validate(self) -> None:
        config, step = self.config, self.step
        model = self.accelerator.unwrap_model(self.unet)
        self.unet.eval()
        if self.ema is not None:
            self.ema.store(model.parameters())
            self.ema.copy_to(model.parameters())
        try:
            size = config.validation_resolution or config.resolution
            images = render(self.unet, self.parts.vae, self.validation_text, self.negative_text, self.parts.schedule,
                            config.validation_sampler, config.validation_sampling_steps, config.validation_guidance,
                            size, config.validation_seed, self.device)
            loss = None
            if self.fixed is not None:
                loss = fixed_set_loss(self.unet, self.fixed, self.noise_scheduler, self.device)
        finally:
            if self.ema is not None:
                self.ema.restore(model.parameters())
            self.unet.train()
        if not self.accelerator.is_main_process:
            return
        from PIL import Image

        folder = self.output / "validation"
        folder.mkdir(parents=True, exist_ok=True)
        grid_path = folder / f"step-{step:08d}.png"
        Image.fromarray(image_grid(images)).save(grid_path)
        self.accelerator.log({} if loss is None else {"validation/fixed_set_loss": loss}, step=step)
        self.log_images("validation/grid", images)
        self.metrics.write({"kind": "validation", "step": step, "fixed_set_loss": loss,
                            "grid": str(grid_path.relative_to(self.output))})
        logger.info("step %d: validation grid %s, fixed-set loss %s", step, grid_path, loss)

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, str]]:
        position = self.sampler.position_after(self.step - self.start_step)
        return {"epoch": position.epoch, "position": position.position, "dataset_size": len(self.dataset),
                "total_batch_size": self.config.total_batch_size,
                "processes": self.accelerator.num_processes}, {}

    def _replica_check(self) -> None:
        """Gather every process's parameter digest, per-step sample indices and local (this
        process's) losses into replicas.json; raise when data-parallel replicas hold different
        weights."""
        if self.is_fsdp:
            return
        record = {"rank": self.accelerator.process_index, "steps": self.step - self.start_step,
                  "param_sha256": parameter_digest(self.accelerator.unwrap_model(self.unet)),
                  "samples": self.samples_seen[:_RECORDED_STEPS], "local_losses": self.local_losses[:_RECORDED_STEPS]}
        from accelerate.utils import gather_object

        records = gather_object([record])
        if self.accelerator.is_main_process:
            (self.output / REPLICAS_FILE).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
        digests = {r["param_sha256"] for r in records}
        if len(digests) > 1:
            raise RuntimeError(f"the {len(records)} data-parallel processes hold different UNet weights after "
                               f"training; see {self.output / REPLICAS_FILE}")

    def export(self) -> Stage1Result:
        """Check the replicas agree, then write the UNet (EMA weights when enabled) for use."""
        accelerator, step = self.accelerator, self.step
        if accelerator.num_processes > 1:
            self._replica_check()
        model = accelerator.unwrap_model(self.unet)
        if self.ema is not None:
            self.ema.copy_to(model.parameters())
        state = accelerator.get_state_dict(self.unet)
        unet_dir = single = None
        if accelerator.is_main_process:
            unet_dir, single = export_unet(state, model.config, self.output / "export",
                                           TORCH_DTYPES[self.config.export_dtype])
            logger.info("exported %s and %s (%s)", unet_dir, single, "EMA weights" if self.ema else "trained weights")
            self.metrics.write({"kind": "export", "step": step, "unet_dir": str(unet_dir), "single_file": str(single),
                                "ema": self.ema is not None})
        return Stage1Result(step=step, unet_dir=unet_dir, single_file=single, last_loss=self.last_loss)


def train(config: Stage1Config) -> Stage1Result:
    """Run Stage I as ``config`` says (see :class:`~training.stage1.config.Stage1Config`)."""
    return Stage1Trainer(config).run()
