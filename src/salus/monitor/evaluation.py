"""Fill :class:`~salus.monitor.report.ReportInputs` from checkpoints and a dataset.

This runs the same pipeline as ``salus evaluate`` (``salus.predictor.evaluate``): the predictors'
split, every method's per-step scores (trained predictors, online and embedding baselines, each
signal alone), one functional conformal band per method calibrated on the split's calibration
successes, and the protocol metrics. It keeps what the aggregate JSON drops: per-episode score
trajectories and the bands, which the figures need. The results table is
``evaluate_methods``' own output, so the report and ``salus evaluate`` print the same numbers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import CheckpointError, InvalidInputError, InvalidNameError
from salus.monitor.report import Band, EpisodeScores, ReportInputs

__all__ = ["checkpoint_dirs", "build_report_inputs", "table_rows", "FAMILY_KINDS"]

# evaluate's method families -> the report's method kinds
FAMILY_KINDS = {
    "salus": "predictor",
    "safe": "predictor",
    "baseline": "baseline",
    "embedding": "baseline",
    "signal": "signal",
}


def checkpoint_dirs(model_dir: str | Path) -> list[Path]:
    """A checkpoint directory, or the checkpoints inside a directory (``salus train --model all``)."""
    from salus.predictor.checkpoint import is_checkpoint_dir

    d = Path(model_dir)
    if is_checkpoint_dir(d):
        return [d]
    dirs = sorted(p for p in d.iterdir() if p.is_dir() and is_checkpoint_dir(p)) if d.is_dir() else []
    if not dirs:
        raise CheckpointError(f"{d} holds no predictor checkpoint (predictor.json + model.safetensors)")
    return dirs


def table_rows(report: dict[str, Any], alpha: float) -> list[dict[str, Any]]:
    """One row per method and test split from ``evaluate_methods``' result, alarms at ``alpha``."""
    rows = []
    for entry in report["methods"]:
        for split in ("seen", "unseen"):
            res = entry.get(split)
            if not res or not res.get("n"):
                continue
            alarm = res["alarms"].get(str(float(alpha)), {})
            rows.append(
                {
                    "method": entry["name"],
                    "family": entry["family"],
                    "split": split,
                    "episodes": res["n"],
                    "failed": res["n_failed"],
                    "ROC-AUC@T": res["auroc_T"],
                    "AP@T": res["ap_T"],
                    "ROC-AUC all": res["auroc_all"],
                    "TPR": alarm.get("tpr", math.nan),
                    "FPR": alarm.get("fpr", math.nan),
                    "bal. acc.": alarm.get("balanced_accuracy", math.nan),
                    "detect (s)": alarm.get("detection_s", math.nan),
                    "lead (s)": alarm.get("lead_s", math.nan),
                }
            )
    return rows


