"""Choosing our model: validation when it is large enough, else k-fold cross-validation over the
training and validation episodes; never calibration or test episodes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from salus.errors import InvalidInputError, InvalidNameError
from salus.predictor import EpisodeSet, ModelConfig, TrainConfig, synthetic_episodes, train_model
from salus.predictor.episodes import EpisodeSplit
from salus.predictor.selection import CV_BELOW, cv_folds, select_model, selection_rule

torch.set_num_threads(1)


def _set(n=150, seed=6):
    es = synthetic_episodes(n, seed=seed, informative=1.5)
    split = EpisodeSplit(
        tuple(range(0, 80)), tuple(range(80, 100)), tuple(range(100, 125)), tuple(range(125, n)), ()
    )
    return es, split


def test_the_rule_follows_the_validation_size():
    assert selection_rule("auto", CV_BELOW) == "validation"
    assert selection_rule("auto", CV_BELOW - 1) == "cross-validation"
    assert selection_rule("validation", 3) == "validation"
    with pytest.raises(InvalidNameError, match="cross-validation"):
        selection_rule("best-on-test", 100)


def test_folds_keep_seeds_together_and_hold_both_outcomes():
    es, split = _set()
    eps = list(es.episodes)
    eps[3] = dataclasses.replace(eps[3], seed=eps[4].seed)  # two episodes of one seed
    es = EpisodeSet(eps, signal_names=es.signal_names, baseline_names=es.baseline_names)
    pool = (*split.train, *split.val)
    folds = cv_folds(es, pool, 5, seed=1)
    assert sorted(i for f in folds for i in f) == sorted(pool)
    assert any(3 in f and 4 in f for f in folds)
    assert all({es[i].failed for i in f} == {True, False} for f in folds)
    assert folds == cv_folds(es, pool, 5, seed=1) and folds != cv_folds(es, pool, 5, seed=2)
    with pytest.raises(InvalidInputError, match="folds"):
        cv_folds(es, pool[:3], 5)


@pytest.fixture(scope="module")
def trained():
    es, split = _set()
    cfg = TrainConfig(max_epochs=2, patience=2)
    models = [
        train_model(es, ModelConfig(name="salus-mlp", mlp_hidden=(16,), dropout=0.0), cfg, split=split),
        train_model(es, ModelConfig(name="salus-trees", trees=20, tree_min_leaf=20), cfg, split=split),
        train_model(es, ModelConfig(name="safe-mlp", safe_hidden=(16,)), cfg, split=split),
    ]
    return es, split, models


def test_cross_validation_ranks_the_salus_models_on_out_of_fold_scores(trained):
    es, split, models = trained
    sel = select_model(es, split, models, rule="cross-validation", k=3)
    assert sel["rule"] == "cross-validation" and sel["folds"] == 3
    assert set(sel["scores"]) == {"salus-mlp", "salus-trees"}  # safe-mlp is a baseline, never ours
    assert sel["selected"] == max(sel["scores"], key=sel["scores"].get)
    assert sel["n_episodes"] == len(split.train) + len(split.val)
    assert set(sel["val_auroc_T"]) == {"salus-mlp", "salus-trees"}
    # the planted drift is found out of fold
    assert max(sel["scores"].values()) > 0.7
    one = select_model(es, split, [models[0], models[2]], rule="cross-validation")
    assert (one["rule"], one["selected"]) == ("only candidate", "salus-mlp")  # nothing to rank, no retraining
    val = select_model(es, split, models, rule="validation")
    assert val["rule"] == "validation" and val["scores"] == val["val_auroc_T"]


def test_selection_never_reads_calibration_or_test_labels(trained):
    es, split, models = trained
    a = select_model(es, split, models, rule="cross-validation", k=3)
    flipped = EpisodeSet(
        [
            ep
            if i < 100
            else dataclasses.replace(ep, success=not ep.success, failure_step=-1 if ep.failed else ep.length - 1,
                                     failure_type="none" if ep.failed else "timeout")
            for i, ep in enumerate(es.episodes)
        ],
        signal_names=es.signal_names,
        baseline_names=es.baseline_names,
    )  # fmt: skip
    b = select_model(flipped, split, models, rule="cross-validation", k=3)
    assert a["scores"] == b["scores"]
    # while the training labels do count (the check can fail)
    relabel = EpisodeSet(
        [
            dataclasses.replace(ep, success=not ep.success, failure_step=-1 if ep.failed else ep.length - 1,
                                failure_type="none" if ep.failed else "timeout")
            if i < 60
            else ep
            for i, ep in enumerate(es.episodes)
        ],
        signal_names=es.signal_names,
        baseline_names=es.baseline_names,
    )  # fmt: skip
    c = select_model(relabel, split, models, rule="cross-validation", k=3)
    assert c["scores"] != a["scores"]
    assert np.isfinite(list(c["scores"].values())).all()


def test_max_train_keeps_a_nested_proportional_subsample_and_the_rest_of_the_split():
    from salus.predictor import SplitConfig
    from salus.predictor.episodes import split_episodes

    es = synthetic_episodes(400, seed=9)
    full = split_episodes(es, SplitConfig(seed=3))
    small = split_episodes(es, SplitConfig(seed=3, max_train=40))
    mid = split_episodes(es, SplitConfig(seed=3, max_train=100))
    for part in ("val", "calib", "test_seen", "test_unseen"):
        assert getattr(small, part) == getattr(full, part) == getattr(mid, part)
    assert len(small.train) <= 40 < len(mid.train) <= 100 < len(full.train)
    assert set(small.train) <= set(mid.train) <= set(full.train)  # nested
    rate = np.mean([es[i].failed for i in full.train])
    assert abs(np.mean([es[i].failed for i in mid.train]) - rate) < 0.05  # outcomes in proportion
    assert split_episodes(es, SplitConfig(seed=3, max_train=10_000)) == full
    with pytest.raises(InvalidInputError, match="max_train"):
        SplitConfig(max_train=-1)
