"""The Stage II training loop on accelerate (one process, DDP over GPUs or CPU/gloo, FSDP).

Per optimizer step and per micro-batch: :meth:`Stage2Objective.prepare` (VAE encode, t, noise
from a generator seeded by the run's seed, the micro-batch number and the process rank), the
ControlNet step, then the discriminator step (:mod:`.step`). Every ``log_every`` steps the
loss terms, averaged over micro-batches and processes, go to TensorBoard (``logs/``) and, on the
main process, to ``metrics.jsonl``; every ``checkpointing_steps`` steps an atomic checkpoint is
written (:mod:`training.checkpoints`); every ``validation_steps`` steps held-out faces are restored and
scored (:mod:`.validation`). At the end the ControlNet is exported (:mod:`.export`).

Resuming (``resume="latest"`` by default) restores the ControlNet, the discriminators, both
optimizers, the lr scheduler and the random states, and continues the data order and the
per-micro-batch noise exactly where the checkpoint was taken, so the resumed run computes the
same losses as an uninterrupted one.
"""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from authface_core.errors import ModelFileError
from authface_core.losses.facial import FacialComponentLoss
from training.replicas import parameter_digest
from training.trainer import METRICS_FILE, Trainer

from .config import Stage2Config
from .data import EpochBatchSampler, Stage2Dataset, validation_pairs
from .export import CONTROLNET_CONFIG_FILE, EXPORT_DTYPES, ExportedControlNet, controlnet_config, export_controlnet
from .models import load_frozen_parts, make_controlnet, make_discriminators, place_unet
from .step import Stage2Objective, controlnet_update, discriminator_update
from .validation import validate, validation_pipeline

__all__ = ["METRICS_FILE", "TAGS", "Stage2Result", "Stage2Trainer", "inference_controlnet", "micro_batch_seed",
           "train"]

logger = logging.getLogger("authface.stage2")

NOISE_STREAM = 3  # seed-sequence tag of the per-micro-batch generator (data streams use 0-2)
# Settings that fix the data order and noise (with the process count): a resume with other values
# cannot continue exactly.
ORDER_SETTINGS = ("seed", "train_batch_size", "gradient_accumulation_steps", "resolution")
# TensorBoard tags of the logged terms.
TAGS = {"noise": "loss/noise", "facial": "loss/facial", "total": "loss/total", "weight": "facial/weight",
        "eyes_adv": "facial/eyes_adv", "eyes_style": "facial/eyes_style", "mouth_adv": "facial/mouth_adv",
        "mouth_style": "facial/mouth_style", "d_eyes": "disc/eyes", "d_mouth": "disc/mouth"}


@dataclass
class Stage2Result:
    """What a run ended with: its last optimizer step and the export (None on other processes)."""

    step: int
    export: ExportedControlNet | None


def micro_batch_seed(seed: int, micro_batch: int, rank: int) -> int:
    """Seed of the generator drawing VAE posterior samples, t and noise of one micro-batch."""
    return int(np.random.SeedSequence([seed, NOISE_STREAM, micro_batch, rank]).generate_state(1, np.uint64)[0])


def inference_controlnet(accelerator: Any, controlnet: Any) -> Any:
    """The ControlNet as a plain module for validation and export. With FSDP its full state dict
    is gathered (every process must call this) into a copy that only the main process gets
    (None elsewhere); otherwise the training module itself, unwrapped, on every process."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        return accelerator.unwrap_model(controlnet)
    from diffusers import ControlNetModel

    state = accelerator.get_state_dict(controlnet)
    if not accelerator.is_main_process:
        return None
    config = controlnet_config(accelerator.unwrap_model(controlnet))
    copy = ControlNetModel.from_config(config)
    copy.load_state_dict(state)
    return copy.to(accelerator.device).eval()


def _alphas_cumprod(schedule: dict[str, Any]) -> torch.Tensor:
    from diffusers import DDPMScheduler

    if schedule.get("prediction_type", "epsilon") != "epsilon":
        raise ModelFileError(f"the base model predicts {schedule['prediction_type']!r}; Stage II's losses (paper "
                             "eqs. 1-2) are written for epsilon prediction")
    return DDPMScheduler(**schedule).alphas_cumprod.float()


class _Terms:
    """Running sums of the logged terms over the micro-batches of one logging window."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.float()
        self.count += 1

    def mean_over_processes(self, accelerator: Any) -> dict[str, float]:
        keys = sorted(self.sums)
        stacked = torch.stack([self.sums[k] / self.count for k in keys]).to(accelerator.device)
        reduced = accelerator.reduce(stacked, reduction="mean")
        self.sums, self.count = {}, 0
        return {key: float(value) for key, value in zip(keys, reduced.tolist())}


