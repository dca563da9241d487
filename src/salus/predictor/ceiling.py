"""Reading the Monte-Carlo ceiling (``ceiling.json``, written by ``salus ceiling`` /
:func:`salus.predictor.ceiling_replay.run_ceiling`) for results tables: the ceiling ROC-AUC of an at-risk
metric and, for every method, the **share of the gap closed**

    (method - best baseline) / (ceiling - best baseline)

0 means no better than the best published baseline, 1 means as good as knowing the episode's
failure probability at that time (the ceiling); negative means worse than the best baseline. It is
NaN where the ceiling does not lie above the best baseline (no gap to close) or a number is
missing. Plain JSON reading: no simulator, no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import DatasetError, InvalidInputError

__all__ = [
    "CEILING_FILE",
    "episode_key",
    "load_ceiling",
    "ceiling_auroc",
    "share_of_gap_closed",
    "gap_closed",
    "paired_gap",
    "time_key",
    "view_metric",
]

CEILING_FILE = "ceiling.json"


def episode_key(episode_index: int) -> str:
    """A ceiling row's episode key (``"ep12"``) from the dataset's ``episode_index`` value."""
    return f"ep{int(episode_index)}"


def time_key(time: float | str) -> str:
    """The key of an at-risk time, as the protocol writes it: ``2.0`` or ``"2s"`` -> ``"2s"``;
    ``"T"`` (the step of the SAFE-prediction view) stays ``"T"``."""
    if time == "T":
        return "T"
    if isinstance(time, str):
        return time if time.endswith("s") else f"{float(time):g}s"
    return f"{float(time):g}s"


def load_ceiling(path: str | Path) -> dict[str, Any]:
    """``ceiling.json`` (a folder holding it, or the file itself) as a dict; refused with the reason
    when it is missing or not a ceiling result."""
    p = Path(path)
    if p.is_dir():
        p = p / CEILING_FILE
    if not p.is_file():
        raise DatasetError(f"no Monte-Carlo ceiling at {p}; compute it with `salus ceiling DATA --out DIR`")
    try:
        obj = json.loads(p.read_text())
    except ValueError as exc:
        raise DatasetError(f"{p} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("times"), dict):
        raise DatasetError(f"{p} is not a ceiling result (no 'times' object); rerun `salus ceiling`")
    return obj


def ceiling_auroc(ceiling: Mapping[str, Any], time: float | str = "2s", view: str = "all") -> float:
    """The ceiling ROC-AUC at an at-risk ``time`` in ``view`` (``all``: pending pushes apart,
    ``with_push_pending``, ``unperturbed``, ``seen``, ``unseen``, ``task:NAME``); NaN where that
    time or view was not measured."""
    entry = (ceiling.get("times") or {}).get(time_key(time)) or {}
    value = ((entry.get("views") or {}).get(view) or {}).get("auroc")
    return float(value) if isinstance(value, int | float) and value is not None else math.nan


def share_of_gap_closed(method: float, best_baseline: float, ceiling: float) -> float:
    """(method - best baseline) / (ceiling - best baseline); NaN when a value is not finite or the
    ceiling is not above the best baseline."""
    values = (float(method), float(best_baseline), float(ceiling))
    if not all(math.isfinite(v) for v in values) or values[2] <= values[1]:
        return math.nan
    return (values[0] - values[1]) / (values[2] - values[1])


def gap_closed(
    ceiling: Mapping[str, Any] | str | Path,
    aurocs: Mapping[str, float],
    baselines: Sequence[str],
    *,
    time: float | str = "2s",
    view: str = "all",
) -> dict[str, Any]:
    """Every method's share of the gap closed at one at-risk time and view.

    ``aurocs``: method name -> its at-risk ROC-AUC at ``time`` on the same view; ``baselines``: the
    names among them that are baselines (the best of them, by ROC-AUC, is the reference). Returns
    ``{"ceiling", "best_baseline", "best_baseline_auroc", "share": {method: share}}``.
    """
    if not isinstance(ceiling, Mapping):
        ceiling = load_ceiling(ceiling)
    unknown = [b for b in baselines if b not in aurocs]
    if unknown:
        raise InvalidInputError(f"baselines {unknown} have no ROC-AUC; methods given: {sorted(aurocs)}")
    finite = [(float(aurocs[b]), b) for b in baselines if math.isfinite(float(aurocs[b]))]
    best_value, best = max(finite) if finite else (math.nan, None)
    top = ceiling_auroc(ceiling, time, view)
    return {
        "time": time_key(time),
        "view": view,
        "ceiling": top,
        "best_baseline": best,
        "best_baseline_auroc": best_value,
        "share": {m: share_of_gap_closed(v, best_value, top) for m, v in aurocs.items()},
    }


def view_metric(key: str) -> str:
    """The protocol view (``Evaluation.samples`` metric) a ceiling time ranks: ``"2s"`` ->
    ``at_risk_2s``; ``"T"`` -> ``safe_prediction``."""
    return "safe_prediction" if key == "T" else f"at_risk_{key}"


def _seconds(key: str) -> float:
    return math.inf if key == "T" else float(key.rstrip("s"))


def paired_gap(
    ceiling: Mapping[str, Any],
    samples: Sequence[Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]],
    positions: Mapping[str, int],
    names: Sequence[str],
    baselines: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    reference: Mapping[str, Mapping[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """The ceiling and every method **on the same episodes**, per ceiling time and test group.

    ``samples[s]``: split seed s's ``Evaluation.samples`` (group -> metric -> ``ids`` (positions in
    the evaluated episode set), ``labels``, ``scores`` ``(M, n)`` in the order of ``names``);
    ``positions``: a ceiling episode key (``"ep12"``) -> its position in that episode set. Rows:
    every (seed, episode) whose episode the ceiling continued at that time (pending pushes left
    out) and that seed's view holds (an episode tested in two seeds counts twice, with each seed's
    scores). The ROC-AUC of the ceiling's P(fail) and of each method over those rows; the best
    baseline: the one ``reference`` ranks highest (``"group/metric"`` -> baseline -> its ROC-AUC on
    the whole test view, e.g. the mean over seeds), scored on the rows, or without a reference the
    highest on the rows themselves (the best of many on a few dozen rows is biased upwards); each
    method's share of the gap closed; a
    bootstrap over episodes (all rows of a drawn episode together) for the ceiling and for each
    method minus the best baseline. Raises :class:`DatasetError` when an episode's label differs
    from the ceiling's (another dataset)."""
    from .protocol import ci95, resample_counts, roc_auc, weighted_auroc

    names = list(names)
    out = []
    for key in sorted(ceiling.get("times") or {}, key=_seconds):
        p_fail: dict[int, tuple[float, bool]] = {}
        for row in (ceiling["times"][key] or {}).get("episodes") or []:
            if not row.get("push_pending") and row.get("key") in positions:
                p_fail[int(positions[row["key"]])] = (float(row["p_fail"]), bool(row["failed"]))
        metric = view_metric(key)
        for group in ("seen", "unseen"):
            ids, labels, cols, scores = [], [], [], []
            for smp in samples:
                d = (smp.get(group) or {}).get(metric)
                if d is None:
                    continue
                for c, (i, lab) in enumerate(zip(d["ids"], d["labels"], strict=True)):
                    if int(i) not in p_fail:
                        continue
                    if p_fail[int(i)][1] != bool(lab):
                        raise DatasetError(
                            f"episode at position {int(i)} failed={bool(lab)} in the evaluation but "
                            f"{p_fail[int(i)][1]} in the ceiling: the ceiling was measured on another dataset"
                        )
                    ids.append(int(i))
                    labels.append(bool(lab))
                    cols.append(p_fail[int(i)][0])
                    scores.append(np.asarray(d["scores"], dtype=np.float64)[:, c])
            if not ids:
                continue
            lab = np.array(labels, dtype=bool)
            mat = np.stack(scores, axis=1)  # (M, rows)
            auc = {n: roc_auc(lab, mat[k]) for k, n in enumerate(names)}
            ranking = (reference or {}).get(f"{group}/{metric}") or {
                b: auc.get(b, math.nan) for b in baselines
            }
            finite = [
                (float(ranking[b]), b)
                for b in baselines
                if b in auc and math.isfinite(ranking.get(b, math.nan))
            ]
            best = max(finite)[1] if finite else None
            best_value = auc[best] if best is not None else math.nan
            top = roc_auc(lab, np.array(cols))
            episodes = np.array(sorted(set(ids)))
            counts = resample_counts(episodes.size, n_boot, seed)[:, np.searchsorted(episodes, ids)]
            boot = weighted_auroc(lab, np.vstack([np.array(cols)[None], mat]), counts)
            diffs = {}
            if best is not None:
                b = names.index(best) + 1
                diffs = {n: list(ci95(boot[k + 1] - boot[b])) for k, n in enumerate(names)}
            out.append(
                {
                    "time": key,
                    "metric": metric,
                    "group": group,
                    "rows": len(ids),
                    "episodes": int(episodes.size),
                    "rows_failed": int(lab.sum()),
                    "ceiling": top,
                    "ceiling_ci95": list(ci95(boot[0])),
                    "auroc": auc,
                    "best_baseline": best,
                    "best_baseline_auroc": best_value,
                    "best_baseline_rule": "highest on the whole test view"
                    if reference
                    else "highest on these rows",
                    "minus_best_ci95": diffs,
                    "share": {n: share_of_gap_closed(v, best_value, top) for n, v in auc.items()},
                }
            )
    return out
