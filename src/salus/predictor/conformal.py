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

__all__ = [
    "FunctionalBand",
    "fit_functional_bands",
    "pad_last",
    "min_calibration_scores",
    "min_calibration_successes",
    "band_status",
]


def _rank(n: int, alpha: float) -> int:
    """The rank of the band's half-width among n sorted calibration scores (the one rule of
    :func:`fit_functional_bands` and ``protocol.constant_band``)."""
    return math.ceil((n + 1) * (1.0 - alpha))


def min_calibration_scores(alpha: float) -> int:
    """The fewest calibration scores ``n`` for which the band at ``alpha`` is finite (can fire):
    the smallest n with ``ceil((n + 1)(1 - alpha)) <= n``, i.e. ``n >= 1/alpha - 1``
    (alpha 0.2: 4, 0.1: 9, 0.05: 19)."""
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha}")
    n = max(1, math.floor(1.0 / alpha - 1.0) - 1)  # start just below the bound (float rounding)
    while _rank(n, alpha) > n:
        n += 1
    return n


def _n_fit(total: int, fit_fraction: float) -> int:
    """How many of ``total`` calibration rollouts :func:`fit_functional_bands` uses for mu and h."""
    return min(max(1, int(round(fit_fraction * total))), total - 1)


def min_calibration_successes(alpha: float, fit_fraction: float | None) -> int:
    """The fewest successful calibration episodes whose band at ``alpha`` can fire: for the
    functional band, ``fit_fraction`` of them fit mu and h and the rest must be at least
    :func:`min_calibration_scores`; ``fit_fraction=None`` for the constant threshold (every
    success is a calibration score)."""
    need = min_calibration_scores(alpha)
    if fit_fraction is None:
        return need
    total = need + 1
    while total - _n_fit(total, fit_fraction) < need:
        total += 1
    return total


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

    @property
    def can_fire(self) -> bool:
        """False when the band is infinite (too few calibration scores for its alpha): it never alarms."""
        return math.isfinite(self.half_width)

    @property
    def n_cal_needed(self) -> int:
        """Calibration scores a finite band at this alpha needs (:func:`min_calibration_scores`)."""
        return min_calibration_scores(self.alpha)

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
        """The band :meth:`to_dict` wrote, checked: ``mu`` and ``h`` non-empty lists of finite
        numbers of one length (``h`` >= 0), ``half_width`` finite or ``"inf"`` (the infinite band
        of a calibration too small for its alpha, and only then), ``alpha`` in (0, 1), counts >= 0.
        ``InvalidInputError`` naming the field otherwise."""
        if not isinstance(data, dict):
            raise InvalidInputError(
                f"malformed conformal band: an object expected, got {type(data).__name__}"
            )
        missing = [k for k in ("mu", "h", "half_width", "alpha", "n_fit", "n_cal") if k not in data]
        if missing:
            raise InvalidInputError(f"malformed conformal band: lacks {missing}")
        vec = {}
        for key in ("mu", "h"):
            value = data[key]
            if not isinstance(value, list) or not all(
                v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in value
            ):
                raise InvalidInputError(f"conformal band {key} must be a list of numbers, got {value!r:.80}")
            # JSON null is how a NaN or inf saved with non_finite="null" reads back
            arr = np.asarray([math.nan if v is None else v for v in value], dtype=np.float64)
            if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all():
                raise InvalidInputError(
                    f"conformal band {key} must be a non-empty list of finite numbers "
                    f"({arr.size} values, {int((~np.isfinite(arr)).sum())} NaN or inf)"
                )
            vec[key] = arr
        if vec["mu"].shape != vec["h"].shape:
            raise InvalidInputError(f"conformal band mu has {vec['mu'].size} steps but h has {vec['h'].size}")
        if (vec["h"] < 0).any():
            raise InvalidInputError("conformal band h must be >= 0 at every step")
        counts = {}
        for key in ("n_fit", "n_cal"):
            v = data[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise InvalidInputError(f"conformal band {key} must be an int >= 0, got {v!r}")
            counts[key] = v
        a = data["alpha"]
        if not isinstance(a, int | float) or isinstance(a, bool) or not 0.0 < float(a) < 1.0:
            raise InvalidInputError(f"conformal band alpha must be in (0, 1), got {a!r}")
        hw = data["half_width"]
        if hw == "inf":
            half_width = math.inf
        elif isinstance(hw, int | float) and not isinstance(hw, bool) and math.isfinite(hw):
            half_width = float(hw)
        else:
            raise InvalidInputError(f'conformal band half_width must be a finite number or "inf", got {hw!r}')
        finite_expected = _rank(counts["n_cal"], float(a)) <= counts["n_cal"]
        if math.isfinite(half_width) != finite_expected:
            raise InvalidInputError(
                f"conformal band half_width {hw!r} contradicts its calibration: at alpha {float(a):g} "
                f"{counts['n_cal']} calibration scores give "
                + ("a finite band" if finite_expected else 'an infinite band ("inf")')
            )
        two_sided = data.get("two_sided", True)
        if not isinstance(two_sided, bool):
            raise InvalidInputError(f"conformal band two_sided must be true or false, got {two_sided!r}")
        return cls(
            mu=vec["mu"],
            h=vec["h"],
            half_width=half_width,
            alpha=float(a),
            n_fit=counts["n_fit"],
            n_cal=counts["n_cal"],
            two_sided=two_sided,
        )


def band_status(band: FunctionalBand, fit_fraction: float | None = None) -> dict[str, Any]:
    """Whether ``band`` can fire and what its calibration had and needs (JSON-able):
    ``alpha``, ``can_fire``, ``n_successes`` (calibration successes: ``n_fit + n_cal``), ``n_cal``
    (of them, the nonconformity scores), ``n_cal_needed`` (:func:`min_calibration_scores`),
    ``successes_needed`` (:func:`min_calibration_successes` with ``fit_fraction``; for a band with
    ``n_fit == 0``, the constant threshold, every success is a score), and ``text``, one line."""
    needed = min_calibration_scores(band.alpha)
    if band.n_fit == 0:
        total_needed = needed
    else:
        frac = band.n_fit / max(1, band.n_fit + band.n_cal) if fit_fraction is None else fit_fraction
        total_needed = min_calibration_successes(band.alpha, frac)
    n_succ = band.n_fit + band.n_cal
    scored = f", {band.n_cal} scored" if band.n_fit else ""
    if band.can_fire:
        text = (
            f"alpha {band.alpha:g}: can fire ({n_succ} calibration successes{scored}; "
            f">= {total_needed} needed)"
        )
    else:
        text = (
            f"alpha {band.alpha:g}: cannot fire, the band is infinite ({n_succ} calibration "
            f"successes{scored}; it needs >= {total_needed}"
            + (f", {needed} of them scored)" if band.n_fit else ")")
        )
    return {
        "alpha": band.alpha,
        "can_fire": band.can_fire,
        "n_successes": n_succ,
        "n_cal": band.n_cal,
        "n_cal_needed": needed,
        "successes_needed": total_needed,
        "text": text,
    }


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
    n_fit = _n_fit(len(trajs), fit_fraction)
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
        rank = _rank(n, alpha)
        half_width = float(ranked[rank - 1]) if rank <= n else math.inf
        bands[float(alpha)] = FunctionalBand(mu, h, half_width, float(alpha), n_fit, n, two_sided)
    return bands
