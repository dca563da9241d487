"""Measurements that can rank detectors: seed-aggregated intervals that hold when seeds share test
episodes, the confound-free views (unperturbed, per perturbation condition, the condition-only
reference, at-risk events vs timeouts), SAFE's ROC-AUC at T split into prediction and detection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salus.predictor import Episode, EpisodeSet, synthetic_episodes
from salus.predictor.episodes import EpisodeSplit
from salus.predictor.evaluate import (
    COMPARATORS,
    REFERENCE_NAME,
    MethodScores,
    aggregate_seeds,
    evaluate_methods,
    reference_methods,
)
from salus.predictor.protocol import (
    ProtocolConfig,
    bootstrap_auroc,
    ci95,
    condition,
    resample_counts,
    roc_auc,
    running_max,
    safe_times,
    seed_interval,
    view_metrics,
    view_samples,
    weighted_auroc,
    wider,
)


def _half(ci):
    return (ci[1] - ci[0]) / 2


# ------------------------------------------------------------------------ seed-aggregated intervals
def test_weighted_auroc_equals_roc_auc_of_the_resample():
    rng = np.random.default_rng(0)
    labels = rng.random(120) < 0.4
    scores = np.round(labels + rng.normal(0, 1, 120), 1)  # with ties
    np.testing.assert_allclose(
        weighted_auroc(labels, scores, np.ones((1, 120)))[0, 0], roc_auc(labels, scores)
    )
    counts = resample_counts(120, 20, seed=3)
    assert np.all(counts.sum(axis=1) == 120)
    idx = np.random.default_rng(3).integers(0, 120, size=(20, 120))  # the same draws
    expect = [roc_auc(labels[i], scores[i]) for i in idx]
    np.testing.assert_allclose(weighted_auroc(labels, scores, counts)[0], expect)


def test_seed_interval_is_the_t_interval_and_wider_picks_the_widest():
    lo, hi = seed_interval([0.70, 0.72, 0.74])
    assert (lo + hi) / 2 == pytest.approx(0.72)
    assert (hi - lo) / 2 == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)
    assert all(math.isnan(v) for v in seed_interval([0.7]))
    assert wider((0.1, 0.2), (0.0, 0.5), (math.nan, math.nan)) == (0.0, 0.5)


def _shared_test_seeds(n_seeds=3, n_boot=400):
    """Seed evaluations whose test episodes are the same in every seed (as the unseen set is):
    one fixed split, scores that differ a little per seed (retraining), per-seed bootstraps with
    their own generators (``cfg.seed``), as ``salus train --split-seeds`` gives."""
    eps = synthetic_episodes(300, seed=11, n_baselines=0, embedding_dim=2)
    n = len(eps)
    unseen = tuple(i for i in range(n) if eps[i].task == "stack")
    rest = [i for i in range(n) if eps[i].task != "stack"]
    split = EpisodeSplit(
        train=tuple(rest[:60]),
        val=tuple(rest[60:90]),
        calib=tuple(rest[90:130]),
        test_seen=tuple(rest[130:]),
        test_unseen=unseen,
    )
    evs = []
    for s in range(n_seeds):
        rng = np.random.default_rng(100 + s)
        ours = {
            i: eps[i].signals[:, 0].astype(float) + 0.3 * rng.normal(size=eps[i].length) for i in range(n)
        }
        comp = {i: np.nan_to_num(eps[i].signals[:, 1].astype(float)) for i in range(n)}
        methods = [MethodScores("ours", "salus", ours), MethodScores("safe-mlp", "safe", comp)]
        cfg = ProtocolConfig(alphas=(0.2,), n_boot=n_boot, seed=s)
        evs.append(evaluate_methods(eps, split, methods, config=cfg))
    return evs


def test_seed_aggregate_interval_is_not_narrower_than_one_seed_when_seeds_share_test_episodes():
    evs = _shared_test_seeds()
    agg = aggregate_seeds([e.report for e in evs], [e.samples for e in evs])
    for g in ("seen", "unseen"):
        per_seed = np.median([_half(e.report["methods"][0][g]["ci95"]["safe"]) for e in evs])
        row = next(m for m in agg["methods"] if m["name"] == "ours")[f"{g}/safe"]
        assert _half(row["ci95_of_mean"]) >= 0.9 * per_seed, g
        assert row["ci95_of_mean"] == list(wider(row["ci95_shared_bootstrap"], row["ci95_seeds"]))
        # the old aggregation (per-seed replicate sets averaged) is about sqrt(3) too narrow here
        old = ci95(np.nanmean(np.stack([e.boot[g]["safe"][0] for e in evs]), axis=0))
        assert _half(old) < 0.75 * per_seed
        d_seed = np.median(
            [_half(e.report["comparisons"]["rows"]["safe-mlp"][f"{g}/safe"]["ci95"]) for e in evs]
        )
        d = agg["comparisons"]["safe-mlp"][f"{g}/safe"]
        assert _half(d["ci95"]) >= 0.9 * d_seed, g
    # the unseen set is the same in every seed: one resample of it, shared
    assert (
        evs[0].samples["unseen"]["safe"]["ids"].tolist() == evs[2].samples["unseen"]["safe"]["ids"].tolist()
    )


def test_seed_aggregate_widens_to_the_seed_spread():
    evs = _shared_test_seeds(n_boot=200)
    # a method whose seeds disagree far beyond the episode resampling: the seed interval wins
    for k, e in enumerate(evs):
        e.samples["seen"]["safe"]["scores"][0] = e.samples["seen"]["safe"]["labels"] * (k == 0)
        e.report["methods"][0]["seen"]["safe"]["auroc"] = 1.0 if k == 0 else 0.5
    agg = aggregate_seeds([e.report for e in evs], [e.samples for e in evs])
    row = next(m for m in agg["methods"] if m["name"] == "ours")["seen/safe"]
    assert row["ci95_of_mean"] == row["ci95_seeds"]
    assert _half(row["ci95_seeds"]) > _half(row["ci95_shared_bootstrap"])


# ------------------------------------------------------------------------------ confound views
def _perturbed_set(n=600, seed=2):
    """Synthetic episodes where perturbed episodes (push, light) fail far more often, visibly from
    step 0 (signal 5 is the perturbation's strength at every step)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cond = ("none", "push", "light")[i % 3]
        strength = 0.0 if cond == "none" else float(rng.uniform(0.25, 1.0))
        fail = rng.random() < (0.15 if cond == "none" else 0.7)
        T = int(rng.integers(60, 90)) if not fail else int(rng.integers(90, 140))
        sig = rng.normal(size=(T, 12)).astype(np.float32)
        sig[:, 5] = strength
        ftype, fstep = "none", -1
        if fail:
            ftype = ("drop", "timeout")[(i // 2) % 2]
            fstep = T - 1 if ftype == "timeout" else int(rng.integers(70, T))
        perts = [] if cond == "none" else [{"name": cond, "strength": strength, "params": {}}]
        out.append(
            Episode(
                sig,
                np.ones((T, 12), bool),
                success=not fail,
                failure_step=fstep,
                failure_type=ftype,
                task=("pick_place", "push")[i % 2],
                seed=i,
                perturbations=perts,
            )
        )
    return EpisodeSet(out)


def test_condition_of_an_episode():
    sig, val = np.zeros((5, 12), np.float32), np.ones((5, 12), bool)
    assert condition(Episode(sig, val, True, -1)) == "none"
    ep = Episode(
        sig,
        val,
        True,
        -1,
        perturbations=[{"name": "push", "strength": 0.4}, {"name": "light", "strength": 1}],
    )
    assert condition(ep) == "light+push"
    assert condition(Episode(sig, val, True, -1, perturbations=[{"name": "push", "strength": 0.0}])) == "none"


def test_a_condition_only_score_wins_pooled_but_is_chance_in_the_confound_free_views():
    es = _perturbed_set()
    eps = es.episodes
    run = [running_max(ep.signals[:, 5].astype(float)) for ep in eps]  # the perturbation, nothing else
    times = safe_times(eps)
    cfg = ProtocolConfig()
    views = view_metrics(eps, run, times, cfg)
    samples = view_samples(eps, run, times, cfg)
    assert roc_auc(samples["safe"][1], samples["safe"][2]) > 0.7  # pooled: the confound wins
    assert views["safe_unperturbed"]["auroc"] == 0.5  # constant among unperturbed episodes
    assert views["at_risk_2s_unperturbed"]["auroc"] == 0.5
    assert views["safe_unperturbed"]["n"] == sum(condition(ep) == "none" for ep in eps)
    assert views["conditions"] == {"light": 200, "none": 200, "push": 200}
    for c in ("push", "light"):  # within a condition the strength is uninformative here
        assert views[f"safe@{c}"]["auroc"] == pytest.approx(0.5, abs=0.12)
        assert views[f"safe@{c}"]["n"] == 200
    assert "safe@none" not in views  # that is the unperturbed view


def test_at_risk_split_into_event_failures_and_timeouts_against_the_same_negatives():
    eps = _perturbed_set().episodes
    run = [running_max((ep.failure_type == "timeout") * np.ones(ep.length)) for ep in eps]
    cfg = ProtocolConfig()
    v = view_metrics(eps, run, safe_times(eps), cfg)
    s = view_samples(eps, run, safe_times(eps), cfg)
    pos, lab, _ = s["at_risk_2s"]
    n_neg = int((~lab).sum())
    n_timeout = sum(eps[k].failure_type == "timeout" for k in pos[lab])
    assert v["at_risk_2s_timeout"]["n"] == n_neg + n_timeout and v["at_risk_2s_timeout"]["auroc"] == 1.0
    assert v["at_risk_2s_event"]["n"] == n_neg + int(lab.sum()) - n_timeout
    assert v["at_risk_2s_event"]["auroc"] == 0.5  # the score knows timeouts only
    assert v["at_risk_2s_event"]["n_failed"] + v["at_risk_2s_timeout"]["n_failed"] == int(lab.sum())


def test_safe_prediction_leaves_out_events_before_T_and_reads_T_minus_1():
    sig, val = np.zeros((40, 12), np.float32), np.ones((40, 12), bool)
    early = Episode(sig, val, False, 10, "drop", task="a")  # event before T = 30: detection territory
    late = Episode(sig, val, False, 35, "miss", task="a")
    timeout = Episode(sig, val, False, 39, "timeout", task="a")
    succ = Episode(sig[:30], val[:30], True, -1, task="a")
    eps = [early, late, timeout, succ]
    detect = np.zeros(40)
    detect[10:] = 1.0  # jumps at the event: a detector, not a predictor
    jump_at_T = np.r_[np.zeros(29), np.ones(11)]  # the observation of step T-1 = 29 only
    run = [running_max(x) for x in (detect, jump_at_T, np.zeros(40), np.zeros(30))]
    times = safe_times(eps)
    assert times == {"a": 30}
    v = view_metrics(eps, run, times, ProtocolConfig())
    assert v["safe_prediction"]["n"] == 3 and v["safe_prediction"]["n_failed"] == 2
    assert v["safe_prediction"]["auroc"] == 0.5  # step T-1 is not read; the early event is out
    assert v["event_before_T"]["k"] == 1 and v["event_before_T"]["n"] == 3
    assert v["event_before_T"]["share"] == pytest.approx(1 / 3)
    lo, hi = v["event_before_T"]["ci95"]
    assert lo < 1 / 3 < hi


def test_the_condition_only_reference_is_fitted_on_training_episodes_only():
    es = _perturbed_set()
    n = len(es)
    split = EpisodeSplit(tuple(range(0, 300)), (), tuple(range(300, 400)), tuple(range(400, n)), ())
    (ref,) = reference_methods(es, split, list(range(n)))
    assert ref.name == REFERENCE_NAME and REFERENCE_NAME in COMPARATORS
    assert all(np.all(s == s[0]) for s in ref.scores.values())  # one constant per episode
    p = {condition(es[i]): float(ref.scores[i][0]) for i in range(n) if es[i].task == "push"}
    assert p["push"] > p["none"] and p["light"] > p["none"]  # it learnt the confound
    # test labels change nothing (nothing is fitted on test data)
    flipped = EpisodeSet(
        [
            ep
            if i < 400
            else Episode(ep.signals, ep.valid, True, -1, task=ep.task, perturbations=ep.perturbations)
            for i, ep in enumerate(es.episodes)
        ]
    )
    (ref2,) = reference_methods(flipped, split, list(range(n)))
    for i in range(n):
        np.testing.assert_array_equal(ref.scores[i], ref2.scores[i])


def test_evaluation_reports_the_views_with_intervals_and_the_reference_row():
    es = _perturbed_set(n=300)
    n = len(es)
    held = tuple(i for i in range(n) if es[i].task == "push")
    rest = [i for i in range(n) if es[i].task != "push"]
    split = EpisodeSplit(tuple(rest[:60]), tuple(rest[60:80]), tuple(rest[80:110]), tuple(rest[110:]), held)
    ours = MethodScores("ours", "salus", {i: es[i].signals[:, 0].astype(float) for i in range(n)})
    methods = [ours, *reference_methods(es, split, list(range(n)))]
    ev = evaluate_methods(es, split, methods, config=ProtocolConfig(alphas=(0.2,), n_boot=100))
    rows = ev.report["comparisons"]["rows"]
    assert REFERENCE_NAME in rows
    for m in ev.report["methods"]:
        for g in ("seen", "unseen"):
            views = m[g]["views"]
            for key in ("safe_unperturbed", "at_risk_2s_unperturbed", "at_risk_2s_event", "safe_prediction"):
                lo, hi = m[g]["ci95"][key]
                assert lo <= views[key]["auroc"] <= hi, (m["name"], g, key)
    ref = next(m for m in ev.report["methods"] if m["name"] == REFERENCE_NAME)
    # seen = pick_place only: the reference is one constant on its unperturbed episodes
    assert ref["seen"]["views"]["safe_unperturbed"]["auroc"] == 0.5
    b = bootstrap_auroc(
        ev.samples["seen"]["safe_unperturbed"]["labels"],
        ev.samples["seen"]["safe_unperturbed"]["scores"],
        100,
        0,
    )
    np.testing.assert_array_equal(b, ev.boot["seen"]["safe_unperturbed"])


# -------------------------------------------------------------------------------------- markdown
def test_markdown_shows_the_confound_free_views_and_the_reference():
    from salus.predictor.tables import format_markdown

    es = _perturbed_set(n=300)
    n = len(es)
    held = tuple(i for i in range(n) if es[i].task == "push")
    rest = [i for i in range(n) if es[i].task != "push"]
    split = EpisodeSplit(tuple(rest[:60]), tuple(rest[60:80]), tuple(rest[80:110]), tuple(rest[110:]), held)
    ours = MethodScores("ours", "salus", {i: es[i].signals[:, 0].astype(float) for i in range(n)})
    ev = evaluate_methods(
        es, split, [ours, *reference_methods(es, split, list(range(n)))], config=ProtocolConfig(n_boot=50)
    )
    md = format_markdown(ev.report)
    assert "## Confound-free views" in md and "seen SAFE prediction (T-1)" in md
    assert "| reference:condition |" in md  # in the comparison table and in every method table
    assert md.count("| reference:condition |") >= 4
    views = ev.report["methods"][0]["seen"]["views"]
    for c in ("light", "push"):  # one column per perturbation condition, with its counts
        assert f"{c} ({views[f'safe@{c}']['n']}, {views[f'safe@{c}']['n_failed']})" in md
    e = views["event_before_T"]
    assert f"({e['k']}/{e['n']};" in md


def _benchmark_md(evs):
    from salus.predictor.tables import format_benchmark

    agg = aggregate_seeds([e.report for e in evs], [e.samples for e in evs], n_boot=100)
    return agg, format_benchmark(agg, [e.report for e in evs], commands=["salus benchmark"])


def _type_goal_row(md):
    return next(line for line in md.splitlines() if line.startswith("| per-type ROC-AUC"))


def test_the_type_goal_is_computed_from_the_numbers():
    evs = _shared_test_seeds(n_boot=100)
    agg, md = _benchmark_md(evs)
    row = _type_goal_row(md)
    types = evs[0].report["methods"][0]["seen"]["types"]
    assert all(v["n"] > 0 and math.isfinite(v["auroc"]) for v in types.values())
    assert row.endswith("| yes |")
    mean_drop = np.mean([e.report["methods"][0]["seen"]["types"]["drop"]["auroc"] for e in evs])
    assert f"drop {mean_drop:.3f}" in row
    # one seed without a finite per-type ROC-AUC: the goal is not met
    evs[1].report["methods"][0]["seen"]["types"]["miss"]["auroc"] = math.nan
    _, md = _benchmark_md(evs)
    row = _type_goal_row(md)
    assert row.endswith("| no |") and "not measured for miss" in row
    assert "## Confound-free views (mean over seeds" in md
    assert "shared by every seed" in md


def test_the_goals_table_is_written_when_the_seeds_pick_different_models():
    """Each seed's pick is "ours" (as in the headline): recall and SAFE are the mean over seeds of
    each seed's own pick's value, not one model's."""
    from salus.predictor.tables import _goal_lines

    def row(name: str, safe: list[float], recall: list[float]) -> dict:
        def v(x: list[float]) -> dict:
            return {"mean": sum(x) / len(x), "min": min(x), "max": max(x), "values": x}

        return {"name": name, "seen/safe": v(safe), "unseen/safe": v(safe),
                "seen/band@0.1/event_recall_0.5s": v(recall), "seen/band@0.1/fpr": v([0.1, 0.1])}  # fmt: skip

    delta = {"delta": 0.1, "ci95": [0.02, 0.2]}
    agg = {
        "selected": ["salus-trees", "salus-risk"],
        "methods": [row("salus-trees", [0.9, 0.1], [0.7, 0.0]), row("salus-risk", [0.2, 0.7], [0.0, 0.5])],
        "comparisons": {"safe-lstm": {k: delta for k in ("seen/safe", "seen/at_risk_2s", "unseen/safe")}},
    }
    text = "\n".join(_goal_lines(agg))
    assert "## Goals" in text and "the validation pick beats every comparator on seen/safe" in text
    assert "recall 0.60, FPR 0.10" in text  # (0.7 of seed 0's pick + 0.5 of seed 1's) / 2
    assert "the validation pick 0.800 / 0.800" in text  # (0.9 + 0.7) / 2
    assert _goal_lines({**agg, "selected": ["salus-trees", None]}) == []
