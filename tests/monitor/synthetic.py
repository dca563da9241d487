"""A real evaluation (``salus.predictor.evaluate.evaluate_methods``, the protocol itself) of synthetic
episodes, for the report tests: a score that rises before the failure ("ours"), elapsed time, a
label-peeking score, the recorded baselines and each signal alone."""

from __future__ import annotations

import numpy as np

from salus.predictor import SplitConfig
from salus.predictor.episodes import split_episodes, synthetic_episodes
from salus.predictor.evaluate import (
    Evaluation,
    MethodScores,
    baseline_methods,
    evaluate_methods,
    signal_methods,
)
from salus.predictor.protocol import ProtocolConfig, safe_times


def synthetic_evaluation(n: int = 260, seed: int = 0, n_boot: int = 100) -> Evaluation:
    episodes = synthetic_episodes(
        n, seed=seed, success_len=(60, 100), failure_len=(60, 110), tasks=("pick_place", "push", "stack")
    )
    split = split_episodes(
        episodes, SplitConfig(holdout_tasks=("stack",), calib_fraction=0.3, test_fraction=0.3)
    )
    idx = sorted(set(split.val) | set(split.calib) | set(split.test_seen) | set(split.test_unseen))
    rng = np.random.default_rng(seed)
    times = safe_times(episodes.episodes)

    def ours(i: int) -> np.ndarray:
        s = episodes[i].signals
        return np.nan_to_num(s[:, 0] + s[:, 1] - s[:, 2]) / 3.0

    methods = [
        MethodScores("ours", "salus", {i: ours(i) for i in idx}),
        MethodScores("time", "baseline", {i: np.arange(episodes[i].length, dtype=float) for i in idx}),
        MethodScores(
            "peek",
            "oracle",
            {i: float(episodes[i].failed) + 0.01 * rng.standard_normal(episodes[i].length) for i in idx},
        ),
    ]
    methods += baseline_methods(episodes, split, idx)
    methods += signal_methods(episodes, split, idx, times)
    cfg = ProtocolConfig(control_hz=episodes.control_hz, n_boot=n_boot)
    return evaluate_methods(episodes, split, methods, config=cfg, times=times)
