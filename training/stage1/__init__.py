"""AuthFace Stage I: face-oriented full fine-tuning of the SDXL UNet (paper Sec. 3.1, 4.1).

``python -m training.stage1 --config FILE [--flags]`` trains; see ``training/README.md``. The
pieces: :mod:`.config` (run settings), :mod:`.models` (SDXL parts), :mod:`.text` (captions of any
length to SDXL conditioning), :mod:`.data` (images and their resumable order), :mod:`.loop` (the
run, a :class:`training.trainer.Trainer`), :mod:`.validation`, :mod:`.export`; checkpoints are :mod:`training.checkpoints`.
Importing this package imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Stage1Config
    from .loop import Stage1Result


def train(config: Stage1Config) -> Stage1Result:
    """Run Stage I as ``config`` says (see :func:`training.stage1.loop.train`)."""
    from .loop import train as run

    return run(config)
