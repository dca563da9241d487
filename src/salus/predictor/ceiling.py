"""Reading the Monte-Carlo ceiling (``ceiling.json``, written by ``salus ceiling`` /
:func:`salus.collect.ceiling.run_ceiling`) for results tables: the ceiling ROC-AUC of an at-risk
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

from salus.errors import DatasetError, InvalidInputError

__all__ = ["CEILING_FILE", "load_ceiling", "ceiling_auroc", "share_of_gap_closed", "gap_closed", "time_key"]

CEILING_FILE = "ceiling.json"


def time_key(time: float | str) -> str:
    """The key of an at-risk time, as the protocol writes it: ``2.0`` or ``"2s"`` -> ``"2s"``."""
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
