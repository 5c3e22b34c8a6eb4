"""Logit-normal time weight of the facial loss (paper eq. 3, docs/method.md)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, optimize

from authface_core.losses.time_weight import TimeWeighting, logit_normal_weight, timesteps_to_t

M, S = -0.5, 1.0


def _w(t: float, m: float = M, s: float = S) -> float:
    return float(logit_normal_weight(torch.tensor([t], dtype=torch.float64), m, s)[0])


@pytest.mark.parametrize(("m", "s"), [(-0.5, 1.0), (0.0, 1.0), (0.5, 1.0), (-0.5, 0.5)])
def test_integrates_to_one(m: float, s: float) -> None:
    # Adaptive quadrature in float64, split at the median so both tails are resolved. The
    # clamp at 1e-6 cuts off a mass of Phi((logit(1e-6) - m)/s) < 1e-20; quad's (conservative)
    # error estimates are asserted below 1e-8 together, so |integral - 1| < 1e-7 leaves a
    # tenfold margin for them and nothing else.
    median = 1.0 / (1.0 + math.exp(-m))
    lo, err_lo = integrate.quad(_w, 0.0, median, args=(m, s), epsabs=1e-12, limit=200)
    hi, err_hi = integrate.quad(_w, median, 1.0, args=(m, s), epsabs=1e-12, limit=200)
    assert err_lo + err_hi < 1e-8
    assert abs(lo + hi - 1.0) < 1e-7
    # The median of a logit-normal is sigmoid(m): half the mass on each side.
    assert abs(lo - 0.5) < 1e-7


def test_median_is_0377_for_paper_parameters() -> None:
    median = 1.0 / (1.0 + math.exp(0.5))  # sigmoid(m) = 0.37754, quoted as 0.377
    assert abs(median - 0.377) < 1e-3
    mass, _ = integrate.quad(_w, 0.0, median, epsabs=1e-12)
    assert abs(mass - 0.5) < 1e-7
    # 0.377 itself is just below the median: w there is ~1.6, so the mass is ~0.5 - 0.0009.
    mass_quoted, _ = integrate.quad(_w, 0.0, 0.377, epsabs=1e-12)
    assert 0.498 < mass_quoted < 0.5


def test_mode_matches_analytic_stationary_point() -> None:
    # d/dt log w = -1/t + 1/(1-t) - (logit t - m)/(s^2 t (1-t)) = 0; times t(1-t):
    # 2t - 1 = (logit(t) - m) / s^2. For s^2 < 2 the difference of the two sides is strictly
    # monotone (derivative 1/(s^2 t(1-t)) - 2 >= 4/s^2 - 2 > 0), so the root is the unique mode.
    def stationary(t: float) -> float:
        return (math.log(t / (1 - t)) - M) / S**2 - (2 * t - 1)

    mode = optimize.brentq(stationary, 1e-6, 1 - 1e-6, xtol=1e-12)
    grid = torch.linspace(1e-5, 1 - 1e-5, 100_000, dtype=torch.float64)
    argmax = float(grid[torch.argmax(logit_normal_weight(grid, M, S))])
    assert abs(argmax - mode) < 2e-5  # grid spacing 1e-5
    assert 0.27 < mode < 0.29  # "about 0.28" (docs/method.md)
    # Not at the median: the appendix's "peaks at t = 0.37" is the median, not the peak.
    assert mode < 1.0 / (1.0 + math.exp(0.5)) - 0.05


def test_finite_and_vanishing_at_the_ends() -> None:
    t = torch.tensor([0.0, 1e-9, 0.001, 0.999, 1.0], dtype=torch.float32)
    w = logit_normal_weight(t)
    assert torch.isfinite(w).all()
    assert (w >= 0).all()
    assert float(w.max()) < 1e-3  # the density tends to 0 at both ends
    half = logit_normal_weight(t.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()


def test_matches_closed_form_inside() -> None:
    t = torch.tensor([0.05, 0.28, 0.5, 0.9], dtype=torch.float64)
    logit = torch.log(t / (1 - t))
    expected = torch.exp(-((logit - M) ** 2) / (2 * S**2)) / (S * math.sqrt(2 * math.pi) * t * (1 - t))
    torch.testing.assert_close(logit_normal_weight(t), expected, rtol=1e-12, atol=0)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="floating-point"):
        logit_normal_weight(torch.tensor([500]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        logit_normal_weight(torch.tensor([500.0]))
    with pytest.raises(ValueError, match="s "):
        logit_normal_weight(torch.tensor([0.5]), s=0.0)
    with pytest.raises(ValueError, match="unknown time weighting"):
        TimeWeighting("cosine")  # type: ignore[arg-type]


def test_timesteps_to_t() -> None:
    t = timesteps_to_t(torch.tensor([0, 281, 999]))
    assert t.dtype == torch.float32
    torch.testing.assert_close(t, torch.tensor([0.0, 0.281, 0.999]))
    with pytest.raises(ValueError, match="timesteps must lie"):
        timesteps_to_t(torch.tensor([1001]))


def test_weighting_switches() -> None:
    t = torch.tensor([0.05, 0.3, 0.9])
    logit = TimeWeighting("logit_normal")
    const = TimeWeighting("constant")
    none = TimeWeighting("none")
    torch.testing.assert_close(logit(t), logit_normal_weight(t))
    assert not torch.allclose(logit(t), torch.ones(3))
    torch.testing.assert_close(const(t), torch.ones(3))
    torch.testing.assert_close(none(t), torch.zeros(3))
    assert logit.enabled and const.enabled and not none.enabled
    # Other m, s move the weight: m = 0.5 favours late (noisier) times over m = -0.5.
    late = TimeWeighting("logit_normal", m=0.5)
    assert float(late(torch.tensor([0.8]))) > float(logit(torch.tensor([0.8])))
