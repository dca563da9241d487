"""Every method side by side under the protocol (``salus.predictor.protocol``), on the same episodes.

Methods: trained predictors (ours, SAFE's and the privileged oracle), each online baseline score
recorded in the dataset, each embedding baseline (fitted on successful *training* episodes'
observation embeddings), and each of the 12 signals alone (z-scored on training steps, invalid steps
at the training mean, sign chosen by ROC-AUC at T on *training* episodes). Every method's thresholds
are calibrated on the same ``calib`` successes; metrics on ``test_seen`` and ``test_unseen``
(held-out tasks). Our predictor in the headline is the one with the best validation ROC-AUC at T
(seen ``val`` episodes, never test); the comparators are fixed in advance (:data:`COMPARATORS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salus.errors import InvalidInputError

from .checkpoint import TrainedPredictor
from .config import DEFAULT_ALPHAS
from .conformal import FunctionalBand
from .episodes import Episode, EpisodeSet, EpisodeSplit, split_episodes
from .protocol import (
    ProtocolConfig,
    at_risk_scores,
    bootstrap_auroc,
    ci95,
    fit_bands,
    method_metrics,
    roc_auc,
    running_max,
    safe_times,
    score_at,
)

__all__ = [
    "COMPARATORS",
    "MethodScores",
    "Evaluation",
    "evaluate_methods",
    "run_evaluation",
    "evaluate_detailed",
    "with_fresh_test",
    "aggregate_seeds",
    "baseline_methods",
    "embedding_methods",
    "predictor_methods",
    "signal_methods",
]

# Comparators of the headline, fixed before any result (issue: "beats each of ..."): every
# published detector we implement and every single signal ("signal:*").
COMPARATORS: tuple[str, ...] = (
    "safe-mlp",
    "safe-lstm",
    "embedding:knn_cosine",
    "embedding:knn_euclidean",
    "embedding:mahalanobis",
    "baseline:stac",
    "baseline:stac_single",
    "baseline:fiper_chunk_entropy",
    "baseline:action_total_variance",
    "signal:*",
)
# The two metrics the goal is stated on: SAFE-comparable ROC-AUC and at-risk ROC-AUC at 2 s.
HEADLINE_METRICS: tuple[str, ...] = ("safe", "at_risk_2s")


@dataclass
class MethodScores:
    """Per-step scores ``(T_i,)`` of one method for the episodes it is evaluated on (index -> array)."""

    name: str
    family: str
    scores: dict[int, np.ndarray]
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _finite_fill(x: np.ndarray, fill: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(x), x, fill)


def signal_methods(
    episodes: EpisodeSet, split: EpisodeSplit, indices: Sequence[int], times: Mapping[str, int]
) -> list[MethodScores]:
    """Each of the 12 signals alone; the sign is chosen on the training episodes only."""
    train = [episodes[i] for i in split.train]
    x = np.concatenate([ep.signals for ep in train]).astype(np.float64)
    ok = np.concatenate([ep.valid for ep in train]) & np.isfinite(x)
    out = []
    labels = np.array([ep.failed for ep in train])
    for j, name in enumerate(episodes.signal_names):
        vals = x[ok[:, j], j]
        mean = float(vals.mean()) if vals.size else 0.0
        std = float(vals.std()) if vals.size and vals.std() > 1e-12 else 1.0

        def z(ep: Episode, j: int = j, mean: float = mean, std: float = std) -> np.ndarray:
            v = ep.signals[:, j].astype(np.float64)
            good = ep.valid[:, j] & np.isfinite(v)
            return np.where(good, (np.nan_to_num(v) - mean) / std, 0.0)

        best_sign, best_auc = 1.0, -1.0
        for sign in (1.0, -1.0):
            at_t = [score_at(running_max(sign * z(ep)), times[ep.task]) for ep in train]
            auc = roc_auc(labels, np.array(at_t))
            if not math.isnan(auc) and auc > best_auc:
                best_sign, best_auc = sign, auc
        scores = {i: best_sign * z(episodes[i]) for i in indices}
        out.append(
            MethodScores(
                f"signal:{name}",
                "signal",
                scores,
                note=f"sign {'+' if best_sign > 0 else '-'}",
                extra={"sign": best_sign, "train_auroc_T": best_auc},
            )
        )
    return out


def baseline_methods(episodes: EpisodeSet, split: EpisodeSplit, indices: Sequence[int]) -> list[MethodScores]:
    """Online baselines recorded per step (higher = more likely to fail, as published).
    Non-finite steps (e.g. before a baseline has two chunks) take the training minimum."""
    out = []
    train = [episodes[i] for i in split.train]
    for j, name in enumerate(episodes.baseline_names):
        col = np.concatenate([ep.baselines[:, j] for ep in train if ep.baselines is not None])
        finite = col[np.isfinite(col)]
        fill = float(finite.min()) if finite.size else 0.0
        scores = {i: _finite_fill(episodes[i].baselines[:, j], fill) for i in indices}  # type: ignore[index]
        note = "" if finite.size else "no finite training values"
        out.append(MethodScores(f"baseline:{name}", "baseline", scores, note=note))
    return out


def _embedding_scorer(name: str) -> Any:
    """Thin bridge to ``salus.signals.EmbeddingScorer`` (the signals part owns the scorers)."""
    from salus.signals import EmbeddingScorer

    return EmbeddingScorer(name)


def _embedding_names() -> tuple[str, ...]:
    from salus.signals import EMBEDDING_BASELINE_NAMES

    return tuple(EMBEDDING_BASELINE_NAMES)


def embedding_methods(
    episodes: EpisodeSet, split: EpisodeSplit, indices: Sequence[int], *, max_fit: int = 5000, seed: int = 0
) -> list[MethodScores]:
    """Mahalanobis and kNN scores of the observation embedding, fitted on successful training
    episodes (at most ``max_fit`` steps, sampled with ``seed``)."""
    if not episodes.has_embedding:
        return []
    succ = [episodes[i].embedding for i in split.train if episodes[i].success]
    if not succ:
        return []
    ref = np.concatenate(succ).astype(np.float32)  # type: ignore[arg-type]
    ref = ref[np.isfinite(ref).all(axis=1)]
    if len(ref) > max_fit:
        ref = ref[np.random.default_rng(seed).choice(len(ref), max_fit, replace=False)]
    out = []
    for name in _embedding_names():
        scorer = _embedding_scorer(name).fit(ref)
        all_x = np.concatenate([episodes[i].embedding for i in indices]).astype(np.float32)  # type: ignore[arg-type]
        s = scorer.score(all_x).astype(np.float64)
        finite = s[np.isfinite(s)]
        s = np.where(np.isfinite(s), s, float(finite.min()) if finite.size else 0.0)
        scores, pos = {}, 0
        for i in indices:
            T = episodes[i].length
            scores[i] = s[pos : pos + T]
            pos += T
        out.append(
            MethodScores(f"embedding:{name}", "embedding", scores, note=f"fit on {len(ref)} success steps")
        )
    return out


def predictor_methods(
    predictors: Sequence[TrainedPredictor],
    episodes: EpisodeSet,
    indices: Sequence[int],
    include: Sequence[str] | None = None,
) -> list[MethodScores]:
    """Each predictor's per-step scores on ``indices``; with ``include``, only the predictors of
    those families are scored (the others are skipped before their features are computed)."""
    from .registry import get_model_spec

    out = []
    eps = [episodes[i] for i in indices]
    for p in predictors:
        spec = get_model_spec(p.name)
        label = str(p.meta.get("label") or p.name)
        family = "ablation" if label != p.name else spec.family
        if include is not None and family not in include:
            continue
        scores = dict(zip(indices, p.episode_scores(eps), strict=True))
        groups = ",".join(p.config.groups) if p.input_kind == "features" else ""
        note = spec.note if label == p.name else f"{p.name} with features {groups}"
        out.append(MethodScores(label, family, scores, note=note))
    return out


@dataclass
class Evaluation:
    """One evaluation: the JSON-able ``report`` plus what the figures need (per-step scores of every
    method, running scores, calibrated thresholds), so the report draws them instead of refitting."""

    report: dict[str, Any]
    episodes: EpisodeSet
    split: EpisodeSplit
    methods: list[MethodScores]
    bands: dict[str, dict[str, dict[float, FunctionalBand]]]  # method -> kind -> alpha -> band
    boot: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # group/metric -> (M, n_boot)

    def running(self, method: str, index: int) -> np.ndarray:
        m = next(m for m in self.methods if m.name == method)
        return running_max(m.scores[index])


def _headline_value(res: dict[str, Any], metric: str) -> float:
    """One metric of one test group's results (``safe``, ``at_risk_2s``, ...; see :func:`_get`)."""
    return _metric(res, metric)


