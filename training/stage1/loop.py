"""The Stage I training loop on accelerate: one code path for one GPU, DDP, FSDP and DeepSpeed.

Each optimizer step: for each of the ``gradient_accumulation`` micro-batches of this process (see
:mod:`training.stage1.data` for which), encode the images with the frozen VAE (a latent sample),
draw noise and timesteps, noise the latents with the base model's DDPM schedule and regress the
UNet's prediction on the noise (epsilon; velocity for v-prediction schedules) with a mean squared
error; then clip the gradient norm, step AdamW, the EMA and the lr schedule.

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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from authface_core.errors import MissingDependencyError
from training.checkpoints import load_checkpoint, remove_partial, resolve_resume, save_checkpoint
from training.replicas import parameter_digest

from .config import Stage1Config
from .data import CaptionedFaces, StreamItems, StreamPosition, StreamSampler, sample_seed
from .export import export_unet
from .models import TORCH_DTYPES, SDXLParts, load_parts
from .text import EncodedText, TextEncoder, collate_text, token_windows
from .validation import FixedSet, fixed_set_loss, image_grid, make_fixed_set, render, unet_eps

logger = logging.getLogger("authface.training")

KILL_EXIT_CODE = 17
METRICS_FILE = "metrics.jsonl"
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


class _Metrics:
    """Appends JSON lines to ``output_dir/metrics.jsonl`` (main process only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def write(self, **record: Any) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


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


def _hparams(config: Stage1Config) -> dict[str, Any]:
    """The configuration in the value types TensorBoard's hparams accept."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.to_dict().items()}


class Stage1Trainer:
    """One Stage I run: set up with :meth:`__init__`, then :meth:`run`."""

    def __init__(self, config: Stage1Config) -> None:
        from accelerate import Accelerator, PartialState
        from accelerate.utils import DistributedType, ProjectConfiguration

        config.validate()
        if config.report_to == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError as err:
                raise MissingDependencyError(
                    "tensorboard", "TensorBoard logging (report_to: tensorboard; --report-to none logs to "
                    "metrics.jsonl only)") from err
        self.config = config
        self.output = Path(config.output_dir)
        # accelerate only builds a CPU (gloo) process group when asked to use the CPU.
        cpu = config.cpu or (int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available())
        processes = PartialState(cpu=cpu).num_processes
        self.accumulation = config.gradient_accumulation_steps(processes)
        self.accelerator = Accelerator(
            cpu=cpu,
            gradient_accumulation_steps=self.accumulation,
            mixed_precision=config.mixed_precision,
            log_with=None if config.report_to == "none" else config.report_to,
            project_config=ProjectConfiguration(project_dir=str(self.output), logging_dir=str(self.output / "logs")),
            step_scheduler_with_optimizer=False,
        )
        accelerator = self.accelerator
        if accelerator.gradient_accumulation_steps != self.accumulation:
            raise ValueError(
                f"the accelerate config sets gradient accumulation {accelerator.gradient_accumulation_steps}, but "
                f"total_batch_size {config.total_batch_size} needs {self.accumulation}: remove "
                "gradient_accumulation_steps from the accelerate/DeepSpeed config (it is derived here)"
            )
        self.distributed = accelerator.distributed_type
        if config.use_ema and self.distributed == DistributedType.FSDP:
            raise ValueError("use_ema is not supported with FSDP (parameters are sharded): use DDP or DeepSpeed ZeRO-2")
        self.is_deepspeed = self.distributed == DistributedType.DEEPSPEED
        self.is_fsdp = self.distributed == DistributedType.FSDP
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            level=logging.INFO if accelerator.is_main_process else logging.WARNING)
        if config.allow_tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.device = accelerator.device
        self.weight_dtype = TORCH_DTYPES[accelerator.mixed_precision]
        # DeepSpeed runs the module in its own dtype without autocast: inputs must match it.
        self.input_dtype = self.weight_dtype if self.is_deepspeed else torch.float32
        self.metrics = _Metrics(self.output / METRICS_FILE, accelerator.is_main_process)
        if accelerator.is_main_process:
            self.output.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------- set-up

    def _setup_models(self) -> SDXLParts:
        config = self.config
        parts = load_parts(config.pretrained_model, self.device, self.weight_dtype, TORCH_DTYPES[config.vae_dtype])
        if config.gradient_checkpointing:
            parts.unet.enable_gradient_checkpointing()
        return parts

    def _log_caption_lengths(self, dataset: CaptionedFaces, tokenizer: Any, window: int) -> None:
        windows = [len(token_windows(tokenizer, prompt, window, False)[0]) for prompt in dataset.prompts]
        long = sum(count > 1 for count in windows)
        if self.config.caption_truncation:
            logger.warning("caption_truncation: %d of %d captions are longer than %d tokens and are cut to their "
                           "first %d tokens", long, len(windows), window - 2, window - 2)
        else:
            logger.info("%d of %d captions are longer than %d tokens and are encoded in several %d-token windows "
                        "(at most %d)", long, len(windows), window - 2, window, max(windows))
        self.truncated_captions = long if self.config.caption_truncation else 0

    def _encode_all(self, encoder: TextEncoder, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        encoded = []
        for start in range(0, len(prompts), _ENCODE_CHUNK):
            for embeds, pooled, _ in encoder.encode_one_by_one(prompts[start:start + _ENCODE_CHUNK]):
                encoded.append((embeds.cpu(), pooled.cpu()))
        return encoded

    def _prepare_text(self, parts: SDXLParts, dataset: CaptionedFaces) -> None:
        config = self.config
        self.text_encoder = TextEncoder((parts.tokenizer, parts.tokenizer_2),
                                        (parts.text_encoder, parts.text_encoder_2), truncate=config.caption_truncation)
        self._log_caption_lengths(dataset, parts.tokenizer, parts.text_encoder.config.max_position_embeddings)
        self.validation_text = self._encode_all(self.text_encoder, list(config.validation_prompts))
        self.negative_text = self._encode_all(self.text_encoder, [config.validation_negative_prompt])[0]
        self.precomputed: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if config.precompute_text_embeddings:
            logger.info("precomputing the text embeddings of %d captions", len(dataset))
            self.precomputed = self._encode_all(self.text_encoder, dataset.prompts)
            parts.text_encoder = parts.text_encoder_2 = None
            self.text_encoder = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _caption_text(self, dataset: CaptionedFaces, indices: list[int]) -> EncodedText:
        if self.precomputed is not None:
            return collate_text([(*self.precomputed[i], False) for i in indices])
        return self.text_encoder.encode([dataset.prompts[i] for i in indices])

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

    def _fixed_set(self, dataset: CaptionedFaces) -> FixedSet | None:
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

    # ----------------------------------------------------------------- steps

    def _loss(self, batch: dict[str, Any], dataset: CaptionedFaces) -> torch.Tensor:
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
        text = self._caption_text(dataset, batch["index"].tolist())
        dtype, device = self.input_dtype, self.device
        prediction = unet_eps(
            self.unet, noisy.to(dtype), timesteps, text.embeds.to(device, dtype), text.pooled.to(device, dtype),
            batch["time_ids"].to(device, dtype), None if text.mask is None else text.mask.to(device),
        )
        return torch.nn.functional.mse_loss(prediction.float(), target.float())

    def _validate(self, step: int) -> None:
        config = self.config
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
        values: dict[str, Any] = {} if loss is None else {"validation/fixed_set_loss": loss}
        self.accelerator.log(values, step=step)
        if self.config.report_to == "tensorboard":
            self.accelerator.get_tracker("tensorboard").log_images({"validation/grid": images}, step=step,
                                                                   dataformats="NHWC")
        self.metrics.write(kind="validation", step=step, fixed_set_loss=loss,
                           grid=str(grid_path.relative_to(self.output)))
        logger.info("step %d: validation grid %s, fixed-set loss %s", step, grid_path, loss)

    def _checkpoint(self, step: int, sampler: StreamSampler, steps_done: int, dataset_size: int) -> None:
        position = sampler.position_after(steps_done)
        path = save_checkpoint(
            self.accelerator, self.output / "checkpoints", step,
            {"step": step, "epoch": position.epoch, "position": position.position, "dataset_size": dataset_size,
             "total_batch_size": self.config.total_batch_size, "processes": self.accelerator.num_processes},
            self.config.checkpoints_total_limit, extras=self._extras(),
        )
        logger.info("step %d: checkpoint %s", step, path)

    def _extras(self) -> dict[str, Any]:
        """The state kept outside accelerate that a checkpoint must hold."""
        return {} if self.ema is None else {"ema": self.ema}

    def _resume(self, dataset_size: int) -> tuple[int, StreamPosition]:
        root = self.output / "checkpoints"
        if self.accelerator.is_main_process:
            for stale in remove_partial(root):
                logger.warning("removed %s, left by a run stopped while saving", stale)
        self.accelerator.wait_for_everyone()
        path = resolve_resume(root, self.config.resume_from_checkpoint)
        if path is None:
            return 0, StreamPosition(0, 0)
        state = load_checkpoint(self.accelerator, path, extras=self._extras())
        if self.ema is not None:
            self.ema.to(self.device)  # extras are loaded onto the CPU
        if state["dataset_size"] != dataset_size:
            logger.warning("the dataset had %d images when %s was saved and has %d now: the data order differs "
                           "from the interrupted run's", state["dataset_size"], path, dataset_size)
        logger.info("resumed from %s at step %d (epoch %d, position %d)", path, state["step"], state["epoch"],
                    state["position"])
        self.metrics.write(kind="resume", step=state["step"], checkpoint=path.name)
        return int(state["step"]), StreamPosition(int(state["epoch"]), int(state["position"]))

    def _replica_check(self, steps_run: int) -> None:
        """Gather every process's parameter digest, per-step sample indices and local (this
        process's) losses into replicas.json; raise when data-parallel replicas hold different
        weights."""
        if self.is_fsdp:
            return
        record = {"rank": self.accelerator.process_index, "steps": steps_run,
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

    # ----------------------------------------------------------------- run

    def run(self) -> Stage1Result:
        """Train to ``max_train_steps`` (resuming when configured), checkpoint, validate, export."""
        from diffusers import DDPMScheduler, UNet2DConditionModel
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        config, accelerator = self.config, self.accelerator
        dataset = CaptionedFaces(config.data_dir, config.resolution)
        logger.info("%d captioned images in %s (%d skipped); %d process(es) x batch %d x accumulation %d = %d per step",
                    len(dataset), config.data_dir, dataset.skipped, accelerator.num_processes,
                    config.train_batch_size, self.accumulation, config.total_batch_size)
        self.parts = parts = self._setup_models()
        self.noise_scheduler = DDPMScheduler(**parts.schedule)
        self._prepare_text(parts, dataset)

        unet = parts.unet
        optimizer = _make_optimizer(config, unet.parameters())
        lr_scheduler = get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps,
                                     num_training_steps=config.max_train_steps)
        self.ema = None
        if config.use_ema:
            self.ema = EMAModel(unet.parameters(), decay=config.ema_decay, model_cls=UNet2DConditionModel,
                                model_config=unet.config, foreach=True)
            self.ema.to(self.device)
        if self.is_deepspeed:
            # No dataloader goes through prepare(), so DeepSpeed's "auto" micro batch is set here.
            deepspeed_config = accelerator.state.deepspeed_plugin.deepspeed_config
            deepspeed_config["train_micro_batch_size_per_gpu"] = config.train_batch_size
        self.unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)

        step, start = self._resume(len(dataset))
        self.fixed = self._fixed_set(dataset)
        sampler = StreamSampler(len(dataset), config.train_batch_size, self.accumulation, accelerator.num_processes,
                                accelerator.process_index, config.seed, start)
        loader = DataLoader(StreamItems(dataset), batch_sampler=sampler, num_workers=config.dataloader_num_workers,
                            pin_memory=torch.cuda.is_available())
        batches: Iterator[dict[str, Any]] = iter(loader)
        if config.report_to != "none":
            accelerator.init_trackers("stage1", config=_hparams(config))
        self.metrics.write(kind="start", step=step, processes=accelerator.num_processes,
                           accumulation=self.accumulation, mixed_precision=accelerator.mixed_precision,
                           distributed_type=str(self.distributed.value), dataset_size=len(dataset),
                           truncated_captions=self.truncated_captions)
        self.samples_seen: list[list[int]] = []
        self.local_losses: list[float] = []
        if step == 0:
            self._validate(0)

        first_step, last_loss = step, None
        progress = tqdm(total=config.max_train_steps, initial=step, desc="stage1", unit="step",
                        disable=not accelerator.is_local_main_process, dynamic_ncols=True)
        while step < config.max_train_steps:
            started = time.perf_counter()
            losses, grad_norm, seen = [], None, []
            for _ in range(self.accumulation):
                batch = next(batches)
                seen.extend(batch["index"].tolist())
                with accelerator.accumulate(self.unet):
                    loss = self._loss(batch, dataset)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        grad_norm = accelerator.clip_grad_norm_(self.unet.parameters(), config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                losses.append(loss.detach())
            if not accelerator.sync_gradients:
                raise RuntimeError("internal error: the last micro-step of an optimizer step did not synchronise")
            if self.ema is not None:
                self.ema.step(accelerator.unwrap_model(self.unet).parameters())
            lr_scheduler.step()
            step += 1
            local = torch.stack(losses).mean()
            self.samples_seen.append(seen)
            self.local_losses.append(float(local))
            last_loss = float(accelerator.reduce(local, reduction="mean"))
            if not math.isfinite(last_loss):
                raise FloatingPointError(f"the loss is {last_loss} at step {step}: lower learning_rate, or use bf16 "
                                         "instead of fp16 mixed precision")
            seconds = time.perf_counter() - started
            values = {"train/loss": last_loss, "train/lr": lr_scheduler.get_last_lr()[0],
                      "train/images_per_second": config.total_batch_size / seconds}
            if grad_norm is not None:
                values["train/grad_norm"] = float(grad_norm)
            accelerator.log(values, step=step)
            position = sampler.position_after(step - first_step)
            self.metrics.write(kind="train", step=step, loss=last_loss, lr=values["train/lr"],
                               grad_norm=values.get("train/grad_norm"), seconds=seconds,
                               epoch=position.epoch, position=position.position)
            progress.update(1)
            progress.set_postfix(loss=f"{last_loss:.4f}", lr=f"{values['train/lr']:.2e}",
                                 img_s=f"{values['train/images_per_second']:.2f}")
            if config.simulate_kill_at_step == step:
                progress.close()
                os._exit(KILL_EXIT_CODE)
            if step % config.checkpointing_steps == 0 or step == config.max_train_steps:
                self._checkpoint(step, sampler, step - first_step, len(dataset))
            if step % config.validation_steps == 0 or step == config.max_train_steps:
                self._validate(step)
        progress.close()
        return self._finish(step, first_step, last_loss)

    def _finish(self, step: int, first_step: int, last_loss: float | None) -> Stage1Result:
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        if accelerator.num_processes > 1:
            self._replica_check(step - first_step)
        model = accelerator.unwrap_model(self.unet)
        if self.ema is not None:
            self.ema.copy_to(model.parameters())
        state = accelerator.get_state_dict(self.unet)
        unet_dir = single = None
        if accelerator.is_main_process:
            unet_dir, single = export_unet(state, model.config, self.output / "export",
                                           TORCH_DTYPES[self.config.export_dtype])
            logger.info("exported %s and %s (%s)", unet_dir, single, "EMA weights" if self.ema else "trained weights")
            self.metrics.write(kind="export", step=step, unet_dir=str(unet_dir), single_file=str(single),
                               ema=self.ema is not None)
        accelerator.end_training()
        return Stage1Result(step=step, unet_dir=unet_dir, single_file=single, last_loss=last_loss)


def train(config: Stage1Config) -> Stage1Result:
    """Run Stage I as ``config`` says (see :class:`~training.stage1.config.Stage1Config`)."""
    return Stage1Trainer(config).run()

