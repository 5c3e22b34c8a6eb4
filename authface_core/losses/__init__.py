"""Stage II losses: the time-aware latent facial feature loss and its discriminators."""

from authface_core.losses.discriminator import ComponentDiscriminator
from authface_core.losses.facial import (
    FacialComponentLoss,
    crop_components,
    discriminator_loss,
    gram_matrix,
    predict_x0,
)
from authface_core.losses.time_weight import TimeWeighting, logit_normal_weight, timesteps_to_t

__all__ = [
    "ComponentDiscriminator",
    "FacialComponentLoss",
    "TimeWeighting",
    "crop_components",
    "discriminator_loss",
    "gram_matrix",
    "logit_normal_weight",
    "predict_x0",
    "timesteps_to_t",
]
