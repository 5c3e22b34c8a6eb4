"""The diffusers-based AuthFace restore pipeline (used by the CLI, training validation and tests).

Importing this package imports torch; diffusers and transformers load when a pipeline is built.
"""

from .photo import restore_photo
from .restore import AuthFacePipeline, RestoreInterrupted
from .sampling import SAMPLERS, initial_noise, make_generator, make_scheduler, read_schedule

__all__ = [
    "SAMPLERS",
    "AuthFacePipeline",
    "RestoreInterrupted",
    "initial_noise",
    "make_generator",
    "make_scheduler",
    "read_schedule",
    "restore_photo",
]
