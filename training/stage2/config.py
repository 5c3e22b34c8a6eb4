"""The Stage II run configuration: one dataclass, from a YAML/JSON file and/or command-line flags.

Defaults are the paper's (Sec. 3.2, 4.1) where it gives them: ControlNet from the frozen Stage I
UNet, empty prompts, AdamW lr 2e-5, 512x512, a global batch of 48 (12 per GPU on its 4 GPUs),
the logit-normal time weight with m = -0.5, s = 1, GFPGAN's component-loss weights and
discriminator optimiser (Adam lr 2e-3, betas (0.9, 0.99)) and its degradation ranges. The paper
does not give Stage II's iteration count; ``max_train_steps`` defaults to Stage I's 50k.

Every field is a flag (``learning_rate`` -> ``--learning-rate``; booleans also take ``--no-...``;
pairs take two numbers); flags override the file, the file overrides the defaults.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from authface_core.degradation import DegradationConfig
from authface_core.losses.facial import DEFAULT_LAMBDA_ADV, DEFAULT_LAMBDA_STYLE
from authface_core.losses.time_weight import TIME_WEIGHTING_KINDS, TimeWeighting
from training import config_cli
from training.config_cli import help_text

MIXED_PRECISION = ("no", "fp16", "bf16")
EXPORT_DTYPES = ("fp32", "fp16", "bf16")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
SAMPLERS = ("ddpm", "ddim")
_DEGRADATION = DegradationConfig()


@dataclass
class Stage2Config:
    """Everything a Stage II run needs (see the module docstring for the defaults' sources)."""

    base: str = field(default="", metadata=help_text(
        "diffusers folder with unet/ vae/ text_encoder/ text_encoder_2/ tokenizer/ tokenizer_2/ [scheduler/]: "
        "an AuthFace release or SDXL base with the Stage I UNet"))
    unet: str | None = field(default=None, metadata=help_text("the Stage I UNet folder, when not BASE/unet"))
    controlnet_init: str | None = field(default=None, metadata=help_text(
        "start from this diffusers ControlNet folder instead of ControlNetModel.from_unet"))
    data_dir: str = field(default="", metadata=help_text("aligned HQ faces (the HQ_DIR of prepare_stage2)"))
    landmarks: str = field(default="", metadata=help_text("the OUT_DIR of prepare_stage2 (holding landmarks.jsonl)"))
    output_dir: str = field(default="", metadata=help_text("checkpoints/, logs/, validation/, export/, metrics.jsonl"))

    resolution: int = 512
    train_batch_size: int = field(default=12, metadata=help_text("faces per process and micro-step"))
    gradient_accumulation_steps: int = 1
    max_train_steps: int = field(default=50_000, metadata=help_text("optimizer steps"))
    seed: int = 0
    dataloader_num_workers: int = 4

    learning_rate: float = 2e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    max_grad_norm: float = field(default=1.0, metadata=help_text("ControlNet gradient clipping; 0 disables it"))

    d_learning_rate: float = 2e-3
    d_beta1: float = 0.9
    d_beta2: float = 0.99
    d_base_channels: int = 32

    time_weighting: str = field(default="logit_normal", metadata=help_text(
        "logit_normal (the paper), constant (ablation c) or none (L_noise only)"))
    logit_mean: float = -0.5
    logit_std: float = 1.0
    lambda_adv: float = DEFAULT_LAMBDA_ADV
    lambda_style: float = DEFAULT_LAMBDA_STYLE

    blur_sigma: tuple[float, float] = _DEGRADATION.blur_sigma
    downsample_range: tuple[float, float] = _DEGRADATION.downsample_range
    noise_range: tuple[float, float] = _DEGRADATION.noise_range
    jpeg_range: tuple[float, float] = _DEGRADATION.jpeg_range

    mixed_precision: str | None = field(default=None, metadata=help_text(
        "no, fp16 or bf16 (default: accelerate's launch configuration); the frozen UNet and text encoders "
        "run in this dtype, the ControlNet keeps float32 master weights"))
    gradient_checkpointing: bool = field(default=False, metadata=help_text(
        "recompute ControlNet and UNet activations in the backward pass"))
    allow_tf32: bool = True
    cpu: bool = field(default=False, metadata=help_text(
        "run on the CPU even if a GPU is present; needed for multi-process CPU runs (gloo)"))

    checkpointing_steps: int = 1000
    checkpoints_total_limit: int | None = 3
    resume_from_checkpoint: str | None = field(default="latest", metadata=help_text(
        "latest, none, or a checkpoint folder (or its name under output_dir/checkpoints)"))
    save_final_checkpoint: bool = field(default=True, metadata=help_text(
        "checkpoint the last step too (to train on later); --no-save-final-checkpoint keeps only the export"))

    validation_dir: str | None = field(default=None, metadata=help_text(
        "held-out aligned HQ faces; none: no validation"))
    validation_steps: int = 1000
    validation_count: int = 8
    validation_sampling_steps: int = 50
    validation_sampler: str = "ddpm"
    validation_cfg: float = 8.0
    validation_seed: int = 0
    validation_batch_size: int = 4

    log_every: int = 10
    report_to: str = field(default="tensorboard", metadata=help_text(
        "tensorboard, or none (metrics.jsonl only)"))
    export_dtype: str = "fp32"
    write_param_digests: bool = field(default=False, metadata=help_text(
        "each process writes a hash of its ControlNet and discriminator weights at the end (DDP check)"))
    simulate_kill_at_step: int | None = field(default=None, metadata=help_text(
        "testing aid: hard-exit the process (os._exit(17)) right after this optimizer step, "
        "before its checkpoint, to rehearse a resume after a crash"))

    @property
    def degradation(self) -> DegradationConfig:
        return DegradationConfig(blur_sigma=tuple(self.blur_sigma), downsample_range=tuple(self.downsample_range),
                                 noise_range=tuple(self.noise_range),
                                 jpeg_range=(int(self.jpeg_range[0]), int(self.jpeg_range[1])))

    @property
    def weighting(self) -> TimeWeighting:
        return TimeWeighting(self.time_weighting, self.logit_mean, self.logit_std)  # type: ignore[arg-type]

    def validate(self) -> None:
        """Raise ValueError naming every missing or out-of-range setting."""
        problems = []
        for name in ("base", "data_dir", "landmarks", "output_dir"):
            if not getattr(self, name):
                problems.append(f"{name} is required (--{name.replace('_', '-')} DIR)")
        for name in ("resolution", "train_batch_size", "gradient_accumulation_steps", "max_train_steps",
                     "checkpointing_steps", "validation_steps", "validation_count", "validation_sampling_steps",
                     "log_every", "validation_batch_size", "d_base_channels"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.resolution % 8:
            problems.append(f"resolution must be a multiple of 8 (the VAE's scale), got {self.resolution}")
        for name in ("learning_rate", "d_learning_rate", "logit_std"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("lambda_adv", "lambda_style", "max_grad_norm", "lr_warmup_steps", "dataloader_num_workers"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            problems.append(f"checkpoints_total_limit must be at least 1 or null, got {self.checkpoints_total_limit}")
        choices = {"time_weighting": (self.time_weighting, TIME_WEIGHTING_KINDS),
                   "mixed_precision": (self.mixed_precision, (None, *MIXED_PRECISION)),
                   "lr_scheduler": (self.lr_scheduler, LR_SCHEDULERS),
                   "validation_sampler": (self.validation_sampler, SAMPLERS),
                   "export_dtype": (self.export_dtype, EXPORT_DTYPES),
                   "report_to": (self.report_to, ("tensorboard", "none"))}
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                problems.append(f"{name} must be one of {', '.join(str(a) for a in allowed if a)}, got {value!r}")
        try:
            self.degradation
        except ValueError as err:
            problems.append(f"degradation ranges: {err}")
        if problems:
            raise ValueError("invalid Stage II configuration:\n- " + "\n- ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (pairs as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def parse_config(argv: Sequence[str] | None = None) -> Stage2Config:
    """The configuration from ``argv`` (and its ``--config`` file), validated. Raises ValueError
    for bad files or values; argparse exits on malformed flags."""
    return config_cli.parse_config(Stage2Config, argv, "python -m training.stage2",
                                   "AuthFace Stage II: the ControlNet with the time-aware facial loss.")
