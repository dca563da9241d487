"""Training learns, is reproducible, checkpoints round-trip (and refuse incomplete ones), and the
streaming inference API reproduces the evaluation scores and alarms."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from salus.errors import CheckpointError, DatasetError, InvalidInputError, InvalidNameError
from salus.predictor import (
    FailurePredictor,
    ModelConfig,
    SplitConfig,
    TrainConfig,
    TrainedPredictor,
    running_max,
    split_episodes,
    synthetic_episodes,
    train_model,
)
from salus.predictor.checkpoint import REQUIRED_KEYS
from salus.predictor.episodes import EpisodeSet
from salus.predictor.features import FeatureSpace
from salus.predictor.protocol import safe_metrics, safe_times

from .helpers import extractor_state

SMALL = {"mlp_hidden": (32, 32), "tcn_channels": 16, "safe_hidden": (32,), "lstm_hidden": 16}
TCFG = TrainConfig(
    max_epochs=8, patience=3, batch_episodes=16, lr=3e-3, split=SplitConfig(holdout_tasks=("stack",))
)


@pytest.fixture(scope="module")
def data():
    eps = synthetic_episodes(240, seed=5, embedding_dim=16)
    eps.extractor_statistics = extractor_state()
    return eps


@pytest.fixture(scope="module")
def split(data):
    return split_episodes(data, TCFG.split)


@pytest.fixture(scope="module")
def risk(data, split):
    return train_model(data, ModelConfig(name="salus-risk", gru_hidden=16, pca=4), TCFG, split=split)


@pytest.fixture(scope="module")
def tcn(data, split):
    return train_model(data, ModelConfig.of("salus-tcn", **SMALL), TCFG, split=split)


def test_split_is_by_episode_and_holds_out_tasks(data, split):
    parts = split.to_dict()
    seen = [i for k in ("train", "val", "calib", "test_seen") for i in parts[k]]
    assert len(seen) == len(set(seen))
    assert sorted(seen + parts["test_unseen"]) == list(range(len(data)))
    assert {data[i].task for i in split.test_unseen} == {"stack"}
    assert "stack" not in {data[i].task for i in split.train + split.val + split.calib}


def test_episodes_sharing_a_seed_stay_together():
    eps = synthetic_episodes(90, seed=9, n_baselines=0, embedding_dim=2)
    for i, ep in enumerate(eps.episodes):
        ep.seed = i // 3  # three rollouts (different outcomes) per initial state
    parts = split_episodes(eps, SplitConfig(seed=3)).to_dict()
    where = {i: k for k, idx in parts.items() for i in idx}
    for s in range(30):
        assert len({where[3 * s + j] for j in range(3)}) == 1


def test_rare_successes_reach_every_part_in_proportion():
    eps = synthetic_episodes(400, seed=2, failure_rate=0.9, n_baselines=0, embedding_dim=2, tasks=("a", "b"))
    cfg = SplitConfig(calib_fraction=0.3)
    parts = split_episodes(eps, cfg).to_dict()
    n_succ = sum(ep.success for ep in eps.episodes)
    for part, frac in (("calib", 0.3), ("val", 0.1), ("test_seen", 0.25)):
        got = sum(eps[i].success for i in parts[part])
        assert abs(got - frac * n_succ) <= 2, (part, got, frac * n_succ)
        for task in ("a", "b"):  # and per task
            n_task = sum(ep.success and ep.task == task for ep in eps.episodes)
            got_task = sum(eps[i].success and eps[i].task == task for i in parts[part])
            assert abs(got_task - frac * n_task) <= 2


def test_temporal_model_learns_failures_before_they_happen(data, split, tcn):
    test = [data[i] for i in split.test_seen]
    scores = [running_max(s) for s in tcn.episode_scores(test)]
    assert safe_metrics(test, scores, safe_times(data.episodes))["auroc"] > 0.6  # chance is 0.5
    hist = tcn.meta["training"]["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert 1 <= tcn.meta["training"]["best_epoch"] <= len(hist)


def test_same_seed_same_numbers_other_seed_differs(data, split):
    cfg = ModelConfig.of("salus-mlp", **SMALL)
    tc = TrainConfig(max_epochs=2, patience=2, batch_episodes=32)
    a = train_model(data, cfg, tc, split=split)
    b = train_model(data, cfg, tc, split=split)
    c = train_model(data, cfg, TrainConfig(max_epochs=2, patience=2, batch_episodes=32, seed=1), split=split)
    sa, sb, sc = (p.episode_scores([data[0]])[0] for p in (a, b, c))
    np.testing.assert_array_equal(sa, sb)
    assert a.meta["training"]["history"] == b.meta["training"]["history"]
    assert a.meta["conformal"] == b.meta["conformal"]
    assert not np.array_equal(sa, sc)


@pytest.mark.parametrize("name", ["safe-mlp", "safe-lstm"])
def test_safe_models_train_on_embeddings(data, split, name):
    p = train_model(data, ModelConfig.of(name, **SMALL), TrainConfig(max_epochs=3, patience=2), split=split)
    s = p.episode_scores([data[i] for i in split.test_seen])
    assert all(np.all((x >= 0) & (x <= 1)) for x in s)
    assert p.meta["normalization"]["kind"] == "embedding"
    assert p.meta["normalization"]["source"] == "obs_embedding"  # no hidden_mean recorded: the embedding


def test_safe_models_read_hidden_mean_when_recorded(data, split, tmp_path):
    """SAFE's own feature when every episode records it (the input width follows it); a checkpoint
    whose source names no recorded vector is refused at load."""
    from dataclasses import replace

    rng = np.random.default_rng(0)
    with_mean = EpisodeSet(
        [replace(ep, hidden_mean=rng.normal(size=(ep.length, 5)).astype(np.float32)) for ep in data.episodes],
        signal_names=data.signal_names,
        baseline_names=data.baseline_names,
        extractor_statistics=data.extractor_statistics,
    )
    cfg = ModelConfig.of("safe-mlp", **SMALL)
    p = train_model(with_mean, cfg, TrainConfig(max_epochs=1, patience=1), split=split)
    assert p.meta["normalization"]["source"] == "hidden_mean" and p.meta["model"]["in_dim"] == 5
    ep = with_mean[split.test_seen[0]]
    shifted = replace(ep, hidden_mean=ep.hidden_mean + 3.0)  # type: ignore[operator]
    assert not np.allclose(p.episode_scores([ep])[0], p.episode_scores([shifted])[0])
    with pytest.raises(InvalidInputError, match="hidden_mean"):
        p.episode_scores([data[split.test_seen[0]]])  # the same episode without SAFE's feature
    d = p.save(tmp_path / "safe")
    meta = json.loads((d / "predictor.json").read_text())
    meta["normalization"]["source"] = "hidden_max"
    (d / "predictor.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="source must be one of .'obs_embedding', 'hidden_mean'"):
        TrainedPredictor.load(d)


def test_training_refuses_single_class(data):
    succ = synthetic_episodes(40, seed=1, failure_rate=0.0)
    with pytest.raises(DatasetError, match="successes and failures"):
        train_model(succ, ModelConfig(name="salus-mlp"), TrainConfig(max_epochs=1))
    with pytest.raises(InvalidNameError, match="holdout task .juggle.*pick_place"):
        split_episodes(data, SplitConfig(holdout_tasks=("juggle",)))


def test_checkpoint_roundtrip_and_streaming_inference(tmp_path, data, split, tcn):
    tcn.save(tmp_path / "ck")
    assert {p.name for p in (tmp_path / "ck").iterdir()} == {
        "model.safetensors",
        "predictor.json",
        "extractor.safetensors",
    }
    loaded = TrainedPredictor.load(tmp_path / "ck")
    eps = [data[i] for i in split.test_seen[:4]]
    for a, b in zip(tcn.episode_scores(eps), loaded.episode_scores(eps), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    stats = loaded.extractor_statistics
    np.testing.assert_array_equal(stats["tensors"]["ood.precision"], np.eye(4))
    assert stats["config"] == {"consistency_window": 5}
    # Streaming, B=2 environments with different episodes and a reset of one of them.
    fp = FailurePredictor.load(tmp_path / "ck")
    assert fp.horizons == (6, 10, 13, 16) and fp.alpha == 0.1
    fp.reset(batch_size=2)
    e0, e1 = eps[0], eps[1]
    n = min(e0.length, e1.length)
    probs, alarms = [], []
    for t in range(n):
        p = fp.predict(np.stack([e0.signals[t], e1.signals[t]]), np.stack([e0.valid[t], e1.valid[t]]))
        probs.append(p)
        alarms.append(fp.alarm())
    probs_arr = np.stack(probs)  # (n, 2, H)
    types = fp.type_probs()
    assert set(types) == {"drop", "miss", "collision", "timeout"} and types["drop"].shape == (2, 4)
    ref0 = loaded.episode_probs([e0])[0][:n]
    np.testing.assert_allclose(probs_arr[:, 0], ref0, rtol=1e-5, atol=1e-6)
    band = loaded.band()
    first = np.flatnonzero(np.stack(alarms)[:, 0])
    expect = band.alarm_step(running_max(loaded.episode_scores([e0])[0][:n]))
    assert (first[0] if first.size else -1) == expect
    fp.reset(env_index=1)
    p = fp.predict(np.stack([e0.signals[n % e0.length], e0.signals[0]]), np.stack([e0.valid[0], e0.valid[0]]))
    np.testing.assert_allclose(p[1], ref0[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidInputError):
        fp.predict(np.zeros((3, 12)), np.ones((3, 12), bool))


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_checkpoint_missing_field_is_an_error(tmp_path, tcn, key):
    d = tcn.save(tmp_path / "ck")
    meta = json.loads((d / "predictor.json").read_text())
    del meta[key]
    (d / "predictor.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=key):
        TrainedPredictor.load(d)


def test_checkpoint_of_an_unknown_model_is_a_checkpoint_error(tmp_path, tcn):
    d = tcn.save(tmp_path / "ck")
    meta = json.loads((d / "predictor.json").read_text())
    (d / "predictor.json").write_text(
        json.dumps({**meta, "model": {**meta["model"], "config": {"name": "gpt"}}})
    )
    with pytest.raises(CheckpointError, match="bad model config.*gpt"):
        TrainedPredictor.load(d)


def test_without_hidden_states_only_the_hidden_group_is_dropped(data, tmp_path):
    """``--model all`` on data without hidden states drops that group and keeps the rest of each
    model's config as asked."""
    import copy
    import dataclasses

    from salus.jobs.train import TrainJob, _model_configs

    plain = copy.copy(data)
    plain.episodes = [dataclasses.replace(ep, hidden=None) for ep in data.episodes]
    job = TrainJob(tmp_path / "d", tmp_path / "m", models="all")
    asked, got = job.model_configs()["salus-risk"], _model_configs(job, plain)["salus-risk"]
    assert "hidden" in asked.groups and "hidden" not in got.groups
    assert got == dataclasses.replace(asked, feature_groups=tuple(g for g in asked.groups if g != "hidden"))


