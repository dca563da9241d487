"""Functional conformal prediction bands for alarm thresholds (Diquigiovanni et al. 2021, as used
by SAFE and FAIL-Detect), calibrated on successful rollouts only.

From one part of the calibration successes: mean score trajectory ``mu_t`` and modulation ``h_t``
(per-step standard deviation, or a constant). On the other part (n rollouts): nonconformity
``max_t |s_t - mu_t| / h_t`` (or the one-sided ``max_t (s_t - mu_t) / h_t``). The band half-width
``k`` is the ``ceil((n + 1)(1 - alpha))``-th smallest nonconformity (infinite when that rank
exceeds n: the band then never alarms). Alarm at the first step where ``s_t > mu_t + k h_t``.
Trajectories shorter than the band's length are extended by their last value when estimating
``mu`` and ``h``; beyond the band's length its last value is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from salus.errors import InvalidInputError

__all__ = ["FunctionalBand", "fit_functional_bands", "pad_last"]


def pad_last(trajectories: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """Stack 1-D trajectories into ``(N, L)``, extending each by its last value."""
    L = length or max(len(t) for t in trajectories)
    out = np.empty((len(trajectories), L), dtype=np.float64)
    for i, t in enumerate(trajectories):
        t = np.asarray(t, dtype=np.float64)[:L]
        out[i, : len(t)] = t
        out[i, len(t) :] = t[-1]
    return out


@dataclass(frozen=True)
class FunctionalBand:
    """A calibrated upper band ``mu_t + half_width * h_t`` over steps t (0-based)."""

    mu: np.ndarray  # (L,)
    h: np.ndarray  # (L,)
    half_width: float
    alpha: float
    n_fit: int
    n_cal: int
    two_sided: bool = True

    def upper(self, length: int) -> np.ndarray:
        """The alarm threshold for steps ``0 .. length-1`` ``(length,)``; +inf if never alarming."""
        idx = np.minimum(np.arange(length), len(self.mu) - 1)
        if not math.isfinite(self.half_width):
            return np.full(length, np.inf)
        return self.mu[idx] + self.half_width * self.h[idx]

    def alarm_step(self, scores: np.ndarray) -> int:
        """First step where the score is above the band, or -1."""
        scores = np.asarray(scores, dtype=np.float64)
        above = np.flatnonzero(scores > self.upper(len(scores)))
        return int(above[0]) if above.size else -1

    def to_dict(self) -> dict[str, Any]:
        return {
            "mu": [float(v) for v in self.mu],
            "h": [float(v) for v in self.h],
            "half_width": float(self.half_width) if math.isfinite(self.half_width) else "inf",
            "alpha": float(self.alpha),
            "n_fit": int(self.n_fit),
            "n_cal": int(self.n_cal),
            "two_sided": bool(self.two_sided),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FunctionalBand:
        try:
            hw = data["half_width"]
            return cls(
                mu=np.asarray(data["mu"], dtype=np.float64),
                h=np.asarray(data["h"], dtype=np.float64),
                half_width=math.inf if hw == "inf" else float(hw),
                alpha=float(data["alpha"]),
                n_fit=int(data["n_fit"]),
                n_cal=int(data["n_cal"]),
                two_sided=bool(data.get("two_sided", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"malformed conformal band: {exc}") from exc


def fit_functional_bands(
    trajectories: Sequence[np.ndarray],
    alphas: Sequence[float],
    *,
    modulation: str = "std",
    two_sided: bool = True,
    fit_fraction: float = 0.5,
    seed: int = 0,
) -> dict[float, FunctionalBand]:
    """Calibrate one band per alpha from successful rollouts' score trajectories (each ``(T_i,)``).

    The rollouts are shuffled (``seed``) and split ``fit_fraction`` / rest; both parts need at least
    one rollout.
    """
    trajs = [np.asarray(t, dtype=np.float64) for t in trajectories if len(t) > 0]
    if len(trajs) < 2:
        raise InvalidInputError(
            f"functional conformal calibration needs >= 2 successful rollouts, got {len(trajs)}"
        )
    if any(not np.all(np.isfinite(t)) for t in trajs):
        raise InvalidInputError("calibration score trajectories contain NaN or inf")
    order = np.random.default_rng(seed).permutation(len(trajs))
    n_fit = min(max(1, int(round(fit_fraction * len(trajs)))), len(trajs) - 1)
    fit = [trajs[i] for i in order[:n_fit]]
    cal = [trajs[i] for i in order[n_fit:]]
    L = max(len(t) for t in trajs)
    F = pad_last(fit, L)
    mu = F.mean(axis=0)
    if modulation == "std":
        sd = F.std(axis=0)
        floor = max(1e-6, 1e-3 * float(np.abs(F).mean()))
        h = np.maximum(sd, floor)
    elif modulation == "constant":
        h = np.ones(L)
    else:
        raise InvalidInputError(f"modulation must be 'std' or 'constant', got {modulation!r}")
    scores = []
    for t in cal:
        d = (t - mu[: len(t)]) / h[: len(t)]
        scores.append(float(np.max(np.abs(d) if two_sided else d)))
    ranked = np.sort(np.asarray(scores))
    n = len(ranked)
    bands = {}
    for alpha in alphas:
        if not 0.0 < alpha < 1.0:
            raise InvalidInputError(f"alpha must be in (0, 1), got {alpha}")
        rank = math.ceil((n + 1) * (1.0 - alpha))
        half_width = float(ranked[rank - 1]) if rank <= n else math.inf
        bands[float(alpha)] = FunctionalBand(mu, h, half_width, float(alpha), n_fit, n, two_sided)
    return bands
