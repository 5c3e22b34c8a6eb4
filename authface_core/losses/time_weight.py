"""Time weighting of the facial loss: the logit-normal density of AuthFace (paper eq. 3).

``t`` is the normalised diffusion time ``timestep / num_train_timesteps`` in [0, 1]
(t = 0 is the clean latent, t -> 1 pure noise). The paper writes ``logit(t) = log 1/(t(1-t))``;
that is a typo for ``logit(t) = log(t / (1 - t))``, the definition under which eq. 3 is the
logit-normal density of Esser et al. 2024 (SD3), the one the paper cites (docs/method.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

TimeWeightingKind = Literal["logit_normal", "constant", "none"]
TIME_WEIGHTING_KINDS: tuple[str, ...] = ("logit_normal", "constant", "none")

# Clamp for t: keeps log(t) and log(1 - t) finite at t = 0 (timestep 0) and t = 1. 1e-6 is
# representable next to 1 in float32 (its epsilon is 1.2e-7), and the density mass cut off
# outside [eps, 1 - eps] is Phi((logit(1e-6) - m) / s), about 1e-40 for m = -0.5, s = 1.
DEFAULT_EPS = 1e-6


def _check_t(t: torch.Tensor) -> None:
    if not torch.is_floating_point(t):
        raise ValueError(
            f"t must be a floating-point tensor of normalised times in [0, 1], got dtype {t.dtype}; "
            "pass timesteps_to_t(timesteps)"
        )
    if t.numel() and (bool((t < 0).any()) or bool((t > 1).any())):
        raise ValueError(
            f"t must lie in [0, 1] (timestep / num_train_timesteps); got values in "
            f"[{float(t.min())}, {float(t.max())}]"
        )


def logit_normal_weight(
    t: torch.Tensor, m: float = -0.5, s: float = 1.0, eps: float = DEFAULT_EPS
) -> torch.Tensor:
    """Logit-normal density ``w(t) = 1/(s sqrt(2 pi)) / (t (1 - t)) exp(-(logit t - m)^2 / (2 s^2))``.

    Args:
        t: normalised time, any shape, values in [0, 1] (``timestep / 1000``). Integer tensors
            are rejected: they are almost always raw timesteps.
        m: location of the normal in logit space (paper: -0.5; the density's median in t
            is ``sigmoid(m)``).
        s: scale in logit space, > 0 (paper: 1.0).
        eps: ``t`` is clamped to ``[eps, 1 - eps]`` before evaluation, so t = 0 and t = 1
            give the (tiny, finite) density at the clamp instead of 0 * inf = nan.

    Returns:
        The weights, same shape and floating dtype as ``t`` (computed in at least float32);
        non-negative, integrating to 1 over (0, 1), so their mean under uniformly sampled t
        is 1 (the ``constant`` weighting's value).

    Raises:
        ValueError: ``t`` is not floating point or has values outside [0, 1], or ``s <= 0``,
            or ``eps`` is not in (0, 0.5).
    """
    _check_t(t)
    if s <= 0:
        raise ValueError(f"s (the logit-space scale) must be > 0, got {s}")
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    # Half precision cannot hold 1 - eps (it rounds to 1, and log(0) = -inf): work in float32.
    tc = t.to(torch.promote_types(t.dtype, torch.float32)).clamp(eps, 1.0 - eps)
    log_t = torch.log(tc)
    log_1mt = torch.log1p(-tc)
    z = (log_t - log_1mt - m) / s
    # Log space: the large 1 / (t (1 - t)) and the vanishing exponential are combined before
    # exponentiating, so they never meet as inf * 0 near the ends.
    log_w = -math.log(s * math.sqrt(2.0 * math.pi)) - log_t - log_1mt - 0.5 * z * z
    return torch.exp(log_w).to(t.dtype)


def timesteps_to_t(timesteps: torch.Tensor, num_train_timesteps: int = 1000) -> torch.Tensor:
    """Normalised time ``timesteps / num_train_timesteps`` as float32 (float64 stays float64).

    Raises:
        ValueError: ``num_train_timesteps <= 0`` or a timestep is outside
            ``[0, num_train_timesteps]``.
    """
    if num_train_timesteps <= 0:
        raise ValueError(f"num_train_timesteps must be > 0, got {num_train_timesteps}")
    dtype = torch.float64 if timesteps.dtype == torch.float64 else torch.float32
    t = timesteps.to(dtype) / num_train_timesteps
    if t.numel() and (bool((t < 0).any()) or bool((t > 1).any())):
        raise ValueError(
            f"timesteps must lie in [0, {num_train_timesteps}], got values in "
            f"[{float(timesteps.min())}, {float(timesteps.max())}]"
        )
    return t


@dataclass(frozen=True)
class TimeWeighting:
    """Which per-sample weight multiplies the facial loss.

    ``kind``:
      - ``"logit_normal"``: ``logit_normal_weight(t, m, s)`` (paper eq. 3, the method);
      - ``"constant"``: 1 for every t (paper ablation (c)); 1 is the mean of the logit-normal
        weight under uniform t, so both variants put the same average weight on the loss;
      - ``"none"``: no facial loss (paper ablation (b)); ``enabled`` is False and the weight 0.
    """

    kind: TimeWeightingKind = "logit_normal"
    m: float = -0.5
    s: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in TIME_WEIGHTING_KINDS:
            raise ValueError(
                f"unknown time weighting {self.kind!r}; choose one of {', '.join(TIME_WEIGHTING_KINDS)}"
            )
        if self.s <= 0:
            raise ValueError(f"s (the logit-space scale) must be > 0, got {self.s}")

    @property
    def enabled(self) -> bool:
        """False for ``"none"``: the facial loss is skipped entirely."""
        return self.kind != "none"

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample weights for normalised times ``t`` (shape (B,), values in [0, 1]);
        same shape and floating dtype as ``t``. Raises ValueError as ``logit_normal_weight``."""
        if self.kind == "logit_normal":
            return logit_normal_weight(t, self.m, self.s)
        _check_t(t)
        fill = 1.0 if self.kind == "constant" else 0.0
        return torch.full_like(t, fill)