class Stage2Trainer(Trainer):
    """One Stage II run in the shape of :class:`training.trainer.Trainer`: everything is set up
    (and resumed) in :meth:`__init__`, :meth:`run` trains, checkpoints, validates and exports."""

    name = "stage2"

    def __init__(self, config: Stage2Config) -> None:
        from accelerate.utils import broadcast

        super().__init__(config, accumulation=config.gradient_accumulation_steps)
        self.config: Stage2Config = config
        accelerator, device = self.accelerator, self.device

        # Models: the frozen Stage I parts, the ControlNet from the UNet's encoder, the discriminators
        # (initialised alike on every process by the trainer's seed, then broadcast to be sure).
        self.parts = load_frozen_parts(config.base, config.unet, device, self.weight_dtype)
        controlnet = make_controlnet(self.parts.unet, device, config.controlnet_init)
        place_unet(self.parts, device, self.weight_dtype)
        self.discriminators = make_discriminators(config.d_base_channels).to(device)
        if config.gradient_checkpointing:
            controlnet.enable_gradient_checkpointing()
            self.parts.unet.enable_gradient_checkpointing()
        prompt_embeds, pooled = validation_pipeline(self.parts, controlnet, device).encode_prompt("")
        # encode_prompt runs in inference mode; autograd needs ordinary tensors.
        prompt_embeds, pooled = prompt_embeds.clone(), pooled.clone()
        self.held_out = None
        if config.validation_dir:
            self.held_out = validation_pairs(config.validation_dir, config.validation_count, config.resolution,
                                             config.degradation, config.seed)
        else:
            self.parts.text_encoder = self.parts.text_encoder_2 = None
            gc.collect()

        # Optimizers and lr schedule.
        optimizer = torch.optim.AdamW(controlnet.parameters(), lr=config.learning_rate,
                                      betas=(config.adam_beta1, config.adam_beta2),
                                      weight_decay=config.adam_weight_decay, eps=config.adam_epsilon)
        self.d_optimizer = torch.optim.Adam(self.discriminators.parameters(), lr=config.d_learning_rate,
                                            betas=(config.d_beta1, config.d_beta2))
        lr_scheduler = self.lr_scheduler_for(optimizer)
        self.controlnet, self.optimizer, self.lr_scheduler = accelerator.prepare(controlnet, optimizer, lr_scheduler)
        if accelerator.num_processes > 1:
            with torch.no_grad():
                for param in self.discriminators.parameters():
                    param.copy_(broadcast(param.detach().clone(), from_process=0))
        self.objective = Stage2Objective(
            self.parts.unet, self.parts.vae, self.controlnet, self.discriminators,
            _alphas_cumprod(self.parts.schedule), prompt_embeds, pooled, config.resolution,
            FacialComponentLoss(config.weighting, config.lambda_adv, config.lambda_style))

        # Resume, then the data order and noise from the checkpoint's micro-batch on.
        self.order = {**{name: getattr(config, name) for name in ORDER_SETTINGS},
                      "num_processes": accelerator.num_processes}
        self.micro_batch = self._micro_batch(self.resume())
        self.dataset = Stage2Dataset(config.data_dir, config.landmarks, config.resolution, config.degradation,
                                     config.seed)
        sampler = EpochBatchSampler(len(self.dataset), config.train_batch_size, accelerator.num_processes,
                                    accelerator.process_index, config.seed, start=self.micro_batch)
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler,
                                             num_workers=config.dataloader_num_workers,
                                             pin_memory=device.type == "cuda")
        self.batches = iter(loader)
        # The logged terms and training seconds of the current logging window.
        self.terms = _Terms()
        self.window_seconds = 0.0
        self.window_steps = 0
        logger.info("Stage II: %d faces, %d process(es) x %d faces x %d accumulation, steps %d -> %d",
                    len(self.dataset), accelerator.num_processes, config.train_batch_size,
                    config.gradient_accumulation_steps, self.step, config.max_train_steps)

    def extras(self) -> dict[str, Any]:
        return {"discriminators": self.discriminators, "discriminator_optimizer": self.d_optimizer}

    def _micro_batch(self, state: dict[str, Any] | None) -> int:
        """The micro-batch the data order and noise continue from (0 for a fresh run); warns when
        settings that fix them changed since the checkpoint."""
        if state is None:
            return 0
        saved_order = state.get("order", {})
        changed = {k: (saved_order.get(k), v) for k, v in self.order.items() if saved_order.get(k) != v}
        if changed:
            logger.warning("resuming %s with other settings %s (saved, now): the data order and noise differ from "
                           "an uninterrupted run", self.resumed_from, changed)
        return int(state.get("micro_batch", self.step * self.config.gradient_accumulation_steps))

    # ----------------------------------------------------------------- one step

    def train_step(self) -> None:
        """Every micro-batch of one optimizer step: the ControlNet update, then the discriminator
        update (:mod:`.step`), with noise from the micro-batch's own generator."""
        accelerator, config = self.accelerator, self.config
        for _ in range(self.accumulation):
            batch = next(self.batches)
            generator = torch.Generator(device=self.device).manual_seed(
                micro_batch_seed(config.seed, self.micro_batch, accelerator.process_index))
            with accelerator.accumulate(self.controlnet):
                inputs = self.objective.prepare(batch, generator)
                generated = controlnet_update(accelerator, self.objective, inputs, self.optimizer, config.max_grad_norm)
                d_terms = discriminator_update(accelerator, self.objective, inputs, generated.z0_pred,
                                               self.d_optimizer)
            self.terms.add({**generated.terms, **d_terms})
            self.micro_batch += 1

    def _log(self, scalars: dict[str, float]) -> None:
        self.accelerator.log(scalars, step=self.step)
        self.metrics.write({"step": self.step, **scalars})

    def log_step(self, outcome: None, seconds: float) -> dict[str, str]:
        """Every ``log_every`` steps (and at the last): the terms averaged over the window's
        micro-batches and the processes, the lr and the mean training seconds per step."""
        self.window_seconds += seconds
        self.window_steps += 1
        if self.step % self.config.log_every and self.step != self.config.max_train_steps:
            return {}
        scalars = {TAGS[key]: value for key, value in self.terms.mean_over_processes(self.accelerator).items()}
        per_step = self.window_seconds / self.window_steps
        self.window_seconds, self.window_steps = 0.0, 0
        self._log({**scalars, "lr": self.lr_scheduler.get_last_lr()[0], "time/seconds_per_step": per_step})
        return {"loss": f"{scalars['loss/total']:.4f}", "facial": f"{scalars['loss/facial']:.4f}",
                "s_step": f"{per_step:.2f}"}

    # ----------------------------------------------------------------- validation, checkpoints, export

    def validate(self) -> None:
        """Restore the held-out faces with the ControlNet as it is (no-op without ``validation_dir``)."""
        if self.held_out is None:
            return
        config, step = self.config, self.step
        model = inference_controlnet(self.accelerator, self.controlnet)
        if self.accelerator.is_main_process:
            hq, lq, _ = self.held_out
            result = validate(validation_pipeline(self.parts, model, self.device), hq, lq,
                              config.validation_sampling_steps, config.validation_cfg, config.validation_seed,
                              config.validation_batch_size)
            folder = self.output / "validation"
            folder.mkdir(exist_ok=True)
            cv2.imwrite(str(folder / f"step-{step:08d}.png"), result.grid[..., ::-1])
            self.log_images("validation/lq_restored_hq", result.grid[None])
            self._log({"val/psnr": float(result.psnr.mean()), "val/ssim": float(result.ssim.mean())})
            logger.info("step %d validation: PSNR %.2f dB, SSIM %.4f", step, float(result.psnr.mean()),
                        float(result.ssim.mean()))
        self.accelerator.wait_for_everyone()

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, str]]:
        model = self.accelerator.unwrap_model(self.controlnet)
        return ({"micro_batch": self.micro_batch, "order": self.order},
                {CONTROLNET_CONFIG_FILE: json.dumps(controlnet_config(model), indent=2) + "\n"})

    def export(self) -> Stage2Result:
        """Write the ControlNet for use; with ``write_param_digests`` each process's weight hashes."""
        accelerator, config = self.accelerator, self.config
        exported = None
        model = inference_controlnet(accelerator, self.controlnet)
        if accelerator.is_main_process:
            exported = export_controlnet(controlnet_config(model), model.state_dict(), self.output / "export",
                                         EXPORT_DTYPES[config.export_dtype])
            logger.info("exported %s and %s", exported.folder, exported.single_file)
        if config.write_param_digests:
            folder = self.output / "param_digests"
            folder.mkdir(parents=True, exist_ok=True)
            digests = {"controlnet": parameter_digest(accelerator.unwrap_model(self.controlnet)),
                       "discriminators": parameter_digest(self.discriminators)}
            (folder / f"rank{accelerator.process_index}.json").write_text(json.dumps(digests) + "\n")
        return Stage2Result(step=self.step, export=exported)


def train(config: Stage2Config) -> Stage2Result:
    """Run Stage II as ``config`` says (module docstring). Every process of the launch calls it."""
    return Stage2Trainer(config).run()