def test_checkpoint_missing_files_are_errors(tmp_path, tcn):
    d = tcn.save(tmp_path / "ck")
    shutil.copytree(d, tmp_path / "no_ext")
    (tmp_path / "no_ext" / "extractor.safetensors").unlink()
    with pytest.raises(CheckpointError, match="extractor"):
        TrainedPredictor.load(tmp_path / "no_ext")
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        TrainedPredictor.load(d)
    meta = json.loads((tmp_path / "no_ext" / "predictor.json").read_text())
    meta["conformal"]["bands"] = {}
    (tmp_path / "no_ext" / "predictor.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        TrainedPredictor.load(tmp_path / "no_ext")


def test_run_evaluation_with_a_subset_of_methods(data, tcn):
    from salus.predictor import format_markdown, run_evaluation

    rep = run_evaluation(data, [tcn], include=("salus", "signal"))
    assert rep["protocol"]["T"] == safe_times(data.episodes)
    names = [m["name"] for m in rep["methods"]]
    assert "salus-tcn" in names and len(names) == 13
    assert rep["split"]["unseen_tasks"] == ["stack"]
    assert rep["selection"]["selected"] == "salus-tcn"  # the only candidate, picked on val
    assert "| salus-tcn | salus |" in format_markdown(rep)


def test_risk_model_learns_and_its_checkpoint_round_trips(data, split, risk, tmp_path):
    test = [data[i] for i in split.test_seen]
    scores = [running_max(s) for s in risk.episode_scores(test)]
    assert safe_metrics(test, scores, safe_times(data.episodes))["auroc"] > 0.7
    assert risk.meta["prob_columns"][0] == "episode" and risk.meta["score_index"] == 0
    risk.save(tmp_path / "risk")
    assert (tmp_path / "risk" / "features.safetensors").is_file()
    back = TrainedPredictor.load(tmp_path / "risk")
    for a, b in zip(back.episode_scores(test[:4]), risk.episode_scores(test[:4]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    (tmp_path / "risk" / "features.safetensors").unlink()
    with pytest.raises(CheckpointError, match="features.safetensors"):
        TrainedPredictor.load(tmp_path / "risk")


def test_risk_streaming_matches_the_sequence_path(data, split, risk, tmp_path):
    risk.save(tmp_path / "risk")
    fp = FailurePredictor.load(tmp_path / "risk")
    ep = data[split.test_seen[0]]
    fp.reset(batch_size=1)
    stream = []
    for t in range(ep.length):
        p = fp.predict(
            ep.signals[t : t + 1],
            ep.valid[t : t + 1],
            embedding=ep.embedding[t : t + 1],
            baselines=ep.baselines[t : t + 1],
            state=ep.state[t : t + 1],
            hidden=ep.hidden[t : t + 1],
        )
        stream.append(p[0, 0])
    np.testing.assert_allclose(stream, risk.episode_probs([ep])[0][:, 0], rtol=1e-4, atol=1e-5)
    # the streamed running max is the protocol's (the probability, plus the time ramp if any)
    np.testing.assert_allclose(fp.score()[0], risk.episode_scores([ep])[0].max(), rtol=1e-4, atol=1e-5)
    assert set(fp.type_probs()) == set(risk.meta["failure_types"])


def test_knn_features_of_training_episodes_are_cross_fitted(data, split):
    train = [data[i] for i in split.train]
    fs = FeatureSpace(("knn",), knn_reference=300, seed=0).fit(train)
    succ = [ep for ep in train if ep.success]
    crossfit = np.concatenate([fs.transform(ep) for ep in succ])
    fs.forget_training_cache()
    own = np.concatenate([fs.transform(ep) for ep in succ])  # against a reference holding their own steps
    val = np.concatenate([fs.transform(data[i]) for i in split.val if data[i].success])
    # A training success is never its own neighbour: its features look like a held-out success's,
    # while scoring it against the deployed reference makes it look closer to success than it is.
    assert abs(crossfit.mean() - val.mean()) < abs(own.mean() - val.mean())
    assert own.mean() < crossfit.mean()


def test_oracle_reads_privileged_state_and_is_not_deployable(data, split):
    oracle = train_model(
        data, ModelConfig(name="oracle-risk", gru_hidden=8, pca=4), TrainConfig(max_epochs=2), split=split
    )
    assert oracle.feature_space.deployable is False
    with pytest.raises(InvalidInputError, match="privileged"):
        oracle.feature_space.step({"signals": data[0].signals[:1]})


def test_our_models_add_the_time_ramp_and_baselines_do_not(data, split, tmp_path):
    """The per-step score of our models is the probability plus ``score_ramp`` per elapsed step
    (``score_ramp_s`` / control rate), so the running max follows the current estimate; SAFE keeps
    its published score; a checkpoint with a negative or non-finite ramp is refused."""
    from salus.predictor.checkpoint import ramped

    tcfg = TrainConfig(max_epochs=1, patience=1, score_ramp_s=0.4)
    ours = train_model(data, ModelConfig.of("salus-mlp", **SMALL), tcfg, split=split)
    safe = train_model(data, ModelConfig.of("safe-mlp", **SMALL), tcfg, split=split)
    assert ours.score_ramp == pytest.approx(0.4 / data.control_hz) and safe.score_ramp == 0.0
    ep = data[split.test_seen[0]]
    prob = ours.episode_probs([ep])[0][:, int(ours.meta["score_index"])]
    np.testing.assert_allclose(ours.episode_scores([ep])[0], prob + ours.score_ramp * np.arange(ep.length))
    np.testing.assert_array_equal(ramped(prob, 3, 0.0), prob)
    d = ours.save(tmp_path / "ours")
    for bad in (-0.01, float("inf"), True):
        meta = json.loads((d / "predictor.json").read_text())
        meta["score_ramp"] = bad
        (d / "predictor.json").write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match="score_ramp"):
            TrainedPredictor.load(d)
    with pytest.raises(InvalidInputError, match="score_ramp_s"):
        TrainConfig(score_ramp_s=-1.0)


def test_each_objective_is_one_table_entry():
    """Training reads the objectives table: every registered objective has its entry, an unknown
    name lists the valid ones, and the entries say what the checkpoint's score column is."""
    from salus.predictor.objectives import get_objective
    from salus.predictor.registry import OBJECTIVES

    assert {get_objective(n).name for n in OBJECTIVES} == set(OBJECTIVES)
    with pytest.raises(InvalidNameError, match="outcome-hazard"):
        get_objective("nope")
    tcfg = TrainConfig(horizons=(5, 10), score_horizon=-1)
    assert get_objective("horizons").score_index(tcfg) == 1
    assert get_objective("outcome-hazard").prob_columns(tcfg) == [
        "episode",
        "within 5 steps",
        "within 10 steps",
    ]
    assert get_objective("safe-lstm").loss is not None and get_objective("boosted-trees").loss is None
