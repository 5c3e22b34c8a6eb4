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
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from authface_core.errors import AuthFaceError, ModelFileError
from authface_core.losses.facial import FacialComponentLoss
from training.checkpoints import load_checkpoint, remove_partial, resolve_resume, save_checkpoint
from training.replicas import parameter_digest

from .config import Stage2Config
from .data import EpochBatchSampler, Stage2Dataset, validation_pairs
from .export import CONTROLNET_CONFIG_FILE, EXPORT_DTYPES, ExportedControlNet, controlnet_config, export_controlnet
from .models import load_frozen_parts, make_controlnet, make_discriminators, place_unet
from .step import Stage2Objective, controlnet_update, discriminator_update
from .validation import validate, validation_pipeline

logger = logging.getLogger("authface.stage2")

WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
METRICS_FILE = "metrics.jsonl"
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


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the entries a killed run logged after the checkpoint it is resumed from."""
    if path.is_file():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def _hparams(config: Stage2Config) -> dict[str, Any]:
    """TensorBoard hyper-parameters: scalars and strings only."""
    return {key: value if isinstance(value, (int, float, str, bool)) else str(value)
            for key, value in config.to_dict().items()}


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


def train(config: Stage2Config) -> Stage2Result:
    """Run Stage II as ``config`` says (module docstring). Every process of the launch calls it."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, broadcast, set_seed
    from diffusers.optimization import get_scheduler

    config.validate()
    output = Path(config.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps, mixed_precision=config.mixed_precision,
        cpu=config.cpu, log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(output), logging_dir=str(output / "logs")))
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != launched:
        raise AuthFaceError(
            f"{launched} processes were launched but accelerate formed a group of {accelerator.num_processes}: "
            "each would train alone into the same folder. On CPUs pass --cpu (gloo); on GPUs check the launcher")
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
    # The same seed everywhere: identical discriminator initialisation on every process.
    set_seed(config.seed)
    if config.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    device = accelerator.device
    weight_dtype = WEIGHT_DTYPES[accelerator.mixed_precision]

    parts = load_frozen_parts(config.base, config.unet, device, weight_dtype)
    controlnet = make_controlnet(parts.unet, device, config.controlnet_init)
    place_unet(parts, device, weight_dtype)
    discriminators = make_discriminators(config.d_base_channels).to(device)
    if config.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()
        parts.unet.enable_gradient_checkpointing()
    prompt_embeds, pooled = validation_pipeline(parts, controlnet, device).encode_prompt("")
    # encode_prompt runs in inference mode; autograd needs ordinary tensors.
    prompt_embeds, pooled = prompt_embeds.clone(), pooled.clone()
    held_out = None
    if config.validation_dir:
        held_out = validation_pairs(config.validation_dir, config.validation_count, config.resolution,
                                    config.degradation, config.seed)
    else:
        parts.text_encoder = parts.text_encoder_2 = None
        gc.collect()

    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=config.learning_rate,
                                  betas=(config.adam_beta1, config.adam_beta2),
                                  weight_decay=config.adam_weight_decay, eps=config.adam_epsilon)
    d_optimizer = torch.optim.Adam(discriminators.parameters(), lr=config.d_learning_rate,
                                   betas=(config.d_beta1, config.d_beta2))
    # accelerate steps a prepared scheduler once per process per optimizer step.
    lr_scheduler = get_scheduler(config.lr_scheduler, optimizer,
                                 num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=config.max_train_steps * accelerator.num_processes)
    controlnet, optimizer, lr_scheduler = accelerator.prepare(controlnet, optimizer, lr_scheduler)
    extras = {"discriminators": discriminators, "discriminator_optimizer": d_optimizer}
    if accelerator.num_processes > 1:
        with torch.no_grad():
            for param in discriminators.parameters():
                param.copy_(broadcast(param.detach().clone(), from_process=0))

    objective = Stage2Objective(
        parts.unet, parts.vae, controlnet, discriminators, _alphas_cumprod(parts.schedule), prompt_embeds, pooled,
        config.resolution, FacialComponentLoss(config.weighting, config.lambda_adv, config.lambda_style))

    order = {**{name: getattr(config, name) for name in ORDER_SETTINGS}, "num_processes": accelerator.num_processes}
    step = micro_batch = 0
    checkpoints = output / "checkpoints"
    if accelerator.is_main_process:
        for stale in remove_partial(checkpoints):
            logger.warning("removed %s, left by a run stopped while saving", stale)
    accelerator.wait_for_everyone()
    checkpoint = resolve_resume(checkpoints, config.resume_from_checkpoint)
    if checkpoint is not None:
        saved = load_checkpoint(accelerator, checkpoint, extras)
        step = int(saved["step"])
        micro_batch = int(saved.get("micro_batch", step * config.gradient_accumulation_steps))
        saved_order = saved.get("order", {})
        changed = {k: (saved_order.get(k), v) for k, v in order.items() if saved_order.get(k) != v}
        if changed:
            logger.warning("resuming %s with other settings %s (saved, now): the data order and noise differ from "
                           "an uninterrupted run", checkpoint, changed)
        logger.info("resumed from %s at step %d", checkpoint, step)
        if accelerator.is_main_process:
            _truncate_metrics(output / METRICS_FILE, step)

    dataset = Stage2Dataset(config.data_dir, config.landmarks, config.resolution, config.degradation, config.seed)
    sampler = EpochBatchSampler(len(dataset), config.train_batch_size, accelerator.num_processes,
                                accelerator.process_index, config.seed, start=micro_batch)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config.dataloader_num_workers,
                                         pin_memory=device.type == "cuda")
    accelerator.init_trackers("stage2", config=_hparams(config))
    if accelerator.is_main_process:
        logger.info("Stage II: %d faces, %d process(es) x %d faces x %d accumulation, steps %d -> %d",
                    len(dataset), accelerator.num_processes, config.train_batch_size,
                    config.gradient_accumulation_steps, step, config.max_train_steps)

    def log(scalars: dict[str, float]) -> None:
        accelerator.log(scalars, step=step)
        if accelerator.is_main_process:
            with open(output / METRICS_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": step, **scalars}) + "\n")

    def run_validation(pairs: tuple[torch.Tensor, torch.Tensor, list[str]]) -> None:
        model = inference_controlnet(accelerator, controlnet)
        if accelerator.is_main_process:
            hq, lq, _ = pairs
            result = validate(validation_pipeline(parts, model, device), hq, lq, config.validation_sampling_steps,
                              config.validation_cfg, config.validation_seed, config.validation_batch_size)
            folder = output / "validation"
            folder.mkdir(exist_ok=True)
            cv2.imwrite(str(folder / f"step-{step:08d}.png"), result.grid[..., ::-1])
            accelerator.get_tracker("tensorboard", unwrap=True).add_image(
                "validation/lq_restored_hq", result.grid, step, dataformats="HWC")
            log({"val/psnr": float(result.psnr.mean()), "val/ssim": float(result.ssim.mean())})
            logger.info("step %d validation: PSNR %.2f dB, SSIM %.4f", step, float(result.psnr.mean()),
                        float(result.ssim.mean()))
        accelerator.wait_for_everyone()

    def checkpoint_now() -> None:
        model = accelerator.unwrap_model(controlnet)
        save_checkpoint(accelerator, checkpoints, step, {"micro_batch": micro_batch, "order": order},
                        config.checkpoints_total_limit, extras,
                        {CONTROLNET_CONFIG_FILE: json.dumps(controlnet_config(model), indent=2) + "\n"})

    from tqdm.auto import tqdm

    terms = _Terms()
    last_checkpoint = step
    batches = iter(loader)
    progress = tqdm(total=config.max_train_steps, initial=step, desc="stage2", unit="step",
                    disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    # Seconds per step are averaged over the training steps of a logging window; the time spent
    # checkpointing and validating is left out.
    window_start, window_step = time.perf_counter(), step
    while step < config.max_train_steps:
        batch = next(batches)
        generator = torch.Generator(device=device).manual_seed(
            micro_batch_seed(config.seed, micro_batch, accelerator.process_index))
        with accelerator.accumulate(controlnet):
            inputs = objective.prepare(batch, generator)
            generated = controlnet_update(accelerator, objective, inputs, optimizer, lr_scheduler, config.max_grad_norm)
            d_terms = discriminator_update(accelerator, objective, inputs, generated.z0_pred, d_optimizer)
        terms.add({**generated.terms, **d_terms})
        micro_batch += 1
        if not accelerator.sync_gradients:
            continue
        step += 1
        if step % config.log_every == 0 or step == config.max_train_steps:
            scalars = {TAGS[key]: value for key, value in terms.mean_over_processes(accelerator).items()}
            seconds = (time.perf_counter() - window_start) / (step - window_step)
            log({**scalars, "lr": lr_scheduler.get_last_lr()[0], "time/seconds_per_step": seconds})
            window_start, window_step = time.perf_counter(), step
            progress.set_postfix(loss=f"{scalars['loss/total']:.4f}", facial=f"{scalars['loss/facial']:.4f}",
                                 s_step=f"{seconds:.2f}")
        progress.update(1)
        paused = False
        if step % config.checkpointing_steps == 0:
            checkpoint_now()
            last_checkpoint, paused = step, True
        if held_out is not None and step % config.validation_steps == 0:
            run_validation(held_out)
            paused = True
        if paused:
            window_start, window_step = time.perf_counter(), step
    progress.close()
    del batches

    if config.save_final_checkpoint and last_checkpoint != step:
        checkpoint_now()
    exported = None
    model = inference_controlnet(accelerator, controlnet)
    if accelerator.is_main_process:
        exported = export_controlnet(controlnet_config(model), model.state_dict(), output / "export",
                                     EXPORT_DTYPES[config.export_dtype])
        logger.info("exported %s and %s", exported.folder, exported.single_file)
    if config.write_param_digests:
        folder = output / "param_digests"
        folder.mkdir(parents=True, exist_ok=True)
        digests = {"controlnet": parameter_digest(accelerator.unwrap_model(controlnet)),
                   "discriminators": parameter_digest(discriminators)}
        (folder / f"rank{accelerator.process_index}.json").write_text(json.dumps(digests) + "\n")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return Stage2Result(step=step, export=exported)
