"""Synthetic evaluation results for report tests: a score that rises before the failure, noise, and
12 signals, so every figure has something real to draw."""

from __future__ import annotations

import numpy as np

from salus.monitor.report import Band, EpisodeScores, ReportInputs

SIGNALS = tuple(f"sig{j}" for j in range(12))


def synthetic_inputs(n_per_split: int = 24, seed: int = 0) -> ReportInputs:
    rng = np.random.default_rng(seed)
    episodes = []
    for split in ("seen", "unseen"):
        for i in range(n_per_split):
            success = i % 2 == 0
            length = int(rng.integers(60, 100))
            fstep = -1 if success else int(rng.integers(35, length))
            t = np.arange(length)
            ramp = np.zeros(length) if success else 1.0 / (1.0 + np.exp(-(t - fstep + 12) / 3.0))
            pred = np.clip(0.1 + 0.7 * ramp + 0.08 * rng.standard_normal(length), 0, 1)
            base = 0.3 * ramp + 0.2 * rng.standard_normal(length)
            signals = rng.standard_normal((length, 12)) + (0 if success else 0.8) * np.arange(12) / 12
            valid = np.ones_like(signals, dtype=bool)
            valid[:2, 3] = False
            scores = {"salus_mlp": pred, "stac_single": base, "time": t.astype(float)}
            scores.update({name: signals[:, j] for j, name in enumerate(SIGNALS)})
            episodes.append(
                EpisodeScores(
                    index=len(episodes),
                    split=split,
                    task="pick_place" if split == "seen" else "push",
                    success=success,
                    failure_step=fstep,
                    scores=scores,
                    signals=signals,
                    signal_valid=valid,
                )
            )
    kinds = {"salus_mlp": "predictor", "stac_single": "baseline", "time": "baseline"}
    kinds.update({n: "signal" for n in SIGNALS})
    center = np.full(100, 0.1)
    bands = {
        "salus_mlp": Band(center=center, upper=center + 0.3, alpha=0.1),
        "stac_single": Band(center=np.zeros(100), upper=np.full(100, 0.55), alpha=0.1),
    }
    table = [
        {"method": m, "split": s, "roc_auc": float(rng.uniform(0.5, 1)), "tpr": 0.8, "fpr": 0.1}
        for s in ("seen", "unseen")
        for m in ("salus_mlp", "stac_single", "time")
    ]
    return ReportInputs(
        episodes=episodes,
        method_kinds=kinds,
        primary_method="salus_mlp",
        bands=bands,
        alpha=0.1,
        table=table,
        signal_names=SIGNALS,
        meta={"model": "synthetic", "dataset": "synthetic"},
    )