def _comparator_names(names: Sequence[str]) -> list[str]:
    out = []
    for c in COMPARATORS:
        if c.endswith("*"):
            out += [n for n in names if n.startswith(c[:-1])]
        elif c in names:
            out.append(c)
    return out


def select_on_validation(
    episodes: EpisodeSet, split: EpisodeSplit, methods: Sequence[MethodScores], times: Mapping[str, int]
) -> dict[str, Any]:
    """Our predictor for the headline: the ``salus`` model with the best ROC-AUC at T on the seen
    validation episodes (never test). Returns the pick and every candidate's validation score."""
    idx = list(split.val)
    labels = np.array([episodes[i].failed for i in idx], dtype=bool)
    scores = {}
    for m in methods:
        if m.family != "salus" or not all(i in m.scores for i in idx):
            continue
        at_t = [score_at(running_max(m.scores[i]), times[episodes[i].task]) for i in idx]
        scores[m.name] = roc_auc(labels, np.array(at_t))
    finite = {k: v for k, v in scores.items() if not math.isnan(v)}
    pick = max(finite, key=lambda k: finite[k]) if finite else None
    return {"selected": pick, "val_auroc_T": scores, "n_val": len(idx)}


def evaluate_methods(
    episodes: EpisodeSet,
    split: EpisodeSplit,
    methods: Sequence[MethodScores],
    *,
    config: ProtocolConfig | None = None,
    times: Mapping[str, int] | None = None,
) -> Evaluation:
    """The protocol applied to every method on the split's seen and unseen test episodes."""
    cfg = config or ProtocolConfig(control_hz=episodes.control_hz)
    times = dict(times or safe_times(episodes.episodes))
    groups = {"seen": list(split.test_seen), "unseen": list(split.test_unseen)}
    calib = [i for i in split.calib if episodes[i].success]
    if len(calib) < 2:
        raise InvalidInputError(f"need >= 2 successful calibration episodes, got {len(calib)}")
    timeout_step = int(np.percentile([episodes[i].length for i in calib], 90))
    results: list[dict[str, Any]] = []
    bands_by: dict[str, dict[str, dict[float, FunctionalBand]]] = {}
    headline_scores: dict[str, dict[str, list[np.ndarray]]] = {g: {} for g in groups}
    for m in methods:
        bands = fit_bands([running_max(m.scores[i]) for i in calib], cfg)
        bands_by[m.name] = bands
        entry: dict[str, Any] = {"name": m.name, "family": m.family, "note": m.note, **m.extra}
        for g, idx in groups.items():
            eps = [episodes[i] for i in idx]
            run = [running_max(m.scores[i]) for i in idx]
            entry[g] = method_metrics(eps, run, times, bands, cfg, timeout_step=timeout_step)
            entry[g]["n"] = len(idx)
            hs = headline_scores[g]
            hs.setdefault("safe", []).append(
                np.array([score_at(r, times[ep.task]) for ep, r in zip(eps, run, strict=True)])
            )
            for t in cfg.at_risk_s:
                step = int(round(t * cfg.control_hz))
                _, _, sc = at_risk_scores(eps, run, step)
                hs.setdefault(f"at_risk_{t:g}s", []).append(sc)
        results.append(entry)
    boot: dict[str, dict[str, np.ndarray]] = {}
    for g, idx in groups.items():
        eps = [episodes[i] for i in idx]
        boot[g] = {}
        for metric, rows in headline_scores[g].items():
            if metric == "safe":
                labels = np.array([ep.failed for ep in eps], dtype=bool)
            else:
                step = int(round(float(metric[len("at_risk_") : -1]) * cfg.control_hz))
                _, labels, _ = at_risk_scores(eps, [np.zeros(ep.length) for ep in eps], step)
            mat = np.array(rows).reshape(len(methods), len(labels))
            b = bootstrap_auroc(labels, mat, cfg.n_boot, cfg.seed)
            boot[g][metric] = b
            for entry, bi in zip(results, b, strict=True):
                entry[g].setdefault("ci95", {})[metric] = list(ci95(bi))
    selection = select_on_validation(episodes, split, methods, times)
    report: dict[str, Any] = {
        "protocol": {
            **cfg.to_dict(),
            "score": "running max of the per-step failure score",
            "T": times,
            "T_rule": "shortest rollout of each task, any outcome (SAFE)",
            "timeout_step": timeout_step,
        },
        "dataset": {
            "source": episodes.source,
            "n_episodes": len(episodes),
            "fingerprint": episodes.fingerprint(),
            "tasks": episodes.tasks,
            "info": episodes.info,
        },
        "split": {k: len(v) for k, v in split.to_dict().items()}
        | {
            "calib_successes": len(calib),
            "unseen_tasks": sorted({episodes[i].task for i in split.test_unseen}),
        },
        "selection": selection,
        "methods": results,
    }
    ev = Evaluation(report, episodes, split, list(methods), bands_by, boot)
    report["comparisons"] = compare(ev, selection["selected"])
    return ev


