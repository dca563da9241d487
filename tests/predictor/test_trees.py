"""salus-trees: gradient-boosted trees held as tensors (safetensors checkpoint, no scikit-learn at
run time), trained on pre-event steps with the number of iterations chosen on validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salus.predictor import ModelConfig, TrainConfig, TrainedPredictor, synthetic_episodes, train_model
from salus.predictor.episodes import EpisodeSplit
from salus.predictor.models import SalusTrees
from salus.predictor.protocol import at_risk_auroc, running_max

torch.set_num_threads(1)


def test_the_tensor_ensemble_equals_scikit_learn():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 7))
    y = (x[:, 0] * x[:, 1] + 0.5 * x[:, 2] ** 2 + 0.3 * rng.normal(size=3000)) > 0.4
    clf = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=9, random_state=0).fit(x, y)
    net = SalusTrees(ModelConfig(name="salus-trees", trees=40, tree_leaves=9), 7)
    net.load_sklearn(clf)
    xt = rng.normal(size=(500, 7))
    got = net.tree_logits(torch.from_numpy(xt)).numpy()
    np.testing.assert_allclose(got, clf.decision_function(xt), rtol=1e-9, atol=1e-9)
    # only the first n trees
    net.load_sklearn(clf, 10)
    staged = list(clf.staged_decision_function(xt))[9]
    np.testing.assert_allclose(net.tree_logits(torch.from_numpy(xt)).numpy(), staged, rtol=1e-9, atol=1e-9)
    small = SalusTrees(ModelConfig(name="salus-trees", trees=5, tree_leaves=9), 7)
    with pytest.raises(ValueError, match="the config allows 5"):
        small.load_sklearn(clf)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    es = synthetic_episodes(160, seed=4, informative=1.5)
    n = len(es)
    split = EpisodeSplit(
        tuple(range(90)), tuple(range(90, 110)), tuple(range(110, 130)), tuple(range(130, n)), ()
    )
    cfg = ModelConfig(name="salus-trees", trees=60, tree_min_leaf=20)
    p = train_model(es, cfg, TrainConfig(), split=split)
    d = p.save(tmp_path_factory.mktemp("trees") / "salus-trees")
    return es, split, p, d


def test_trees_learn_the_planted_drift_and_keep_the_validation_choice(trained):
    es, split, p, _ = trained
    best = p.meta["training"]["best_epoch"]
    assert 1 <= best <= 60
    assert int((p.model.value.abs().sum(dim=1) > 0).sum()) <= best  # trees after the choice are empty
    test = [es[i] for i in split.test_seen]
    scores = p.episode_scores(test)
    res = at_risk_auroc(test, [running_max(s) for s in scores], 60)
    assert res["auroc"] > 0.65, res  # chance is 0.5 (29 episodes at risk)
    # on the probability (the score adds a time ramp, and failed rollouts are longer)
    end = np.array([running_max(q[:, 0])[-1] for q in p.episode_probs(test)])
    failed = np.array([ep.failed for ep in test])
    assert end[failed].mean() > end[~failed].mean() + 0.1
    assert p.meta["conformal"]["bands"]


def test_trees_checkpoint_round_trip_and_streaming_equal_the_sequence_path(trained):
    es, split, p, d = trained
    assert sorted(f.name for f in d.iterdir() if f.suffix == ".pkl") == []
    q = TrainedPredictor.load(d)
    eps = [es[i] for i in split.test_seen[:5]]
    for a, b in zip(p.episode_scores(eps), q.episode_scores(eps), strict=True):
        np.testing.assert_array_equal(a, b)
    feats = q.features(eps[0])
    state = q.model.init_state(1)
    live = [float(q.model.step(torch.from_numpy(f[None]), state)[0][0, 0]) for f in feats]
    np.testing.assert_allclose(live, q.episode_probs(eps[:1])[0][:, 0], rtol=0, atol=1e-7)


def test_trees_config_is_checked():
    from salus.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="trees must be >= 1"):
        ModelConfig(name="salus-trees", trees=0)
    with pytest.raises(InvalidInputError, match="tree_lr"):
        ModelConfig(name="salus-trees", tree_lr=float("nan"))
    with pytest.raises(InvalidInputError, match="objective"):
        ModelConfig(name="salus-trees", objective="horizons")
