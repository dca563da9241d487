"""The monitor's curves over a stored episode, computed offline (the replay draws them)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from salus.predictor.discovery import choose_checkpoint

__all__ = ["offline_risk"]


def offline_risk(
    model_dir: str | Path, steps: Mapping[str, np.ndarray], alpha: float | None = None
) -> dict[str, Any]:
    """The monitor's curves over a stored episode (its step keys: ``signals``, ``signal_valid``,
    ``obs_embedding`` (SAFE models trained on it: ``hidden_mean``), and for ``features`` models
    ``baselines``/``baseline_valid``, ``state``, ``hidden``): ``probability`` (T, P), ``horizons_s``, ``score`` (T,) running max, ``threshold``
    (T,), ``alarm_step``."""
    from salus.predictor.checkpoint import TrainedPredictor
    from salus.predictor.episodes import Episode, with_statistics

    pred = TrainedPredictor.load(choose_checkpoint(model_dir))

    def get(key: str) -> np.ndarray | None:
        v = steps.get(key)
        return None if v is None else np.asarray(v, dtype=np.float32)

    base = get("baselines")
    if base is not None and steps.get("baseline_valid") is not None:
        base = np.where(np.asarray(steps["baseline_valid"], dtype=bool), base, np.nan).astype(np.float32)
    ep = Episode(
        signals=np.asarray(steps["signals"]),
        valid=np.asarray(steps["signal_valid"]),
        success=True,
        failure_step=-1,
        baselines=base,
        embedding=get("obs_embedding"),
        state=get("state"),
        hidden=get("hidden"),
        hidden_mean=get("hidden_mean"),
    )
    # the signal columns the checkpoint's training refitted (split_statistics), as it saw them
    ep = with_statistics(ep, pred.meta.get("extractor_statistics"), pred.meta.get("signal_names") or ())
    probs = pred.episode_probs([ep])[0]
    score = pred.score_of(probs)  # the score column plus the checkpoint's ramp, as episode_scores
    run = np.maximum.accumulate(np.where(np.isfinite(score), score, -np.inf))
    band = pred.band(alpha)
    upper = band.upper(len(run))
    above = np.flatnonzero(run > upper)
    hz = float(pred.meta["control_hz"])
    horizons = [int(h) for h in pred.meta["horizons"]]
    horizons_s = [h / hz for h in horizons]
    if pred.meta.get("prob_columns"):  # outcome-hazard models: "by the episode's end" first
        horizons_s = [math.inf, *horizons_s]
    horizons_s = horizons_s[: probs.shape[1]] if probs.shape[1] > 1 else [math.nan]
    return {
        "probability": probs,
        "horizons_s": horizons_s,
        "score": run,
        "threshold": upper,
        "alarm_step": int(above[0]) if above.size else -1,
        "alpha": float(band.alpha),
        "model": pred.name,
    }
