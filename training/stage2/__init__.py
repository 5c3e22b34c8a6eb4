"""AuthFace Stage II: the ControlNet with the time-aware latent facial feature loss (paper Sec. 3.2).

``python -m training.prepare_stage2 HQ_DIR OUT_DIR`` caches landmarks; ``python -m
training.stage2 --base DIR --data-dir HQ_DIR --landmarks OUT_DIR --output-dir RUN`` trains;
``python -m training.stage2.export CHECKPOINT OUT`` exports. The pieces: :mod:`.config`,
:mod:`.data` (pairs, deterministic order and degradation), :mod:`.models`, :mod:`.step` (the two
updates), :mod:`.loop` (the run, a :class:`training.trainer.Trainer`), :mod:`.validation`,
:mod:`.metrics`, :mod:`.export`; checkpoints are :mod:`training.checkpoints`. Importing this package
imports nothing heavy.
"""