def compare(ev: Evaluation, ours: str | None) -> dict[str, Any]:
    """``ours`` minus each fixed comparator on the headline metrics, with paired bootstrap intervals."""
    if ours is None:
        return {}
    names = [m.name for m in ev.methods]
    i = names.index(ours)
    out: dict[str, Any] = {"ours": ours, "rows": {}}
    for other in _comparator_names(names):
        j = names.index(other)
        row: dict[str, Any] = {}
        for g, by in ev.boot.items():
            for metric in HEADLINE_METRICS:
                res_i, res_j = ev.report["methods"][i][g], ev.report["methods"][j][g]
                d = _headline_value(res_i, metric) - _headline_value(res_j, metric)
                row[f"{g}/{metric}"] = {"delta": d, "ci95": list(ci95(by[metric][i] - by[metric][j]))}
        out["rows"][other] = row
    return out


def _protocol_config(alphas: Sequence[float], control_hz: float, seed: int) -> ProtocolConfig:
    return ProtocolConfig(alphas=tuple(float(a) for a in alphas), control_hz=control_hz, seed=seed)


def evaluate_detailed(
    episodes: EpisodeSet,
    predictors: Sequence[TrainedPredictor] = (),
    *,
    split: EpisodeSplit | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    include: Sequence[str] = ("salus", "safe", "oracle", "baseline", "embedding", "signal"),
    progress: Callable[[str], None] | None = None,
    test: EpisodeSet | None = None,
) -> Evaluation:
    """Score every method on the predictors' split (or ``split``) and apply the protocol.

    ``test``: fresh episodes (e.g. new seeds, ``salus assist``) that replace the split's test parts:
    training, validation and calibration stay those of ``episodes``; a fresh episode of a task the
    split holds out (or that ``episodes`` never had) is unseen, any other is seen."""
    from .training import check_split_matches

    splits = [check_split_matches(p, episodes) for p in predictors]
    if splits and any(s != splits[0] for s in splits[1:]):
        raise InvalidInputError(
            "the predictors were trained on different splits; train them together (--model all)"
        )
    split = split or (splits[0] if splits else split_episodes(episodes, _default_split()))
    if test is not None:
        episodes, split = with_fresh_test(episodes, split, test)
    seed = int(predictors[0].meta.get("train_config", {}).get("seed", 0)) if predictors else 0
    times = safe_times(episodes.episodes)
    idx = sorted(set(split.val) | set(split.calib) | set(split.test_seen) | set(split.test_unseen))
    methods: list[MethodScores] = []
    notes: list[str] = []

    def say(msg: str) -> None:
        if progress is not None:
            progress(msg)

    say("scoring predictors")
    methods += predictor_methods(predictors, episodes, idx, include)
    if "baseline" in include:
        say("online baselines")
        methods += baseline_methods(episodes, split, idx)
    if "embedding" in include:
        say("embedding baselines")
        methods += embedding_methods(episodes, split, idx, seed=seed)
        if not episodes.has_embedding:
            notes.append("no obs_embedding in the dataset: embedding baselines skipped")
    if "signal" in include:
        say("single signals")
        methods += signal_methods(episodes, split, idx, times)
    say("metrics")
    ev = evaluate_methods(
        episodes, split, methods, config=_protocol_config(alphas, episodes.control_hz, seed), times=times
    )
    ev.report["notes"] = notes
    ev.report["predictors"] = [
        {
            "name": p.name,
            "best_epoch": p.meta.get("training", {}).get("best_epoch"),
            "command": p.meta.get("command"),
        }
        for p in predictors
    ]
    return ev


