"""The Stage I run configuration: one dataclass, read from a YAML/JSON file and CLI flags.

Defaults are the paper's (Sec. 4.1): full SDXL UNet fine-tune, epsilon objective, 1024x1024,
AdamW at lr 5e-7, a global batch of 96 reached by gradient accumulation, 50k iterations. Every
field is also a command-line flag (``learning_rate`` -> ``--learning-rate``); flags override the
file, the file overrides the defaults.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from training import config_cli

MIXED_PRECISION = ("no", "fp16", "bf16")
DTYPES = ("fp32", "fp16", "bf16")
LR_SCHEDULERS = (
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
)  # fmt: skip
VALIDATION_SAMPLERS = ("ddim", "ddpm")

# Face prompts in the paper's tag style (semantic tags, then photographic tags; Fig. 2).
DEFAULT_VALIDATION_PROMPTS = (
    "a woman, long brown hair, smiling, natural lighting, sharp focus, detailed skin texture, close-up portrait",
    "an old man, grey beard, wrinkles, studio lighting, high contrast, skin pores, 85mm lens",
)


@dataclass
class Stage1Config:
    """Everything a Stage I run needs.

    Paths: ``pretrained_model`` is a diffusers-layout SDXL folder (``unet/``, ``vae/``,
    ``text_encoder/``, ``text_encoder_2/``, ``tokenizer/``, ``tokenizer_2/``, optional
    ``scheduler/``; an AuthFace release works too, its ``controlnet/`` is ignored);
    ``data_dir`` holds images with caption sidecars (``python -m training.prepare_stage1``
    writes them to ``OUT_DIR/images``); ``output_dir`` receives checkpoints, logs, validation
    grids and the export.

    Batch: ``total_batch_size`` images per optimizer step over all processes;
    ``train_batch_size`` per process and micro-step. The gradient accumulation is
    ``total_batch_size / (train_batch_size * processes)`` and must be a whole number.
    """

    pretrained_model: str = ""
    data_dir: str = ""
    output_dir: str = ""

    resolution: int = 1024
    train_batch_size: int = 1
    total_batch_size: int = 96
    max_train_steps: int = 50_000
    seed: int = 0

    learning_rate: float = 5e-7
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    use_8bit_adam: bool = False
    max_grad_norm: float = 1.0
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0

    use_ema: bool = False
    ema_decay: float = 0.9999
    gradient_checkpointing: bool = False
    mixed_precision: str | None = None
    cpu: bool = field(default=False, metadata={"help": (
        "train on the CPU even when a GPU is present; several processes without CUDA (torchrun on "
        "a CPU machine) use the CPU and gloo anyway")})
    allow_tf32: bool = True
    vae_dtype: str = "fp32"

    caption_truncation: bool = False
    precompute_text_embeddings: bool = False
    dataloader_num_workers: int = 2

    checkpointing_steps: int = 500
    checkpoints_total_limit: int = 3
    resume_from_checkpoint: str | None = "latest"
    save_final_checkpoint: bool = field(default=True, metadata={"help": (
        "checkpoint the last step too (to train on later); --no-save-final-checkpoint keeps only the export")})

    validation_steps: int = 500
    validation_prompts: tuple[str, ...] = DEFAULT_VALIDATION_PROMPTS
    validation_negative_prompt: str = ""
    validation_sampling_steps: int = 20
    validation_sampler: str = "ddim"
    validation_guidance: float = 5.0
    validation_resolution: int | None = None
    validation_seed: int = 0
    validation_loss_samples: int = 4

    report_to: str = "tensorboard"
    export_dtype: str = "fp32"
    simulate_kill_at_step: int | None = field(default=None, metadata={"help": (
        "testing aid: hard-exit the process (os._exit(17)) right after this optimizer step, "
        "before its checkpoint, to rehearse a resume after a crash")})

    def validate(self) -> None:
        """Raise ValueError naming every field that is missing or out of range."""
        problems = []
        for name in ("pretrained_model", "data_dir", "output_dir"):
            if not getattr(self, name):
                problems.append(f"{name} is required (--{name.replace('_', '-')} DIR)")
        positive = ("resolution", "train_batch_size", "total_batch_size", "max_train_steps",
                    "validation_sampling_steps", "checkpointing_steps", "validation_steps")
        for name in positive:
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.resolution % 8:
            problems.append(f"resolution must be a multiple of 8 (the VAE's scale), got {self.resolution}")
        if self.validation_resolution is not None and (
            self.validation_resolution < 8 or self.validation_resolution % 8
        ):
            problems.append(f"validation_resolution must be a multiple of 8, got {self.validation_resolution}")
        if not self.validation_prompts:
            problems.append("validation_prompts must hold at least one prompt")
        if self.total_batch_size % self.train_batch_size:
            problems.append(
                f"total_batch_size {self.total_batch_size} is not a multiple of train_batch_size "
                f"{self.train_batch_size}"
            )
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 < self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.checkpoints_total_limit < 1:
            problems.append(f"checkpoints_total_limit must be at least 1, got {self.checkpoints_total_limit}")
        if self.validation_loss_samples < 0 or self.lr_warmup_steps < 0 or self.dataloader_num_workers < 0:
            problems.append("validation_loss_samples, lr_warmup_steps and dataloader_num_workers must be >= 0")
        choices = {
            "mixed_precision": (self.mixed_precision, (None, *MIXED_PRECISION)),
            "vae_dtype": (self.vae_dtype, DTYPES),
            "export_dtype": (self.export_dtype, DTYPES),
            "lr_scheduler": (self.lr_scheduler, LR_SCHEDULERS),
            "validation_sampler": (self.validation_sampler, VALIDATION_SAMPLERS),
            "report_to": (self.report_to, ("tensorboard", "none")),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                problems.append(f"{name} must be one of {shown}, got {value!r}")
        if problems:
            raise ValueError("invalid Stage I configuration:\n- " + "\n- ".join(problems))

    def gradient_accumulation_steps(self, num_processes: int) -> int:
        """Micro-steps per optimizer step for ``num_processes`` processes; ValueError when the
        global batch cannot be split evenly."""
        per_step = self.train_batch_size * num_processes
        if self.total_batch_size % per_step:
            raise ValueError(
                f"total_batch_size {self.total_batch_size} cannot be split over {num_processes} "
                f"process(es) x train_batch_size {self.train_batch_size}: choose a total that is a "
                f"multiple of {per_step}"
            )
        return self.total_batch_size // per_step

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-serialisable values (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def parse_config(argv: Sequence[str] | None = None) -> Stage1Config:
    """The configuration from CLI arguments (``--config`` file first, flags on top), validated.
    Raises ValueError for bad files or values; argparse exits on malformed flags."""
    return config_cli.parse_config(Stage1Config, argv, "python -m training.stage1",
                                   "AuthFace Stage I: face-oriented full fine-tuning of the SDXL UNet.")
