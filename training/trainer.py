"""The shape both AuthFace trainers share: one base class, two stages.

Modelled on the scripts of diffusers' ``examples/`` (settings, accelerator, models, data,
optimizer, loop, save, in that order, the same in every script), while keeping what those
scripts lack: a typed configuration (:mod:`training.config_cli`), atomic checkpoints that load
without unpickling (:mod:`training.checkpoints`) and an exact resume.

A stage subclasses :class:`Trainer` and reads top to bottom the same way:

- ``__init__``: ``super().__init__`` (the accelerator, logging, TF32, seed, output folder and the
  run's counters), then the stage's models, optimizers (:meth:`Trainer.lr_scheduler_for`),
  ``accelerator.prepare``, :meth:`Trainer.resume` and the data order continued from the
  checkpoint. Every attribute of a run is created there.
- :meth:`Trainer.run` (here, for both): trackers, then per optimizer step the stage's
  :meth:`train_step` (every micro-batch of the step), the lr schedule, :meth:`log_step`, a
  checkpoint every ``checkpointing_steps`` (:meth:`checkpoint_state`), :meth:`validate` every
  ``validation_steps``; then a last checkpoint and :meth:`export`.

Conventions the two stages used to differ on, now fixed here: the lr schedule is measured in
optimizer steps and stepped once after each (accelerate's ``step_scheduler_with_optimizer`` is
off, so a schedule does not depend on the number of processes); ``metrics.jsonl`` is cut back to
the checkpoint's step on resume (a resumed run logs the repeated steps once); checkpoints and
validations run at their intervals and at the last step.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

import torch

from authface_core.errors import AuthFaceError, MissingDependencyError
from training.checkpoints import Stateful, load_checkpoint, remove_partial, resolve_resume, save_checkpoint

logger = logging.getLogger("authface.training")

METRICS_FILE = "metrics.jsonl"
# Exit code of the simulated crash (``simulate_kill_at_step``), distinct from Python's own.
KILL_EXIT_CODE = 17
# Mixed-precision and dtype setting names (accelerate's "no" included) to torch dtypes.
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "no": torch.float32}


class TrainerConfig(Protocol):
    """The settings :class:`Trainer` reads; ``Stage1Config`` and ``Stage2Config`` have them all."""

    output_dir: str
    seed: int
    mixed_precision: str | None
    cpu: bool
    allow_tf32: bool
    report_to: str
    learning_rate: float
    lr_scheduler: str
    lr_warmup_steps: int
    max_train_steps: int
    checkpointing_steps: int
    checkpoints_total_limit: int | None
    resume_from_checkpoint: str | None
    save_final_checkpoint: bool
    validation_steps: int
    simulate_kill_at_step: int | None

    def validate(self) -> None: ...

    def to_dict(self) -> dict[str, Any]: ...


class MetricsFile:
    """``output_dir/metrics.jsonl``: one JSON object per line, written by the main process only."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def truncate(self, step: int) -> None:
        """Drop the lines a killed run wrote after ``step`` (the checkpoint it resumes from)."""
        if self.enabled and self.path.is_file():
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= step]
            self.path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def hparams(config: TrainerConfig) -> dict[str, Any]:
    """The configuration in the value types TensorBoard's hparams accept (scalars and strings)."""
    return {key: value if isinstance(value, (int, float, str, bool)) else str(value)
            for key, value in config.to_dict().items()}