def with_fresh_test(
    episodes: EpisodeSet, split: EpisodeSplit, test: EpisodeSet
) -> tuple[EpisodeSet, EpisodeSplit]:
    """``episodes`` followed by ``test``, and ``split`` with ``test`` as its test parts."""
    for what in ("signal_names", "baseline_names"):
        if tuple(getattr(episodes, what)) != tuple(getattr(test, what)):
            raise InvalidInputError(
                f"the fresh episodes' {what} {list(getattr(test, what))} differ from the "
                f"dataset's {list(getattr(episodes, what))}; collect them with the same policy and signals"
            )
    if episodes.control_hz != test.control_hz:
        raise InvalidInputError(f"control rates differ: {episodes.control_hz} vs {test.control_hz} Hz")
    seen_tasks = {episodes[i].task for i in split.train}
    n = len(episodes)
    combined = EpisodeSet(
        episodes=[*episodes.episodes, *test.episodes],
        signal_names=episodes.signal_names,
        baseline_names=episodes.baseline_names,
        extractor_statistics=episodes.extractor_statistics,
        control_hz=episodes.control_hz,
        source=f"{episodes.source} + fresh {test.source}",
        info=episodes.info,
    )
    seen = tuple(n + j for j, ep in enumerate(test.episodes) if ep.task in seen_tasks)
    unseen = tuple(n + j for j, ep in enumerate(test.episodes) if ep.task not in seen_tasks)
    return combined, EpisodeSplit(split.train, split.val, split.calib, seen, unseen)