def build_report_inputs(
    model_dir: str | Path,
    data: str | Path,
    *,
    alpha: float | None = None,
    primary: str | None = None,
    time: int | None = None,
    include: Sequence[str] = ("salus", "safe", "baseline", "embedding", "signal"),
    progress: Callable[[str], None] | None = None,
) -> tuple[ReportInputs, dict[str, Any]]:
    """Everything the report draws, and the evaluation's JSON result (the same structure as
    ``salus.predictor.run_evaluation``, so ``format_markdown`` prints its table).

    ``alpha``: the conformal level for alarms (default: the first checkpoint's). ``primary``: the
    method drawn in the timelines (default: the best seen ROC-AUC among the trained predictors).
    """
    from salus.data import SalusDataset
    from salus.predictor import ConformalConfig, TrainedPredictor, episodes_from_dataset
    from salus.predictor.config import DEFAULT_ALPHAS
    from salus.predictor.conformal import fit_functional_bands
    from salus.predictor.evaluate import (
        MethodScores,
        baseline_methods,
        embedding_methods,
        evaluate_methods,
        predictor_methods,
        signal_methods,
    )
    from salus.predictor.metrics import protocol_times, running_max
    from salus.predictor.training import check_split_matches

    def say(msg: str) -> None:
        if progress is not None:
            progress(msg)

    say("loading checkpoints and dataset")
    dirs = checkpoint_dirs(model_dir)
    predictors = [TrainedPredictor.load(d) for d in dirs]
    episodes = episodes_from_dataset(SalusDataset(data), embeddings=True)
    splits = [check_split_matches(p, episodes) for p in predictors]
    if any(s != splits[0] for s in splits[1:]):
        raise InvalidInputError(
            "the checkpoints were trained on different splits; train them together (--model all)"
        )
    split = splits[0]
    a = float(alpha) if alpha is not None else predictors[0].alpha
    alphas = tuple(sorted({*DEFAULT_ALPHAS, a}))
    tc = predictors[0].meta.get("train_config", {})
    c = dict(tc.get("conformal", {}))
    c.update({"alphas": alphas, "alpha": a})
    conf = ConformalConfig.from_dict(c)
    seed = int(tc.get("seed", 0))
    if time is not None and time < 1:
        raise InvalidInputError(f"time must be >= 1 step, got {time}")
    times = {t: time for t in episodes.tasks} if time else protocol_times(episodes.episodes)
    idx = sorted(set(split.calib) | set(split.test_seen) | set(split.test_unseen))

    say("scoring every method")
    methods: list[MethodScores] = [
        m for m in predictor_methods(predictors, episodes, idx) if m.family in include
    ]
    if "baseline" in include:
        methods += baseline_methods(episodes, split, idx)
    if "embedding" in include and episodes.has_embedding:
        with contextlib.suppress(ImportError):  # an optional scorer's package is missing
            methods += embedding_methods(episodes, split, idx, seed=seed)
    if "signal" in include:
        methods += signal_methods(episodes, split, idx, times)
    if not methods:
        raise InvalidInputError(f"no method to report; include must name some of {sorted(FAMILY_KINDS)}")

    say("metrics and conformal bands")
    report = evaluate_methods(episodes, split, methods, conformal=conf, alphas=alphas, times=times, seed=seed)
    report["notes"] = (
        [] if episodes.has_embedding else ["no obs_embedding in the dataset: embedding baselines skipped"]
    )
    report["predictors"] = [
        {
            "name": p.name,
            "best_epoch": p.meta.get("training", {}).get("best_epoch"),
            "command": p.meta.get("command"),
        }
        for p in predictors
    ]
    calib = [i for i in split.calib if episodes[i].success]
    bands: dict[str, Band] = {}
    for m in methods:
        fitted = fit_functional_bands(
            [running_max(m.scores[i]) for i in calib],
            [a],
            modulation=conf.modulation,
            two_sided=conf.two_sided,
            fit_fraction=conf.fit_fraction,
            seed=seed,
        )
        bands[m.name] = Band.from_functional(fitted[a])

    kinds = {m.name: FAMILY_KINDS.get(m.family, "baseline") for m in methods}
    if primary is None:
        ranked = [e["name"] for e in report["methods"] if kinds.get(e["name"]) == "predictor"]
        primary = ranked[0] if ranked else report["methods"][0]["name"]
    elif primary not in kinds:
        raise InvalidNameError("method", primary, kinds)

    test = [("seen", i) for i in split.test_seen] + [("unseen", i) for i in split.test_unseen]
    if not test:
        raise InvalidInputError("the split has no test episodes to report on")
    eps = []
    for group, i in test:
        ep = episodes[i]
        eps.append(
            EpisodeScores(
                index=i,
                split=group,
                task=ep.task,
                success=ep.success,
                failure_step=ep.failure_step,
                scores={m.name: np.asarray(m.scores[i], dtype=np.float64) for m in methods},
                signals=ep.signals,
                signal_valid=ep.valid,
            )
        )
    inputs = ReportInputs(
        episodes=eps,
        method_kinds=kinds,
        primary_method=primary,
        bands=bands,
        alpha=a,
        table=table_rows(report, a),
        signal_names=tuple(episodes.signal_names),
        control_hz=float(episodes.control_hz),
        eval_time={k: int(v) for k, v in times.items()},
        meta={
            "checkpoints": ", ".join(str(d) for d in dirs),
            "dataset": f"{data} ({len(episodes)} episodes, fingerprint {episodes.fingerprint()})",
            "split (episodes)": ", ".join(f"{k} {len(v)}" for k, v in split.to_dict().items()),
            "unseen tasks": ", ".join(sorted({episodes[i].task for i in split.test_unseen})) or "none",
        },
    )
    return inputs, report
