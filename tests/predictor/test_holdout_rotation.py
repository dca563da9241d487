"""Leave-one-task-out: the rotated held-out task, the seed aggregate over different unseen tasks, and
the per-split refit of ood_distance's statistics (no held-out episode may influence them)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from salus.errors import InvalidInputError, InvalidNameError
from salus.predictor import SplitConfig, split_episodes, synthetic_episodes
from salus.predictor.config import holdout_for_seed
from salus.predictor.episodes import EpisodeSet, split_statistics
from salus.predictor.evaluate import MethodScores, aggregate_seeds, evaluate_methods
from salus.predictor.protocol import ProtocolConfig, roc_auc, running_max, safe_times, score_at
from salus.predictor.tables import format_benchmark
from salus.signals import SIGNAL_NAMES, SignalExtractor

TASKS = ("pick_place", "push", "stack", "pick_color")


def _episodes(n: int = 160, seed: int = 3) -> EpisodeSet:
    eps = synthetic_episodes(n, seed=seed, tasks=TASKS, embedding_dim=8, failure_rate=0.45)
    rng = np.random.default_rng(0)
    packaged = SignalExtractor(1).fit(rng.normal(size=(200, 8))).state_dict()  # "fitted on every task"
    packaged["meta"] = {"tasks": list(TASKS)}
    return EpisodeSet(
        episodes=eps.episodes,
        signal_names=SIGNAL_NAMES,
        baseline_names=eps.baseline_names,
        extractor_statistics=packaged,
        control_hz=eps.control_hz,
        source="synthetic",
    )


def test_rotation_holds_out_each_task_once_and_never_trains_on_it():
    eps = _episodes()
    held = [holdout_for_seed(("rotate",), eps.tasks, j) for j in range(4)]
    assert sorted(t for h in held for t in h) == sorted(TASKS)  # each task unseen exactly once
    assert held[0] == (sorted(TASKS)[0],)
    for j, (seed, h) in enumerate(zip((0, 1, 2, 3), held, strict=True)):
        split = split_episodes(eps, SplitConfig(holdout_tasks=h, seed=seed))
        for part in ("train", "val", "calib", "test_seen"):
            tasks = {eps[i].task for i in getattr(split, part)}
            assert h[0] not in tasks, (j, part)
            assert tasks == set(TASKS) - set(h), (j, part)  # every other task is seen
        assert {eps[i].task for i in split.test_unseen} == set(h)
        assert len(split.test_unseen) == sum(ep.task == h[0] for ep in eps.episodes)
    assert holdout_for_seed(("rotate",), eps.tasks, 5) == held[1]  # modulo the number of tasks
    with pytest.raises(InvalidNameError, match="holdout task 'juggle'.*pick_color.*stack"):
        holdout_for_seed(("juggle",), eps.tasks, 0)
    with pytest.raises(InvalidNameError):
        split_episodes(eps, SplitConfig(holdout_tasks=("juggle",)))
    with pytest.raises(InvalidInputError, match="cannot be combined"):
        holdout_for_seed(("rotate", "push"), eps.tasks, 0)
    with pytest.raises(InvalidInputError, match="per split seed"):
        SplitConfig(holdout_tasks=("rotate",))


def _evaluation(eps: EpisodeSet, seed: int, holdout: tuple[str, ...]):
    split = split_episodes(eps, SplitConfig(holdout_tasks=holdout, seed=seed, calib_fraction=0.3))
    rng = np.random.default_rng(seed)
    # informative on "push" and "stack" only: per-task unseen numbers must differ
    scores = {
        i: np.arange(ep.length) * 0.0
        + (ep.failed * (ep.task in ("push", "stack")))
        + rng.normal(size=ep.length)
        for i, ep in enumerate(eps.episodes)
    }
    methods = [
        MethodScores("ours", "salus", scores),
        MethodScores("reference:condition", "reference", scores),
    ]
    cfg = ProtocolConfig(control_hz=eps.control_hz, seed=seed, n_boot=200)
    return split, evaluate_methods(eps, split, methods, config=cfg)


def test_aggregate_over_seeds_with_different_unseen_tasks():
    eps = _episodes(240, seed=5)
    evs, splits = [], []
    for j, seed in enumerate((0, 1, 2, 3)):
        split, ev = _evaluation(eps, seed, holdout_for_seed(("rotate",), eps.tasks, j))
        evs.append(ev)
        splits.append(split)
    agg = aggregate_seeds([e.report for e in evs], [e.samples for e in evs], n_boot=200)
    assert agg["unseen_tasks"] == [[t] for t in sorted(TASKS)]
    times = safe_times(eps.episodes)
    own = []
    for split, ev in zip(splits, evs, strict=True):  # each seed on its own held-out task's episodes
        idx = list(split.test_unseen)
        direct = roc_auc(
            np.array([eps[i].failed for i in idx]),
            np.array([score_at(running_max(ev.methods[0].scores[i]), times[eps[i].task]) for i in idx]),
        )
        assert ev.report["methods"][0]["unseen"]["safe"]["auroc"] == pytest.approx(direct)
        own.append(direct)
    row = next(m for m in agg["methods"] if m["name"] == "ours")["unseen/safe"]
    assert row["values"] == pytest.approx(own)
    assert row["mean"] == pytest.approx(float(np.mean(own)))
    assert np.std(own) > 0.05  # the held-out tasks really differ, so the rows below can tell them apart
    lo, hi = row["ci95_of_mean"]
    for other in (row["ci95_shared_bootstrap"], row["ci95_seeds"]):  # the wider of the two
        assert lo <= other[0] + 1e-12 and hi >= other[1] - 1e-12
    assert [lo, hi] in (row["ci95_shared_bootstrap"], row["ci95_seeds"])
    by_task = {tuple(r["tasks"]): r["methods"]["ours"]["safe"]["auroc"] for r in agg["unseen_by_task"]}
    assert by_task == pytest.approx({(t,): v for t, v in zip(sorted(TASKS), own, strict=True)})
    md = format_benchmark(agg, [e.report for e in evs], commands=["salus benchmark"])
    assert "leave-one-task-out" in md and "## Unseen, per held-out task" in md
    for s, t in zip((0, 1, 2, 3), sorted(TASKS), strict=True):
        assert f"seed {s} {t}" in md
        assert any(line.startswith(f"| {s} | {t} |") for line in md.splitlines())


def _ood(eps: EpisodeSet, i: int) -> np.ndarray:
    return eps[i].signals[:, SIGNAL_NAMES.index("ood_distance")]


def test_ood_statistics_come_from_the_training_part_only():
    eps = _episodes()
    split = split_episodes(eps, SplitConfig(holdout_tasks=("stack",), seed=0))
    view = split_statistics(eps, split)
    refit = view.extractor_statistics["meta"]["ood_refit"]
    assert "stack" not in refit["tasks"] and refit["episodes"] == sum(eps[i].success for i in split.train)
    probe = split.test_unseen[0]
    assert not np.allclose(_ood(view, probe), _ood(eps, probe))  # not the packaged (all-task) column

    def moved(indices) -> EpisodeSet:  # the same set with these episodes' embeddings shifted far away
        out = list(eps.episodes)
        for i in indices:
            out[i] = replace(out[i], embedding=out[i].embedding + 50.0, cache={})
        return replace(eps, episodes=out)

    not_train = [*split.test_unseen, *split.val, *split.calib, *split.test_seen]
    others = [i for i in split.test_unseen if i != probe]
    after = split_statistics(moved(others), split)
    assert np.array_equal(_ood(after, probe), _ood(view, probe))  # held-out episodes: no influence
    after = split_statistics(moved([i for i in not_train if i != probe]), split)
    assert np.array_equal(_ood(after, probe), _ood(view, probe))  # nor val, calib or test ones
    train_success = [i for i in split.train if eps[i].success]
    after = split_statistics(moved(train_success[:5]), split)
    assert not np.allclose(_ood(after, probe), _ood(view, probe))  # training successes do: it can fail
    assert split_statistics(view, split) is view and split_statistics(eps, split) is view


def test_recomputed_ood_column_is_the_live_signal():
    eps = _episodes(8)
    split = split_episodes(eps, SplitConfig(seed=0, val_fraction=0.2, calib_fraction=0.2, test_fraction=0.2))
    view = split_statistics(eps, split)
    ex = SignalExtractor(1)
    ex.load_state_dict(view.extractor_statistics)
    ep = view[0]
    live = ex.ood.distance(ep.embedding) / math.sqrt(ep.embedding.shape[1])
    assert np.allclose(_ood(view, 0), live, rtol=1e-5)
    assert view[0].valid[:, SIGNAL_NAMES.index("ood_distance")].all()
