"""Every method side by side under the protocol (``salus.predictor.protocol``), on the same episodes.

Methods: trained predictors (ours, SAFE's and the privileged oracle), each online baseline score
recorded in the dataset, each embedding baseline (fitted on successful *training* episodes'
observation embeddings), and each of the 12 signals alone (z-scored on training steps, invalid steps
at the training mean, sign chosen by ROC-AUC at T on *training* episodes), and the condition-only
reference (task and perturbation strengths, fitted on *training* episodes), and the snapshot
baselines (per-step gradient-boosted trees and logistic regression on salus-risk's inputs, fitted on
*training + validation* episodes). Every method's thresholds
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
from .episodes import Episode, EpisodeSet, EpisodeSplit, split_episodes, split_statistics
from .protocol import (
    ProtocolConfig,
    at_risk_auroc,
    bootstrap_auroc,
    ci95,
    fit_bands,
    lead_names,
    method_metrics,
    resample_counts,
    roc_auc,
    running_max,
    safe_times,
    score_at,
    seed_interval,
    view_samples,
    weighted_auroc,
    wider,
)

__all__ = [
    "COMPARATORS",
    "transfer_methods",
    "MethodScores",
    "Evaluation",
    "evaluate_methods",
    "run_evaluation",
    "evaluate_detailed",
    "with_fresh_test",
    "aggregate_seeds",
    "baseline_methods",
    "condition_features",
    "reference_methods",
    "shared_replicates",
    "INTERVAL_METRICS",
    "metric_value",
    "embedding_methods",
    "predictor_methods",
    "signal_methods",
    "signal_statistics",
    "snapshot_methods",
    "SNAPSHOT_NAMES",
]

# Comparators of the headline, fixed before any result (issue: "beats each of ..."): every
# published detector we implement and every single signal ("signal:*").
COMPARATORS: tuple[str, ...] = (
    "safe-mlp",
    "safe-lstm",
    "embedding:knn_cosine",
    "embedding:knn_euclidean",
    "embedding:mahalanobis",
    "embedding:rnd",
    "embedding:logpzo",
    "baseline:stac",
    "baseline:stac_single",
    "baseline:fiper_chunk_entropy",
    "baseline:action_total_variance",
    "signal:*",
    "reference:condition",
    "snapshot:gbt",
    "snapshot:logreg",
    "transfer:*",
)
# Predictors trained on another policy's episodes and scored on these (``evaluate_detailed``'s
# ``transfer``): ``transfer:<label>:<model>``. Only signal models cross policies: the observation
# embedding and the features built on it have the policy's own width and meaning.
TRANSFER_PREFIX = "transfer:"
# The condition-only reference (``reference_methods``): what the task and the perturbation alone
# predict, a constant score per episode; every detector must beat it.
REFERENCE_NAME = "reference:condition"
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
    Non-finite steps (e.g. before a baseline has two chunks) take the training minimum
    (``baseline_models.baseline_fill``: the rule of the ``salus train --model stac`` checkpoints)."""
    from .baseline_models import baseline_fill

    out = []
    train = [episodes[i] for i in split.train]
    for j, name in enumerate(episodes.baseline_names):
        fill = baseline_fill(train, j)
        scores = {i: _finite_fill(episodes[i].baselines[:, j], fill or 0.0) for i in indices}  # type: ignore[index]
        note = "" if fill is not None else "no finite training values"
        out.append(MethodScores(f"baseline:{name}", "baseline", scores, note=note))
    return out