def run_evaluation(
    episodes: EpisodeSet, predictors: Sequence[TrainedPredictor] = (), **kwargs: Any
) -> dict[str, Any]:
    """:func:`evaluate_detailed`'s JSON-able report."""
    return evaluate_detailed(episodes, predictors, **kwargs).report


def aggregate_seeds(
    reports: Sequence[dict[str, Any]], boots: Sequence[dict[str, dict[str, np.ndarray]]]
) -> dict[str, Any]:
    """Mean and spread (min, max) over split seeds of each method's main metrics, and the headline
    comparisons averaged over seeds (the interval of the mean difference from the per-seed paired
    bootstrap replicates averaged over seeds). ``reports[k]`` and ``boots[k]`` come from one seed."""
    import warnings

    with warnings.catch_warnings():  # a resample with one class gives NaN: nanmean of only NaN is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return _aggregate_seeds(reports, boots)


def _aggregate_seeds(
    reports: Sequence[dict[str, Any]], boots: Sequence[dict[str, dict[str, np.ndarray]]]
) -> dict[str, Any]:
    names = [m["name"] for m in reports[0]["methods"]]
    for r in reports[1:]:
        if [m["name"] for m in r["methods"]] != names:
            raise InvalidInputError("the seeds' evaluations compare different methods")
    keys = _summary_keys(reports[0])
    methods = []
    for k, name in enumerate(names):
        row: dict[str, Any] = {"name": name, "family": reports[0]["methods"][k]["family"]}
        for key in keys:
            vals = np.array([_get(r["methods"][k], key) for r in reports], dtype=float)
            ok = vals[np.isfinite(vals)]
            row[key] = {
                "mean": float(ok.mean()) if ok.size else math.nan,
                "min": float(ok.min()) if ok.size else math.nan,
                "max": float(ok.max()) if ok.size else math.nan,
                "values": [float(v) for v in vals],
            }
        for g in ("seen", "unseen"):
            for metric in HEADLINE_METRICS:
                mean_boot = np.nanmean(np.stack([b[g][metric][k] for b in boots]), axis=0)
                row[f"{g}/{metric}"]["ci95_of_mean"] = list(ci95(mean_boot))
        methods.append(row)
    selected = [r["selection"]["selected"] for r in reports]
    comparisons: dict[str, Any] = {}
    if all(s is not None for s in selected):
        idx = [names.index(s) for s in selected]
        for other in _comparator_names(names):
            j = names.index(other)
            row = {}
            for g in ("seen", "unseen"):
                for metric in HEADLINE_METRICS:
                    deltas = [
                        _headline_value(r["methods"][i][g], metric)
                        - _headline_value(r["methods"][j][g], metric)
                        for r, i in zip(reports, idx, strict=True)
                    ]
                    diff = np.nanmean(
                        np.stack(
                            [b[g][metric][i] - b[g][metric][j] for b, i in zip(boots, idx, strict=True)]
                        ),
                        axis=0,
                    )
                    row[f"{g}/{metric}"] = {
                        "delta": float(np.mean(deltas)),
                        "per_seed": [float(d) for d in deltas],
                        "ci95": list(ci95(diff)),
                    }
            comparisons[other] = row
    return {"n_seeds": len(reports), "selected": selected, "methods": methods, "comparisons": comparisons}