class Trainer:
    """One training run on accelerate (module docstring). Subclasses set :attr:`name`, create
    ``self.optimizer`` and ``self.lr_scheduler`` (prepared by accelerate) in their ``__init__``,
    and implement :meth:`train_step`, :meth:`log_step`, :meth:`checkpoint_state`,
    :meth:`validate` and :meth:`export`; :meth:`extras`, :meth:`begin` and
    :attr:`validates_at_start` are optional."""

    name = "train"
    #: Validate once before the first step of a fresh run (a baseline for the validation figures).
    validates_at_start = False

    def __init__(self, config: TrainerConfig, accumulation: int | None = None, cpu: bool | None = None) -> None:
        """Validate ``config`` and set up accelerate. ``accumulation``: micro-batches per optimizer
        step, None to ask :meth:`accumulation_steps` once the number of processes is known;
        ``cpu``: train on the CPU (gloo between processes), default ``config.cpu``."""
        from accelerate import Accelerator, PartialState
        from accelerate.utils import ProjectConfiguration, set_seed

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
        cpu = config.cpu if cpu is None else cpu
        if accumulation is None:
            accumulation = self.accumulation_steps(PartialState(cpu=cpu).num_processes)
        self.accumulation = accumulation
        self.accelerator = Accelerator(
            cpu=cpu, gradient_accumulation_steps=accumulation, mixed_precision=config.mixed_precision,
            log_with=None if config.report_to == "none" else config.report_to,
            project_config=ProjectConfiguration(project_dir=str(self.output), logging_dir=str(self.output / "logs")),
            step_scheduler_with_optimizer=False,
        )
        accelerator = self.accelerator
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if accelerator.num_processes != launched:
            raise AuthFaceError(
                f"{launched} processes were launched but accelerate formed a group of {accelerator.num_processes}: "
                "each would train alone into the same folder. On CPUs pass --cpu (gloo); on GPUs check the launcher")
        if accelerator.gradient_accumulation_steps != accumulation:
            raise ValueError(
                f"the accelerate config sets gradient accumulation {accelerator.gradient_accumulation_steps}, but "
                f"this run needs {accumulation}: remove gradient_accumulation_steps from the accelerate/DeepSpeed "
                "config (the run's settings give it)")
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            level=logging.INFO if accelerator.is_main_process else logging.WARNING)
        # The same seed on every process: identically initialised modules, whatever the stage builds.
        set_seed(config.seed)
        if config.allow_tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.device = accelerator.device
        self.weight_dtype = TORCH_DTYPES[accelerator.mixed_precision]
        self.metrics = MetricsFile(self.output / METRICS_FILE, accelerator.is_main_process)
        if accelerator.is_main_process:
            self.output.mkdir(parents=True, exist_ok=True)
        # The run's position: the optimizer step reached and where this launch started (both set
        # by resume()), and the checkpoint it resumed from.
        self.step = 0
        self.start_step = 0
        self.resumed_from: Path | None = None

    # ------------------------------------------------------------------ set-up helpers

    def accumulation_steps(self, num_processes: int) -> int:
        """Micro-batches per optimizer step for ``num_processes`` processes (stages that derive
        it from a global batch override this)."""
        raise NotImplementedError(f"{type(self).__name__} must pass accumulation or define accumulation_steps")

    def lr_scheduler_for(self, optimizer: torch.optim.Optimizer) -> Any:
        """The configured schedule, its warm-up and length counted in optimizer steps; :meth:`run`
        steps it once after each optimizer step."""
        from diffusers.optimization import get_scheduler

        config = self.config
        return get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps,
                             num_training_steps=config.max_train_steps)

    def extras(self) -> dict[str, Stateful]:
        """The state kept outside accelerate that a checkpoint must hold (EMA, discriminators...)."""
        return {}

    def resume(self) -> dict[str, Any] | None:
        """Delete the partial checkpoints a killed run left, then load the checkpoint
        ``resume_from_checkpoint`` names (the newest for "latest"): accelerate's state and
        :meth:`extras`. Sets :attr:`step` and cuts ``metrics.jsonl`` back to it; returns the
        checkpoint's ``training_state.json`` (None for a fresh run). Every process calls it."""
        root = self.output / "checkpoints"
        if self.accelerator.is_main_process:
            for stale in remove_partial(root):
                logger.warning("removed %s, left by a run stopped while saving", stale)
        self.accelerator.wait_for_everyone()
        path = resolve_resume(root, self.config.resume_from_checkpoint)
        if path is None:
            return None
        state = load_checkpoint(self.accelerator, path, self.extras())
        self.resumed_from = path
        self.step = self.start_step = int(state["step"])
        self.metrics.truncate(self.step)
        logger.info("resumed from %s at step %d", path, self.step)
        return state

    def log_images(self, tag: str, images: Any) -> None:
        """Images (N, H, W, 3) uint8 to TensorBoard at :attr:`step` (nothing with report_to none)."""
        if self.config.report_to == "tensorboard" and self.accelerator.is_main_process:
            self.accelerator.get_tracker("tensorboard").log_images({tag: images}, step=self.step, dataformats="NHWC")

    # ------------------------------------------------------------------ what a stage provides

    def train_step(self) -> Any:
        """One optimizer step: every micro-batch of it, forward, backward, optimizer steps (not the
        lr schedule). Returns what :meth:`log_step` needs."""
        raise NotImplementedError

    def log_step(self, outcome: Any, seconds: float) -> dict[str, str]:
        """Log optimizer step :attr:`step` (``seconds``: its training time, checkpoints and
        validation left out); returns the progress bar's figures."""
        raise NotImplementedError

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, str]]:
        """What a checkpoint of :attr:`step` holds besides accelerate's state and :meth:`extras`:
        the ``training_state.json`` entries (data position...) and extra text files."""
        raise NotImplementedError

    def validate(self) -> None:
        """Validate the model at :attr:`step` (every process calls it); a no-op when the run has
        nothing to validate on."""
        raise NotImplementedError

    def export(self) -> Any:
        """Write the trained weights for use (main process) and return the stage's result."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the loop

    def checkpoint(self) -> Path:
        """Write the checkpoint of :attr:`step` (collective; atomic, see :mod:`training.checkpoints`)."""
        state, files = self.checkpoint_state()
        path = save_checkpoint(self.accelerator, self.output / "checkpoints", self.step, state,
                               self.config.checkpoints_total_limit, self.extras(), files)
        logger.info("step %d: checkpoint %s", self.step, path)
        return path

    def run(self) -> Any:
        """Train to ``max_train_steps`` from where :meth:`resume` left off, checkpoint, validate,
        export; returns :meth:`export`'s result. Every process of the launch calls it."""
        from tqdm.auto import tqdm

        config, accelerator = self.config, self.accelerator
        if config.report_to != "none":
            accelerator.init_trackers(self.name, config=hparams(config))
        self.begin()
        if self.step == 0 and self.validates_at_start:
            self.validate()
        progress = tqdm(total=config.max_train_steps, initial=self.step, desc=self.name, unit="step",
                        disable=not accelerator.is_local_main_process, dynamic_ncols=True)
        while self.step < config.max_train_steps:
            started = time.perf_counter()
            outcome = self.train_step()
            if not accelerator.sync_gradients:
                raise RuntimeError("internal error: the last micro-batch of an optimizer step did not synchronise")
            self.lr_scheduler.step()
            self.step += 1
            figures = self.log_step(outcome, time.perf_counter() - started)
            if figures:
                progress.set_postfix(figures)
            progress.update(1)
            if config.simulate_kill_at_step == self.step:
                progress.close()
                os._exit(KILL_EXIT_CODE)
            last = self.step == config.max_train_steps
            if self.step % config.checkpointing_steps == 0 or (last and config.save_final_checkpoint):
                self.checkpoint()
            if self.step % config.validation_steps == 0 or last:
                self.validate()
        progress.close()
        accelerator.wait_for_everyone()
        result = self.export()
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return result

    def begin(self) -> None:
        """Called once before the first step, after the trackers start (e.g. a start record)."""
