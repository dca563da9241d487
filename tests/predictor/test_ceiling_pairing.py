"""The ceiling table pairs the ceiling with every method on the same (seed, episode) rows."""

from __future__ import annotations

import numpy as np
import pytest

from salus.errors import DatasetError
from salus.predictor.ceiling import paired_gap
from salus.predictor.tables import ceiling_lines

NAMES = ["ours", "knn", "gbt"]


def _ceiling(rows):
    return {
        "k": 8,
        "sample": {"rule": "uniform", "pool": "every episode"},
        "times": {"2s": {"episodes": rows}},
    }


def _row(pos, failed, p, push=False):
    return {"key": f"ep{pos}", "failed": failed, "p_fail": p, "push_pending": push}


def _sample(ids, labels, scores):
    return {
        "ids": np.array(ids),
        "labels": np.array(labels, dtype=bool),
        "scores": np.array(scores, dtype=float),
    }


def test_rows_are_the_ceiling_episodes_each_seed_tested_with_that_seeds_scores():
    positions = {f"ep{i}": i for i in range(10)}
    ceiling = _ceiling(
        [_row(0, True, 1.0), _row(1, False, 0.0), _row(2, True, 0.75), _row(3, False, 0.25), _row(4, True, 0.0, push=True)]
    )  # fmt: skip
    # seed 0 tests episodes 0-5 (5 and 6 not continued; 4's push pending), seed 1 tests 2, 3, 7
    s0 = {"seen": {"at_risk_2s": _sample([0, 1, 2, 3, 4, 5], [1, 0, 1, 0, 1, 0], [
        [0.9, 0.1, 0.8, 0.2, 0.0, 0.5],  # ours: perfect on the ceiling's rows
        [0.1, 0.9, 0.2, 0.8, 0.5, 0.5],  # knn: reversed
        [0.6, 0.4, 0.4, 0.6, 0.5, 0.5],  # gbt: half
    ])}}  # fmt: skip
    s1 = {
        "seen": {
            "at_risk_2s": _sample([2, 3, 7], [1, 0, 0], [[0.3, 0.7, 0.0], [0.5, 0.5, 0.0], [0.9, 0.1, 0.0]])
        }
    }
    (r,) = paired_gap(ceiling, [s0, s1], positions, NAMES, ["knn", "gbt"], n_boot=200)
    assert (r["group"], r["metric"], r["rows"], r["episodes"], r["rows_failed"]) == (
        "seen",
        "at_risk_2s",
        6,
        4,
        3,
    )
    # rows (label, ceiling, ours, knn, gbt): seed 0 eps 0-3, then seed 1 eps 2, 3
    from salus.predictor.protocol import roc_auc

    lab = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    assert r["ceiling"] == pytest.approx(roc_auc(lab, np.array([1.0, 0.0, 0.75, 0.25, 0.75, 0.25])))
    assert r["auroc"]["ours"] == pytest.approx(roc_auc(lab, np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.7])))
    assert r["auroc"]["gbt"] == pytest.approx(roc_auc(lab, np.array([0.6, 0.4, 0.4, 0.6, 0.9, 0.1])))
    assert r["best_baseline"] == "gbt" and r["ceiling"] == 1.0
    share = (r["auroc"]["ours"] - r["auroc"]["gbt"]) / (1.0 - r["auroc"]["gbt"])
    assert r["share"]["ours"] == pytest.approx(share) and r["share"]["gbt"] == 0.0
    lo, hi = r["minus_best_ci95"]["ours"]
    assert lo <= r["auroc"]["ours"] - r["auroc"]["gbt"] <= hi
    # with the whole view's ranking the reference is that view's best (knn here), scored on the rows
    (ranked,) = paired_gap(
        ceiling,
        [s0, s1],
        positions,
        NAMES,
        ["knn", "gbt"],
        n_boot=0,
        reference={"seen/at_risk_2s": {"knn": 0.7, "gbt": 0.6}},
    )
    assert ranked["best_baseline"] == "knn" and ranked["best_baseline_auroc"] == ranked["auroc"]["knn"]
    assert ranked["best_baseline_rule"] == "highest on the whole test view"
    md = "\n".join(ceiling_lines(ceiling, [r], ["ours"]))
    assert "| 2s | seen | 6: 4 (3 / 3) | 1.00 (1.00-1.00) | gbt " in md and f"(share {share:.2f};" in md


def test_T_reads_the_prediction_view_and_a_label_that_differs_is_refused():
    ceiling = {"k": 8, "times": {"T": {"episodes": [_row(0, True, 0.9), _row(1, False, 0.1)]}}}
    smp = {"unseen": {"safe_prediction": _sample([0, 1], [1, 0], [[0.7, 0.2], [0.5, 0.5], [0.1, 0.9]])}}
    (r,) = paired_gap(ceiling, [smp], {"ep0": 0, "ep1": 1}, NAMES, ["knn", "gbt"], n_boot=0)
    assert (r["time"], r["metric"], r["group"], r["ceiling"], r["auroc"]["ours"]) == (
        "T",
        "safe_prediction",
        "unseen",
        1.0,
        1.0,
    )
    bad = {"unseen": {"safe_prediction": _sample([0, 1], [0, 0], [[0.7, 0.2], [0.5, 0.5], [0.1, 0.9]])}}
    with pytest.raises(DatasetError, match="another dataset"):
        paired_gap(ceiling, [bad], {"ep0": 0, "ep1": 1}, NAMES, ["knn"], n_boot=0)