def _summary_keys(report: dict[str, Any]) -> list[str]:
    """Flat keys ``group/metric`` aggregated over seeds."""
    proto = report["protocol"]
    keys = []
    for g in ("seen", "unseen"):
        keys += [f"{g}/safe", f"{g}/safe_task_mean", f"{g}/ap"]
        keys += [f"{g}/at_risk_{t:g}s" for t in proto["at_risk_s"]]
        keys += [f"{g}/lead_{lo}-{hi}" for lo, hi in proto["lead_bins"]]
        for a in proto["alphas"]:
            for kind in proto["thresholds"]:
                keys += [f"{g}/{kind}@{a:g}/fpr", f"{g}/{kind}@{a:g}/event_recall_0.5s"]
    return keys


def _get(entry: dict[str, Any], key: str) -> float:
    """A method's value for a flat key ``group/metric``."""
    g, metric = key.split("/", 1)
    return _metric(entry[g], metric)


def _metric(res: dict[str, Any], metric: str) -> float:
    """``safe``, ``safe_task_mean``, ``ap``, ``at_risk_<t>s``, ``lead_<lo>-<hi>`` or
    ``<kind>@<alpha>/<alarm field>`` of one test group's results."""
    if metric == "safe":
        return float(res["safe"]["auroc"])
    if metric == "safe_task_mean":
        return float(res["safe"]["auroc_task_mean"])
    if metric == "ap":
        return float(res["safe"]["ap"])
    if metric.startswith("at_risk_"):
        return float(res["at_risk"][metric[len("at_risk_") :]]["auroc"])
    if metric.startswith("lead_"):
        return float(res["lead"][metric[len("lead_") :]]["auroc"])
    kind_alpha, what = metric.split("/")
    kind, alpha = kind_alpha.split("@")
    return float(res["alarms"][kind][str(float(alpha))][what])


def _default_split() -> Any:
    from .config import SplitConfig

    return SplitConfig()
