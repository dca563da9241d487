"""The monitor with a ``features`` model (salus-risk) in a real control loop: the built-in policy's
internals and the simulator's state become the same features as offline, the streaming scores equal
the sequence path on the recorded episode, and Risk names the likely failure type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from salus.errors import CheckpointError


@pytest.fixture(scope="module")
def risk_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """salus-risk trained on synthetic episodes at the built-in policy's widths."""
    from salus.predictor import ModelConfig, SplitConfig, TrainConfig, synthetic_episodes, train_model

    from .conftest import extractor_state

    eps = synthetic_episodes(120, seed=2, embedding_dim=128, n_baselines=4)
    rng = np.random.default_rng(0)
    for ep in eps.episodes:
        ep.hidden = rng.normal(size=(ep.length, 128)).astype(np.float32)
    eps.baseline_names = ("action_total_variance", "stac", "stac_single", "fiper_chunk_entropy")
    eps.extractor_statistics = extractor_state()
    cfg = TrainConfig(max_epochs=2, patience=2, split=SplitConfig(holdout_tasks=("stack",)))
    model = train_model(eps, ModelConfig(name="salus-risk", gru_hidden=16, pca=4, dropout=0.0), cfg)
    out = tmp_path_factory.mktemp("risk") / "salus-risk"
    model.save(out)
    return out


def test_risk_monitor_streams_the_offline_features_in_the_simulator(risk_model: Path) -> None:
    from salus.monitor import Monitor
    from salus.predictor import Episode, TrainedPredictor
    from salus.signals import OnlineBaselines, SignalExtractor
    from salus.sim import make_env

    from .test_monitor import _builtin_policy

    env = make_env("pick_place", max_steps=40)
    policy = _builtin_policy()
    mon = Monitor.load(risk_model, policy=policy, attribution="always", top_k=2)
    pred = TrainedPredictor.load(risk_model)
    extractor, baselines = SignalExtractor(1), OnlineBaselines(1)
    extractor.load_state_dict(mon._extractor_state)
    obs, _ = env.reset(seed=3)
    mon.reset()
    rec: dict[str, list[np.ndarray]] = {
        k: [] for k in ("sig", "val", "base", "state", "emb", "hidden", "probs")
    }
    for _ in range(25):
        state = obs["state"].copy()
        action, risk = mon.step(obs)
        assert not risk.failsafe[0], risk.reason
        assert risk.probability.shape == (1, 1 + len(pred.horizons))
        assert risk.type_probability is not None and risk.type_probability.shape == (1, 4)
        internals = policy.last_internals
        s = extractor.step(internals, state[None])
        b = baselines.step(internals)
        rec["sig"].append(s.values[0])
        rec["val"].append(s.valid[0])
        rec["base"].append(np.where(b.valid[0], b.values[0], np.nan))
        rec["state"].append(state)
        rec["emb"].append(internals.obs_embedding[0])
        rec["hidden"].append(internals.hidden_step[0])
        rec["probs"].append(risk.probability[0])
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    assert "episode" in risk.describe(0) and "most likely" in risk.describe(0)
    ep = Episode(
        np.array(rec["sig"]),
        np.array(rec["val"]),
        success=True,
        failure_step=-1,
        baselines=np.array(rec["base"]),
        embedding=np.array(rec["emb"]),
        state=np.array(rec["state"]),
        hidden=np.array(rec["hidden"]),
    )
    offline = pred.episode_probs([ep])[0]
    np.testing.assert_allclose(np.array(rec["probs"]), offline, atol=1e-4)
    env.close()


def test_an_oracle_cannot_monitor_a_policy(tmp_path: Path) -> None:
    from salus.monitor import Monitor
    from salus.predictor import ModelConfig, SplitConfig, TrainConfig, synthetic_episodes, train_model

    from .conftest import extractor_state

    eps = synthetic_episodes(60, seed=1, embedding_dim=8, n_baselines=2)
    eps.extractor_statistics = extractor_state()
    cfg = TrainConfig(max_epochs=1, split=SplitConfig(holdout_tasks=("stack",)))
    train_model(eps, ModelConfig(name="oracle-risk", gru_hidden=8, pca=2), cfg).save(tmp_path / "oracle")
    with pytest.raises(CheckpointError, match="deployable"):
        Monitor.load(tmp_path / "oracle")