def condition_features(episodes: Sequence[Episode], tasks: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """``(n, len(tasks) + len(names))``: task one-hot and the strength of each named perturbation
    (0 when absent); what an episode's set-up says before it starts."""
    x = np.zeros((len(episodes), len(tasks) + len(names)))
    for r, ep in enumerate(episodes):
        if ep.task in tasks:
            x[r, list(tasks).index(ep.task)] = 1.0
        for p in ep.perturbations:
            name = str(p.get("name"))
            if name in names:
                c = len(tasks) + list(names).index(name)
                x[r, c] = max(x[r, c], float(p.get("strength", 0.0)))
    return x


def reference_methods(
    episodes: EpisodeSet, split: EpisodeSplit, indices: Sequence[int]
) -> list[MethodScores]:
    """The condition-only reference: a logistic regression of failure on task one-hot and
    perturbation strengths, fitted on the training episodes only; its score is the episode's
    predicted failure probability at every step (a constant: it knows the set-up, nothing the
    policy does). Perturbations are visible from step 0, so a detector that does not beat this
    only recognises the condition."""
    from sklearn.linear_model import LogisticRegression

    train = [episodes[i] for i in split.train]
    tasks = episodes.tasks
    names = sorted({str(p.get("name")) for ep in train for p in ep.perturbations})
    y = np.array([ep.failed for ep in train], dtype=bool)
    eps = [episodes[i] for i in indices]
    if y.all() or not y.any():
        prob = np.full(len(eps), float(y.mean()) if y.size else 0.5)
    else:
        model = LogisticRegression(max_iter=1000).fit(condition_features(train, tasks, names), y)
        prob = model.predict_proba(condition_features(eps, tasks, names))[:, 1]
    scores = {i: np.full(episodes[i].length, float(p)) for i, p in zip(indices, prob, strict=True)}
    note = (
        f"logistic regression on task one-hot + {len(names)} perturbation strength(s), fit on "
        f"{len(train)} training episodes; constant per episode"
    )
    return [MethodScores(REFERENCE_NAME, "reference", scores, note=note, extra={"perturbations": names})]


# Snapshot baselines (``snapshot_methods``): per-step classifiers with no sequence model.
SNAPSHOT_NAMES: tuple[str, ...] = ("snapshot:gbt", "snapshot:logreg")
SNAPSHOT_MAX_STEPS = 20000  # training steps sampled (seeded) from the fit episodes' pre-event steps


def _snapshot_groups(episodes: EpisodeSet, eps: Sequence[Episode]) -> tuple[str, ...]:
    """salus-risk's deployable feature groups that every episode in ``eps`` records."""
    from .features import DEPLOYABLE_GROUPS, GROUP_STEP_KEYS
    from .registry import get_model_spec

    wanted = [g for g in get_model_spec("salus-risk").feature_groups if g in DEPLOYABLE_GROUPS]
    return tuple(
        g for g in wanted if all(getattr(ep, GROUP_STEP_KEYS.get(g, "signals")) is not None for ep in eps)
    )


def snapshot_methods(
    episodes: EpisodeSet, split: EpisodeSplit, indices: Sequence[int], *, seed: int = 0
) -> list[MethodScores]:
    """Per-step snapshot baselines every learned predictor must beat: a gradient-boosted classifier
    and a logistic regression of "this episode fails" on one step's inputs (salus-risk's deployable
    feature groups, fitted on training episodes, plus a task one-hot), no sequence model. Fitted on
    the training and validation episodes' pre-event steps (at most ``SNAPSHOT_MAX_STEPS``, sampled
    with ``seed``), the same episodes our models learn and early-stop on; never on calibration or
    test. Scored causally per step; the protocol takes the running max like for every method."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .features import FeatureSpace
    from .training import pre_event_steps

    fit_eps = [episodes[i] for i in (*split.train, *split.val)]
    y_ep = np.array([ep.failed for ep in fit_eps], dtype=bool)
    if y_ep.all() or not y_ep.any():
        return []
    groups = _snapshot_groups(episodes, fit_eps)
    train_eps = [episodes[i] for i in split.train]
    space = FeatureSpace(groups, seed=seed).fit(train_eps)
    tasks = list(episodes.tasks)

    def feats(ep: Episode) -> np.ndarray:
        onehot = np.zeros((ep.length, len(tasks)), dtype=np.float32)
        if ep.task in tasks:
            onehot[:, tasks.index(ep.task)] = 1.0
        return np.concatenate([space.transform(ep), onehot], axis=1)

    x, y = pre_event_steps(fit_eps, feats)
    space.forget_training_cache()
    if len(x) > SNAPSHOT_MAX_STEPS:
        pick = np.sort(np.random.default_rng(seed).choice(len(x), SNAPSHOT_MAX_STEPS, replace=False))
        x, y = x[pick], y[pick]
    models: dict[str, Any] = {
        "snapshot:gbt": HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=15,
            min_samples_leaf=50,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed,
        ),
        "snapshot:logreg": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
    }
    eval_x = [feats(episodes[i]) for i in indices]
    bounds = np.cumsum([0, *[len(f) for f in eval_x]])
    all_x = np.concatenate(eval_x)
    out = []
    for name, model in models.items():
        model.fit(x, y)
        prob = model.predict_proba(all_x)[:, 1].astype(np.float64)
        scores = {i: prob[bounds[k] : bounds[k + 1]] for k, i in enumerate(indices)}
        note = (
            f"per-step {name.split(':')[1]} on {len(x)} pre-event steps of {len(fit_eps)} train+val "
            f"episodes; inputs {','.join(groups)} + task one-hot"
        )
        out.append(MethodScores(name, "snapshot", scores, note=note, extra={"groups": list(groups)}))
    return out


def _embedding_scorer(name: str) -> Any:
    """Thin bridge to ``salus.signals.EmbeddingScorer`` (the signals part owns the scorers)."""
    from salus.signals import EmbeddingScorer

    return EmbeddingScorer(name)


def _embedding_names() -> tuple[str, ...]:
    from salus.signals import EMBEDDING_BASELINE_NAMES

    return tuple(EMBEDDING_BASELINE_NAMES)


def embedding_methods(
    episodes: EpisodeSet,
    split: EpisodeSplit,
    indices: Sequence[int],
    *,
    max_fit: int | None = None,
    seed: int = 0,
) -> list[MethodScores]:
    """Mahalanobis, kNN, RND and logpZO scores of the observation embedding, fitted on successful training
    episodes (at most ``max_fit`` steps, default ``baseline_models.EMBEDDING_MAX_FIT``, sampled with
    ``seed``: ``baseline_models.embedding_reference``, the rule of the ``salus train --model
    knn-cosine`` checkpoints)."""
    from .baseline_models import EMBEDDING_MAX_FIT, embedding_reference

    if not episodes.has_embedding:
        return []
    train = [episodes[i] for i in split.train]
    ref = embedding_reference(train, EMBEDDING_MAX_FIT if max_fit is None else max_fit, seed)
    if ref is None:
        return []
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


def transfer_methods(
    predictors: Sequence[TrainedPredictor], episodes: EpisodeSet, indices: Sequence[int], label: str
) -> list[MethodScores]:
    """Predictors trained on another policy's episodes, scored on ``indices`` of these as
    ``transfer:<label>:<model>`` (family ``transfer``: comparators, never our pick). Each must read
    the signals only, with the signal names these episodes record."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
        raise InvalidInputError(f"transfer label must be letters, digits, '_', '.' or '-', got {label!r}")
    out = []
    eps = [episodes[i] for i in indices]
    for p in predictors:
        if p.input_kind != "signals":
            raise InvalidInputError(
                f"{p.name} reads {p.input_kind}; only signal models transfer across policies (the embedding "
                "and the features built on it have the policy's own width and meaning)"
            )
        names = tuple(p.meta.get("signal_names") or ())
        if names and names != tuple(episodes.signal_names):
            raise InvalidInputError(
                f"{p.name} was trained on signals {list(names)}; these episodes record {list(episodes.signal_names)}"
            )
        scores = dict(zip(indices, p.episode_scores(eps), strict=True))
        note = f"{p.name} trained on the episodes of {label}"
        out.append(MethodScores(f"{TRANSFER_PREFIX}{label}:{p.name}", "transfer", scores, note=note))
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
    # group -> metric -> {"ids": dataset episode ids (n,), "labels": (n,), "scores": (M, n)}: what
    # each ROC-AUC view ranked, so the seed aggregate can resample episode ids shared by every seed
    samples: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)

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
    selection: Mapping[str, Any] | None = None,
) -> Evaluation:
    """The protocol applied to every method on the split's seen and unseen test episodes.
    ``selection``: the training's choice of our model (``selection.json``, e.g. by
    cross-validation); without one (or when it names no method here) it is made on validation."""
    cfg = config or ProtocolConfig(control_hz=episodes.control_hz)
    times = dict(times or safe_times(episodes.episodes))
    groups = {"seen": list(split.test_seen), "unseen": list(split.test_unseen)}
    calib = [i for i in split.calib if episodes[i].success]
    if len(calib) < 2:
        raise InvalidInputError(f"need >= 2 successful calibration episodes, got {len(calib)}")
    timeout_step = int(np.percentile([episodes[i].length for i in calib], 90))
    results: list[dict[str, Any]] = []
    bands_by: dict[str, dict[str, dict[float, FunctionalBand]]] = {}
    view_rows: dict[str, dict[str, list[np.ndarray]]] = {g: {} for g in groups}
    view_labels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {g: {} for g in groups}
    for m in methods:
        bands = fit_bands([running_max(m.scores[i]) for i in calib], cfg)
        bands_by[m.name] = bands
        entry: dict[str, Any] = {"name": m.name, "family": m.family, "note": m.note, **m.extra}
        for g, idx in groups.items():
            eps = [episodes[i] for i in idx]
            run = [running_max(m.scores[i]) for i in idx]
            entry[g] = method_metrics(eps, run, times, bands, cfg, timeout_step=timeout_step)
            entry[g]["n"] = len(idx)
            # The same at-risk views on the instantaneous score (no running max): an ablation that
            # shows how much the protocol's running max costs a noisy per-step score.
            entry[g]["at_risk_instant"] = {
                f"{t:g}s": at_risk_auroc(eps, [m.scores[i] for i in idx], int(round(t * cfg.control_hz)))
                for t in cfg.at_risk_s
            }
            for metric, (pos, lab, sc) in view_samples(eps, run, times, cfg).items():
                view_rows[g].setdefault(metric, []).append(sc)
                view_labels[g][metric] = (np.asarray(idx, dtype=int)[pos], lab)
        results.append(entry)
    boot: dict[str, dict[str, np.ndarray]] = {}
    samples: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for g in groups:
        boot[g], samples[g] = {}, {}
        for metric, rows in view_rows[g].items():
            ids, labels = view_labels[g][metric]
            mat = np.array(rows).reshape(len(methods), len(labels))
            b = bootstrap_auroc(labels, mat, cfg.n_boot, cfg.seed)
            boot[g][metric] = b
            samples[g][metric] = {"ids": ids, "labels": labels, "scores": mat}
            for entry, bi in zip(results, b, strict=True):
                entry[g].setdefault("ci95", {})[metric] = list(ci95(bi))
    names = {m.name for m in methods}
    if selection is not None and selection.get("selected") in names:
        selection = dict(selection)
    else:
        selection = select_on_validation(episodes, split, methods, times)
    report: dict[str, Any] = {
        "protocol": {
            **cfg.to_dict(),
            "score": "running max of the per-step failure score",
            "T": times,
            "T_rule": "shortest rollout of any task and outcome, one T for all tasks (SAFE's, pooled)",
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
    ev = Evaluation(report, episodes, split, list(methods), bands_by, boot, samples)
    report["comparisons"] = compare(ev, selection["selected"])
    return ev


def compare(ev: Evaluation, ours: str | None) -> dict[str, Any]:
    """``ours`` minus each fixed comparator on the headline metrics, with paired bootstrap intervals."""
    if ours is None:
        return {}
    names = [m.name for m in ev.methods]
    i = names.index(ours)
    out: dict[str, Any] = {"ours": ours, "rows": {}}
    leaks = ev.report.get("signal_statistics", {}).get("leaks", {})
    for other in _comparator_names(names):
        j = names.index(other)
        row: dict[str, Any] = {}
        for g, by in ev.boot.items():
            if g == "unseen" and other in leaks:  # its statistic has seen the held-out task
                continue
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
    include: Sequence[str] = (
        "salus",
        "safe",
        "oracle",
        "baseline",
        "embedding",
        "signal",
        "reference",
        "snapshot",
    ),
    progress: Callable[[str], None] | None = None,
    test: EpisodeSet | None = None,
    selection: Mapping[str, Any] | None = None,
    transfer: Sequence[TrainedPredictor] = (),
    transfer_label: str = "transfer",
) -> Evaluation:
    """Score every method on the predictors' split (or ``split``) and apply the protocol.

    ``transfer``: signal models trained on another policy's episodes, scored here as comparators
    ``transfer:<transfer_label>:<model>`` (:func:`transfer_methods`): is the monitor specific to the
    policy it watched?

    ``test``: fresh episodes (e.g. new seeds, ``salus assist``) that replace the split's test parts:
    training, validation and calibration stay those of ``episodes``; a fresh episode of a task the
    split holds out (or that ``episodes`` never had) is unseen, any other is seen. ``selection``: the
    training's recorded choice of our model (see :func:`evaluate_methods`)."""
    from .training import check_split_matches

    splits = [check_split_matches(p, episodes) for p in predictors]
    if splits and any(s != splits[0] for s in splits[1:]):
        raise InvalidInputError(
            "the predictors were trained on different splits; train them together (--model all)"
        )
    split = split or (splits[0] if splits else split_episodes(episodes, _default_split()))
    if test is not None:
        episodes, split = with_fresh_test(episodes, split, test)
    episodes = split_statistics(episodes, split)  # as in training: statistics from split.train only
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
    if transfer:
        say("transferred predictors")
        methods += transfer_methods(transfer, episodes, idx, transfer_label)
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
    if "reference" in include:
        say("condition-only reference")
        methods += reference_methods(episodes, split, idx)
    if "snapshot" in include:
        say("snapshot baselines")
        methods += snapshot_methods(episodes, split, idx, seed=seed)
    say("metrics")
    ev = evaluate_methods(
        episodes,
        split,
        methods,
        config=_protocol_config(alphas, episodes.control_hz, seed),
        times=times,
        selection=selection,
    )
    ev.report["notes"] = notes
    ev.report["signal_statistics"] = signal_statistics(episodes, split)
    if ev.report["signal_statistics"]["leaks"]:  # leaking comparators leave the unseen comparisons
        ev.report["comparisons"] = compare(ev, ev.report["selection"]["selected"])
    ev.report["predictors"] = [
        {
            "name": p.name,
            "best_epoch": p.meta.get("training", {}).get("best_epoch"),
            "command": p.meta.get("command"),
        }
        for p in predictors
    ]
    return ev


def signal_statistics(episodes: EpisodeSet, split: EpisodeSplit) -> dict[str, Any]:
    """What the recorded signals' fitted statistics were fitted on, and ``leaks``: comparator name
    -> why its statistic has seen a held-out task (excluded from the unseen comparisons).

    ``ood_distance`` is refitted on the split's training episodes (``split_statistics``) whenever the
    data allows; the cluster radius of ``sample_entropy`` / ``max_sample_probability`` cannot be
    (``salus.signals.analysis.UNREFITTABLE_SIGNALS``): it leaks when the statistics were fitted on
    rollouts of a held-out task (or on unknown tasks)."""
    from salus.signals.analysis import UNREFITTABLE_SIGNALS

    state = episodes.extractor_statistics if isinstance(episodes.extractor_statistics, dict) else {}
    meta, tensors = dict(state.get("meta") or {}), dict(state.get("tensors") or {})
    unseen = sorted({episodes[i].task for i in split.test_unseen})
    fitted_tasks = meta.get("tasks")
    saw_unseen = bool(unseen) and (fitted_tasks is None or bool(set(fitted_tasks) & set(unseen)))
    out: dict[str, Any] = {"fitted_on_tasks": fitted_tasks, "ood_refit": meta.get("ood_refit"), "leaks": {}}
    reason = f"fitted on rollouts of {', '.join(fitted_tasks or ['unknown tasks'])}, held-out {', '.join(unseen)} included"
    if "ood.mean" in tensors and meta.get("ood_refit") is None and saw_unseen:
        out["leaks"]["signal:ood_distance"] = f"OOD Gaussian {reason} (no obs_embedding to refit it)"
    if "cluster_radius" in tensors and state.get("config", {}).get("cluster_radius") is None and saw_unseen:
        for name in UNREFITTABLE_SIGNALS:
            j = episodes.signal_names.index(name) if name in episodes.signal_names else -1
            if j >= 0 and any(bool(episodes[i].valid[:, j].any()) for i in split.test_unseen):
                out["leaks"][f"signal:{name}"] = f"cluster radius {reason} (the K samples are not recorded)"
    return out


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
    reports: Sequence[dict[str, Any]],
    samples: Sequence[dict[str, dict[str, dict[str, np.ndarray]]]],
    *,
    n_boot: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean and spread (min, max) over split seeds of each method's main metrics, and the headline
    comparisons averaged over seeds. ``reports[k]`` and ``samples[k]`` (``Evaluation.samples``)
    come from one seed.

    Interval of a mean over seeds (of a metric, or of our model's difference to a comparator): the
    wider of (a) a bootstrap whose resample of episode ids is shared by every seed (ids drawn once
    per test group from the union of the seeds' test episodes; each seed's ROC-AUC on its own test
    episodes weighted by their multiplicity in that resample; the seeds averaged per replicate) and
    (b) the t interval of the mean from the spread across seeds (model retraining). Averaging
    independent per-seed bootstraps would shrink the interval by about sqrt(seeds), which only holds
    for independent test sets; the unseen set is the same in every seed, and seen test sets overlap
    the same pool. ``n_boot`` defaults to the protocol's; ``seed`` seeds the shared resample."""
    import warnings

    with warnings.catch_warnings():  # a resample with one class gives NaN: nanmean of only NaN is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return _aggregate_seeds(reports, samples, n_boot, seed)


# The ROC-AUC views whose mean over seeds gets an interval (the headline and the confound-free views).
INTERVAL_METRICS: tuple[str, ...] = (
    *HEADLINE_METRICS,
    "safe_unperturbed",
    "at_risk_2s_unperturbed",
    "at_risk_2s_event",
    "at_risk_2s_timeout",
    "safe_prediction",
)


def shared_replicates(
    samples: Sequence[dict[str, dict[str, dict[str, np.ndarray]]]],
    n_boot: int,
    seed: int = 0,
    metrics: Sequence[str] = INTERVAL_METRICS,
) -> dict[str, dict[str, np.ndarray]]:
    """group -> metric -> ``(seeds, methods, n_boot)`` ROC-AUC replicates on one bootstrap resample
    of episode ids per test group, shared by every seed (see :func:`aggregate_seeds`)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for gi, g in enumerate(("seen", "unseen")):
        per = [s.get(g, {}) for s in samples]
        union = np.array(sorted({int(i) for s in per for d in s.values() for i in d["ids"]}), dtype=int)
        counts = resample_counts(union.size, n_boot, seed + gi)
        out[g] = {}
        for metric in metrics:
            if not per or not all(metric in s for s in per):
                continue
            reps = []
            for s in per:
                d = s[metric]
                cols = np.searchsorted(union, np.asarray(d["ids"], dtype=int))
                reps.append(weighted_auroc(d["labels"], d["scores"], counts[:, cols]))
            out[g][metric] = np.stack(reps)
    return out


def _seed_ci(replicates: np.ndarray, values: Sequence[float]) -> dict[str, list[float]]:
    """The two intervals of a mean over seeds and the wider one (``ci95``); ``replicates`` is
    ``(seeds, n_boot)`` on the shared resample, ``values`` the per-seed estimates."""
    a = ci95(np.nanmean(replicates, axis=0))
    b = seed_interval(values)
    return {"ci95": list(wider(a, b)), "ci95_shared_bootstrap": list(a), "ci95_seeds": list(b)}


def _aggregate_seeds(
    reports: Sequence[dict[str, Any]],
    samples: Sequence[dict[str, dict[str, dict[str, np.ndarray]]]],
    n_boot: int | None,
    seed: int,
) -> dict[str, Any]:
    names = [m["name"] for m in reports[0]["methods"]]
    for r in reports[1:]:
        if [m["name"] for m in r["methods"]] != names:
            raise InvalidInputError("the seeds' evaluations compare different methods")
    if len(samples) != len(reports):
        raise InvalidInputError(f"{len(reports)} seed reports but {len(samples)} sample sets")
    n_boot = int(reports[0]["protocol"].get("n_boot", 1000)) if n_boot is None else n_boot
    reps = shared_replicates(samples, n_boot, seed)
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
        for g, by in reps.items():
            for metric, rep in by.items():
                if f"{g}/{metric}" in row:
                    ci = _seed_ci(rep[:, k, :], row[f"{g}/{metric}"]["values"])
                    row[f"{g}/{metric}"]["ci95_of_mean"] = ci.pop("ci95")
                    row[f"{g}/{metric}"].update(ci)
        methods.append(row)
    selected = [r["selection"]["selected"] for r in reports]
    leaks = {n: why for r in reports for n, why in r.get("signal_statistics", {}).get("leaks", {}).items()}
    comparisons: dict[str, Any] = {}
    if all(s is not None for s in selected):
        idx = [names.index(s) for s in selected]
        for other in _comparator_names(names):
            j = names.index(other)
            row = {}
            for g in ("seen", "unseen"):
                if g == "unseen" and other in leaks:  # its statistic has seen a held-out task
                    continue
                for metric in HEADLINE_METRICS:
                    deltas = [
                        _headline_value(r["methods"][i][g], metric)
                        - _headline_value(r["methods"][j][g], metric)
                        for r, i in zip(reports, idx, strict=True)
                    ]
                    shared = reps.get(g, {}).get(metric)
                    diff = (
                        np.stack([shared[s, i] - shared[s, j] for s, i in enumerate(idx)])
                        if shared is not None
                        else np.full((len(reports), 1), np.nan)
                    )
                    row[f"{g}/{metric}"] = {
                        "delta": float(np.mean(deltas)),
                        "per_seed": [float(d) for d in deltas],
                        **_seed_ci(diff, deltas),
                    }
            comparisons[other] = row
    unseen_tasks = [list(r["split"].get("unseen_tasks", [])) for r in reports]
    return {
        "n_seeds": len(reports),
        "seeds": [r["protocol"].get("seed") for r in reports],
        "unseen_tasks": unseen_tasks,  # per seed: the tasks it held out (rotated or fixed)
        "unseen_by_task": _unseen_by_task(reports, unseen_tasks, selected),
        "leaks": leaks,
        "selected": selected,
        "methods": methods,
        "comparisons": comparisons,
        "interval_rule": "wider of a bootstrap with one resample of episode ids shared by every seed "
        "and the t interval of the mean over seeds",
    }


def _unseen_by_task(
    reports: Sequence[dict[str, Any]], unseen_tasks: Sequence[Sequence[str]], selected: Sequence[str | None]
) -> list[dict[str, Any]]:
    """One row per seed (per held-out task under rotation): the held-out tasks, the seed's pick, and
    every method's unseen SAFE and at-risk 2 s ROC-AUC on that seed's own held-out episodes, with
    the seed's bootstrap interval."""
    rows = []
    for r, tasks, pick in zip(reports, unseen_tasks, selected, strict=True):
        values = {}
        for m in r["methods"]:
            u = m["unseen"]
            values[m["name"]] = {
                metric: {"auroc": _metric(u, metric), "ci95": (u.get("ci95") or {}).get(metric)}
                for metric in HEADLINE_METRICS
            }
        n = int(r["split"].get("test_unseen", 0))
        rows.append(
            {
                "seed": r["protocol"].get("seed"),
                "tasks": list(tasks),
                "n": n,
                "selected": pick,
                "methods": values,
            }
        )
    return rows


def _summary_keys(report: dict[str, Any]) -> list[str]:
    """Flat keys ``group/metric`` aggregated over seeds."""
    proto = report["protocol"]
    keys = []
    for g in ("seen", "unseen"):
        keys += [f"{g}/safe", f"{g}/safe_task_mean", f"{g}/ap"]
        keys += [f"{g}/at_risk_{t:g}s" for t in proto["at_risk_s"]]
        keys += [f"{g}/at_risk_instant_{t:g}s" for t in proto["at_risk_s"]]
        keys += [f"{g}/lead_{name}" for name in lead_names(proto)]
        views = report["methods"][0][g].get("views", {}) if report.get("methods") else {}
        keys += [f"{g}/{v}" for v in INTERVAL_METRICS if v in views]
        for a in proto["alphas"]:
            for kind in proto["thresholds"]:
                keys += [f"{g}/{kind}@{a:g}/fpr", f"{g}/{kind}@{a:g}/event_recall_0.5s"]
    return keys


def _get(entry: dict[str, Any], key: str) -> float:
    """A method's value for a flat key ``group/metric``."""
    g, metric = key.split("/", 1)
    return _metric(entry[g], metric)


def metric_value(res: dict[str, Any], metric: str) -> float:
    """One metric of one test group's results (see :func:`_metric` for the names)."""
    return _metric(res, metric)


def _metric(res: dict[str, Any], metric: str) -> float:
    """``safe``, ``safe_task_mean``, ``ap``, ``at_risk_<t>s``, ``lead_<lo>-<hi>s`` or
    ``<kind>@<alpha>/<alarm field>`` of one test group's results."""
    if metric == "safe":
        return float(res["safe"]["auroc"])
    if metric == "safe_task_mean":
        return float(res["safe"]["auroc_task_mean"])
    if metric == "ap":
        return float(res["safe"]["ap"])
    if metric in res.get("views", {}):  # safe_unperturbed, safe_prediction, at_risk_2s_event, ...
        return float(res["views"][metric]["auroc"])
    if metric.startswith("at_risk_instant_"):  # the instantaneous-score ablation
        return float(
            res.get("at_risk_instant", {}).get(metric[len("at_risk_instant_") :], {}).get("auroc", math.nan)
        )
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
