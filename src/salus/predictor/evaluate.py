"""Every method side by side under one protocol, on the same episodes.

Methods: trained predictors (ours and SAFE's), each online baseline score recorded in the dataset,
each embedding baseline (fitted on successful *training* episodes' observation embeddings), and
each of the 12 signals alone (z-scored on training steps, invalid steps at the training mean,
sign chosen by ROC-AUC at T on *training* episodes). Each method's conformal band is calibrated on
the same ``calib`` successes; metrics on ``test_seen`` and ``test_unseen`` (held-out tasks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salus.errors import InvalidInputError

from .checkpoint import TrainedPredictor
from .config import DEFAULT_ALPHAS, ConformalConfig
from .conformal import fit_functional_bands
from .episodes import Episode, EpisodeSet, EpisodeSplit, split_episodes
from .metrics import (
    alarm_metrics,
    bootstrap_auroc,
    ci95,
    protocol_times,
    ranking_metrics,
    roc_auc,
    running_max,
    score_at,
)

__all__ = [
    "MethodScores",
    "evaluate_methods",
    "run_evaluation",
    "format_markdown",
    "baseline_methods",
    "embedding_methods",
    "predictor_methods",
    "signal_methods",
]


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
    episodes: EpisodeSet, split: EpisodeSplit, indices: Sequence[int], times: dict[str, int]
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
    predictors: Sequence[TrainedPredictor], episodes: EpisodeSet, indices: Sequence[int]
) -> list[MethodScores]:
    out = []
    for p in predictors:
        eps = [episodes[i] for i in indices]
        scores = dict(zip(indices, p.episode_scores(eps), strict=True))
        family = "safe" if p.name.startswith("safe") else "salus"
        h = p.meta["horizons"][p.meta["score_index"]] if p.input_kind == "signals" else None
        note = f"P(failure within {h} steps)" if h is not None else "trajectory score"
        out.append(MethodScores(p.name, family, scores, note=note))
    return out


def _headline(results: list[dict[str, Any]], boot: np.ndarray, group: str) -> dict[str, Any]:
    """Best of ours vs best SAFE vs best single score (chosen by seen ROC-AUC at T)."""

    def best(families: set[str]) -> int | None:
        cands = [
            i
            for i, e in enumerate(results)
            if e["family"] in families and not math.isnan(e["seen"]["auroc_T"])
        ]
        return max(cands, key=lambda i: results[i]["seen"]["auroc_T"]) if cands else None

    picks = {
        "ours": best({"salus"}),
        "safe": best({"safe"}),
        "single": best({"baseline", "embedding", "signal"}),
    }
    out: dict[str, Any] = {}
    for key, i in picks.items():
        out[key] = (
            None if i is None else {"name": results[i]["name"], "auroc_T": results[i][group]["auroc_T"]}
        )
    for other in ("safe", "single"):
        i, j = picks["ours"], picks[other]
        if i is None or j is None:
            out[f"delta_vs_{other}"] = None
            continue
        diff = boot[i] - boot[j]
        out[f"delta_vs_{other}"] = {
            "auroc_T": results[i][group]["auroc_T"] - results[j][group]["auroc_T"],
            "ci95": list(ci95(diff)),
        }
    return out


def evaluate_methods(
    episodes: EpisodeSet,
    split: EpisodeSplit,
    methods: Sequence[MethodScores],
    *,
    conformal: ConformalConfig | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    times: dict[str, int] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The protocol applied to every method; returns a JSON-able dict (see ``format_markdown``).

    ROC-AUC at T gets a 95% episode-bootstrap interval (``n_boot`` resamples, the same for every
    method); ``summary`` compares our best predictor with the best SAFE model and the best single
    score (baseline, embedding baseline or signal), each picked by seen ROC-AUC at T, with paired
    bootstrap intervals of the differences."""
    conf = conformal or ConformalConfig()
    times = times or protocol_times(episodes.episodes)
    groups = {"seen": list(split.test_seen), "unseen": list(split.test_unseen)}
    calib = [i for i in split.calib if episodes[i].success]
    if len(calib) < 2:
        raise InvalidInputError(f"need >= 2 successful calibration episodes, got {len(calib)}")
    results = []
    at_t: dict[str, list[np.ndarray]] = {g: [] for g in groups}
    for m in methods:
        cal_traj = [running_max(m.scores[i]) for i in calib]
        bands = fit_functional_bands(
            cal_traj,
            alphas,
            modulation=conf.modulation,
            two_sided=conf.two_sided,
            fit_fraction=conf.fit_fraction,
            seed=seed,
        )
        entry: dict[str, Any] = {"name": m.name, "family": m.family, "note": m.note, **m.extra}
        for g, idx in groups.items():
            eps = [episodes[i] for i in idx]
            run = [running_max(m.scores[i]) for i in idx]
            res = ranking_metrics(eps, run, times)
            res["alarms"] = {}
            for a in alphas:
                band = bands[float(a)]
                res["alarms"][str(a)] = {
                    **alarm_metrics(eps, run, band, episodes.control_hz),
                    "half_width": band.half_width,
                    "n_cal": band.n_cal,
                }
            entry[g] = res
            at_t[g].append(np.array([score_at(r, times[ep.task]) for ep, r in zip(eps, run, strict=True)]))
        results.append(entry)
    summary: dict[str, Any] = {}
    for g, idx in groups.items():  # before sorting: bootstrap rows follow ``methods``
        labels = np.array([episodes[i].failed for i in idx], dtype=bool)
        boot = bootstrap_auroc(labels, np.array(at_t[g]).reshape(len(methods), len(idx)), n_boot, seed)
        for entry, b in zip(results, boot, strict=True):
            entry[g]["auroc_T_ci"] = list(ci95(b))
        summary[g] = _headline(results, boot, g)

    def key(e: dict[str, Any]) -> float:
        v = e["seen"]["auroc_T"]
        return -v if not math.isnan(v) else math.inf

    results.sort(key=key)
    return {
        "protocol": {
            "score": "running max of the per-step failure score",
            "T": times,
            "alphas": [float(a) for a in alphas],
            "conformal": conf.to_dict(),
            "control_hz": episodes.control_hz,
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
        "summary": summary,
        "methods": results,
    }


def run_evaluation(
    episodes: EpisodeSet,
    predictors: Sequence[TrainedPredictor] = (),
    *,
    split: EpisodeSplit | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    time: int | None = None,
    include: Sequence[str] = ("salus", "safe", "baseline", "embedding", "signal"),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate predictors and every baseline on the predictors' split (or ``split``).

    All predictors must share one split made on ``episodes``; ``time`` overrides the protocol T
    (the same for every task).
    """
    from .training import check_split_matches

    splits = [check_split_matches(p, episodes) for p in predictors]
    if splits and any(s != splits[0] for s in splits[1:]):
        raise InvalidInputError(
            "the predictors were trained on different splits; train them together (--model all)"
        )
    split = split or (splits[0] if splits else split_episodes(episodes, _default_split()))
    conf = ConformalConfig()
    seed = 0
    if predictors:
        tc = predictors[0].meta.get("train_config", {})
        c = dict(tc.get("conformal", {}))
        c.update({"alphas": tuple(alphas), "alpha": float(alphas[0])})
        conf = ConformalConfig.from_dict(c)
        seed = int(tc.get("seed", 0))
    if time is not None and time < 1:
        raise InvalidInputError(f"time must be >= 1 step, got {time}")
    times = {t: time for t in episodes.tasks} if time else protocol_times(episodes.episodes)
    idx = sorted(set(split.calib) | set(split.test_seen) | set(split.test_unseen))
    methods: list[MethodScores] = []
    notes: list[str] = []

    def say(msg: str) -> None:
        if progress is not None:
            progress(msg)

    say("scoring predictors")
    methods += [m for m in predictor_methods(predictors, episodes, idx) if m.family in include]
    if "baseline" in include:
        say("online baselines")
        methods += baseline_methods(episodes, split, idx)
    if "embedding" in include:
        say("embedding baselines")
        try:
            methods += embedding_methods(episodes, split, idx, seed=seed)
        except ImportError as exc:
            notes.append(f"embedding baselines unavailable: {exc}")
        if not episodes.has_embedding:
            notes.append("no obs_embedding in the dataset: embedding baselines skipped")
    if "signal" in include:
        say("single signals")
        methods += signal_methods(episodes, split, idx, times)
    say("metrics")
    report = evaluate_methods(episodes, split, methods, conformal=conf, alphas=alphas, times=times, seed=seed)
    report["notes"] = notes
    report["predictors"] = [
        {
            "name": p.name,
            "best_epoch": p.meta.get("training", {}).get("best_epoch"),
            "command": p.meta.get("command"),
        }
        for p in predictors
    ]
    return report


# Module-level alias (``from salus.predictor.evaluate import evaluate``). The package exports the
# function as ``run_evaluation``: ``salus.predictor.evaluate`` is this module.
evaluate = run_evaluation


def _default_split() -> Any:
    from .config import SplitConfig

    return SplitConfig()


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _band_note(methods: list[dict[str, Any]], alpha: float) -> list[str]:
    """A line saying when the calibration set is too small for a finite band at ``alpha``."""
    if not methods:
        return []
    al = methods[0]["seen"]["alarms"][str(alpha)]
    n_cal = al.get("n_cal")
    if n_cal is None:
        return []
    need = math.ceil(1.0 / alpha) - 1
    if n_cal >= need:
        return []
    return [
        f"{n_cal} calibration successes give the nonconformity scores; a finite band at alpha = {alpha:g} "
        f"needs at least {need}, so no method can alarm here.",
        "",
    ]


def _collect_lines(info: dict[str, Any]) -> list[str]:
    c = info.get("collect")
    if not isinstance(c, dict):
        return []
    keep = {k: c[k] for k in ("policy", "tasks", "episodes", "seed", "max_steps") if k in c}
    mix = c.get("mix")
    n_mix = f", perturbation mix of {len(mix)} conditions" if isinstance(mix, list) else ""
    return [f"Collected with {', '.join(f'{k}={v}' for k, v in keep.items())}{n_mix}."]


def _ci(res: dict[str, Any]) -> str:
    ci = res.get("auroc_T_ci")
    if not ci or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return ""
    return f" ({ci[0]:.2f}-{ci[1]:.2f})"


def _headline_lines(summary: dict[str, Any]) -> list[str]:
    if not summary:
        return []
    lines = [
        "## Headline",
        "",
        "Best of each kind, picked by seen ROC-AUC at T; differences with 95% paired bootstrap intervals.",
        "",
        "| test set | best salus predictor | best SAFE | best single score | salus - SAFE | salus - single |",
        "|---|---|---|---|---|---|",
    ]
    for g in ("seen", "unseen"):
        s = summary.get(g) or {}

        def pick(k: str, s: dict[str, Any] = s) -> str:
            v = s.get(k)
            return "n/a" if not v else f"{v['name']} {_f(v['auroc_T'])}"

        def delta(k: str, s: dict[str, Any] = s) -> str:
            v = s.get(k)
            if (
                not v
                or v["auroc_T"] is None
                or (isinstance(v["auroc_T"], float) and math.isnan(v["auroc_T"]))
            ):
                return "n/a"
            lo, hi = v["ci95"]
            ci = "" if lo is None or math.isnan(lo) else f" ({lo:+.3f} to {hi:+.3f})"
            return f"{v['auroc_T']:+.3f}{ci}"

        lines.append(
            f"| {g} | {pick('ours')} | {pick('safe')} | {pick('single')} | {delta('delta_vs_safe')} | {delta('delta_vs_single')} |"
        )
    return [*lines, ""]


def format_markdown(
    report: dict[str, Any], *, title: str = "Failure prediction results", commands: Sequence[str] = ()
) -> str:
    """The report as markdown: set-up, a ranking table (seen / unseen) and one alarm table per alpha."""
    proto, split = report["protocol"], report["split"]
    lines = [f"# {title}", ""]
    if commands:
        lines += ["Reproduce:", "", "```bash", *commands, "```", ""]
    ds = report["dataset"]
    lines += [
        f"Dataset `{ds['source']}`: {ds['n_episodes']} episodes, tasks {', '.join(ds['tasks'])} (fingerprint `{ds['fingerprint']}`).",
        *_collect_lines(ds.get("info") or {}),
        f"Split (episodes): train {split['train']}, val {split['val']}, calib {split['calib']} "
        f"({split['calib_successes']} successes calibrate the bands), test seen {split['test_seen']}, "
        f"test unseen {split['test_unseen']} (held-out tasks: {', '.join(split['unseen_tasks']) or 'none'}).",
        "Protocol: score = running max of the per-step failure score; T per task = "
        + ", ".join(f"{k} {v} steps" for k, v in proto["T"].items())
        + f" (shortest successful rollout; shorter episodes use their last value); functional conformal band "
        f"({proto['conformal']['modulation']} modulation, {'two' if proto['conformal']['two_sided'] else 'one'}-sided "
        "nonconformity) calibrated on held-out successes; control rate "
        f"{proto['control_hz']:g} Hz.",
        "",
    ]
    lines += _headline_lines(report.get("summary", {}))
    lines += [
        "## Ranking (ROC-AUC and average precision)",
        "",
        "ROC-AUC at T with a 95% episode-bootstrap interval.",
        "",
        "| method | family | seen AUROC@T | seen AP@T | seen AUROC all steps | unseen AUROC@T | unseen AP@T | unseen AUROC all steps | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["methods"]:
        s, u = m["seen"], m["unseen"]
        lines.append(
            f"| {m['name']} | {m['family']} | {_f(s['auroc_T'])}{_ci(s)} | {_f(s['ap_T'])} | {_f(s['auroc_all'])} | "
            f"{_f(u['auroc_T'])}{_ci(u)} | {_f(u['ap_T'])} | {_f(u['auroc_all'])} | {m.get('note', '')} |"
        )
    if report["methods"]:
        s0 = report["methods"][0]["seen"]
        u0 = report["methods"][0]["unseen"]
        lines += [
            "",
            f"Seen test: {s0['n']} episodes ({s0['n_failed']} failed); unseen: {u0['n']} ({u0['n_failed']} failed).",
        ]
    for a in proto["alphas"]:
        lines += [
            "",
            f"## Conformal alarms at alpha = {a:g}",
            "",
            *_band_note(report["methods"], a),
            "| method | seen TPR | seen TPR before failure | seen FPR | seen bal. acc. | seen detection (s) | seen lead (s) "
            "| unseen TPR | unseen FPR | unseen bal. acc. | unseen lead (s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in report["methods"]:
            s, u = m["seen"]["alarms"][str(a)], m["unseen"]["alarms"][str(a)]
            lines.append(
                f"| {m['name']} | {_f(s['tpr'])} | {_f(s['tpr_before'])} | {_f(s['fpr'])} | {_f(s['balanced_accuracy'])} | "
                f"{_f(s['detection_s'], 2)} | {_f(s['lead_s'], 2)} | {_f(u['tpr'])} | {_f(u['fpr'])} | "
                f"{_f(u['balanced_accuracy'])} | {_f(u['lead_s'], 2)} |"
            )
    if report.get("notes"):
        lines += ["", "Notes:", *[f"- {n}" for n in report["notes"]]]
    return "\n".join(lines) + "\n"
