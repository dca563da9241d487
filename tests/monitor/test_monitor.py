"""The runtime monitor on a real checkpoint: streaming equals the offline path, alarms follow the
band, attribution names the signals that carry the failure, and every internal error is fail-safe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from salus.errors import CheckpointError, InvalidInputError, InvalidNameError
from salus.monitor import Monitor, MonitorConfig
from salus.predictor.runners import NumpyGRU, NumpyMLP, NumpyTCN, TorchRunner


def _builtin_policy(seed: int = 0):  # a real built-in policy network (untrained weights: fast, deterministic)
    import torch

    from salus.policies.builtin.adapter import BuiltinPolicyAdapter
    from salus.policies.builtin.configuration_builtin import BuiltinConfig
    from salus.policies.builtin.modeling_builtin import BuiltinFlowPolicy, NormalizationStats

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    stats = NormalizationStats.fit(
        rng.normal(0.0, 0.3, size=(64, 22)).astype(np.float32),
        rng.uniform(-1, 1, size=(64, 4)).astype(np.float32),
    )
    return BuiltinPolicyAdapter(BuiltinFlowPolicy(BuiltinConfig()), stats, seed=seed)


def _random_obs(rng: np.random.Generator, b: int | None) -> dict:
    shape = () if b is None else (b,)
    return {
        "image_front": rng.integers(0, 255, (*shape, 96, 96, 3), dtype=np.uint8),
        "image_wrist": rng.integers(0, 255, (*shape, 96, 96, 3), dtype=np.uint8),
        "state": rng.normal(0.0, 0.1, (*shape, 22)).astype(np.float32),
        "task": "pick up the red cube" if b is None else ["pick up the red cube"] * b,
    }


def _test_episodes(tiny_data: Path, tiny_model: Path):
    from salus.data import SalusDataset
    from salus.predictor import TrainedPredictor, episodes_from_dataset
    from salus.predictor.episodes import with_statistics

    pred = TrainedPredictor.load(tiny_model)
    episodes = episodes_from_dataset(SalusDataset(tiny_data))
    test = [episodes[i] for i in pred.meta["split"]["test_unseen"] + pred.meta["split"]["test_seen"]]
    # the signals as training saw them: ood_distance recomputed under the split's own Gaussian
    state, names = pred.meta["extractor_statistics"], pred.meta["signal_names"]
    assert "ood_refit" in state["meta"]  # the tiny data has an embedding and fitted statistics
    return pred, [with_statistics(ep, state, names) for ep in test]


def test_streaming_equals_offline_and_alarms_follow_the_band(tiny_data: Path, tiny_model: Path) -> None:
    from salus.predictor.protocol import running_max

    pred, test = _test_episodes(tiny_data, tiny_model)
    offline = pred.episode_probs(test[:6])
    band = pred.band()
    mon = Monitor.load(tiny_model, attribution="never")
    assert isinstance(mon.runner, NumpyMLP)  # the numpy path ran, and must equal torch's numbers
    for ep, probs in zip(test[:6], offline, strict=True):
        mon.reset()
        got, alarm_step = [], -1
        for t in range(ep.length):
            risk = mon.observe_signals(ep.signals[t], ep.valid[t])
            assert not risk.failsafe[0], risk.reason
            assert risk.type_probability is not None and risk.type_probability.shape == (1, 4)
            assert risk.failure_types == ("drop", "miss", "collision", "timeout")
            got.append(risk.probability[0])
            if risk.alarm[0] and alarm_step < 0:
                alarm_step = t
        np.testing.assert_allclose(np.array(got), probs, atol=2e-5)
        assert alarm_step == band.alarm_step(running_max(probs[:, pred.meta["score_index"]]))
        assert risk.threshold[0] == pytest.approx(band.upper(ep.length)[-1])


def test_attribution_names_the_signals_that_carry_the_failure(tiny_data: Path, tiny_model: Path) -> None:
    _, test = _test_episodes(tiny_data, tiny_model)
    mon = Monitor.load(tiny_model, attribution="alarm", top_k=3)
    tops = []
    for ep in [e for e in test if not e.success]:
        mon.reset()
        for t in range(ep.length):
            risk = mon.observe_signals(ep.signals[t], ep.valid[t])
            if risk.alarm[0]:
                assert risk.top_signals[0], "an alarm must say which signals drove it"
                assert all(c.contribution > 0 for c in risk.top_signals[0])
                tops.append(risk.top_signals[0][0].name)
                assert "driven by" in risk.describe(0)
                break
    assert len(tops) >= 5, f"too few detected failures to judge attribution ({len(tops)})"
    # the synthetic failures drift in signals 0-2 and in four embedding dimensions, which
    # ood_distance (recomputed from the embedding under the training split's Gaussian) reads
    informative = {mon.signal_names[j] for j in (0, 1, 2)} | {"ood_distance"}
    share = np.mean([name in informative for name in tops])
    assert share >= 0.8, f"top signals at alarms: {tops}"


@pytest.mark.parametrize("name", ["salus-mlp", "salus-tcn", "salus-risk"])
def test_numpy_runners_match_the_torch_streaming_step(name: str) -> None:
    import torch

    from salus.predictor import ModelConfig, build_model
    from salus.predictor.runners import make_runner

    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, dropout=0.0), 24, 4, 4).eval()
    runner = {"salus-mlp": NumpyMLP, "salus-tcn": NumpyTCN, "salus-risk": NumpyGRU}[name]
    fast, slow = runner(model), TorchRunner(model)
    assert type(make_runner(model)) is runner
    x = np.random.default_rng(0).normal(size=(40, 3, 24)).astype(np.float32)
    fs, ts = fast.init_state(3), slow.init_state(3)
    for t in range(40):
        if t == 25:  # a new episode in environment 1 only
            fs, ts = fast.reset_state(fs, 1), slow.reset_state(ts, 1)
        pf, fs_new = fast.step(x[t], fs)
        pt, ts = slow.step(x[t], ts)
        np.testing.assert_allclose(pf, pt, atol=2e-5)
        assert fast.last_types is not None and slow.last_types is not None
        np.testing.assert_allclose(fast.last_types, slow.last_types, atol=2e-5)  # per failure type
        if t == 30:  # stepping from a repeated state does not touch the original
            rep = fast.repeat_state(fs, 2, 4)
            np.testing.assert_allclose(
                fast.step(np.repeat(x[t][2:3], 4, axis=0), rep)[0], np.repeat(pf[2:3], 4, axis=0), atol=1e-6
            )
        fs = fs_new
    # the whole-sequence path of the module agrees too (environment 0, never reset)
    with torch.no_grad():
        full = model.probs(torch.from_numpy(x[:, 0][None]))[0].numpy()
    np.testing.assert_allclose(pf[0], full[-1], atol=2e-5)


def test_monitor_in_the_simulator_and_failsafe_on_a_corrupted_observation(tiny_model: Path) -> None:
    from salus.sim import make_env

    env = make_env("pick_place", max_steps=60)
    mon = Monitor.load(tiny_model, policy=_builtin_policy(), attribution="always")
    obs, _ = env.reset(seed=0)
    mon.reset()
    for t in range(12):
        action, risk = mon.step(obs)
        assert action.shape == (4,) and np.isfinite(action).all()
        assert not risk.failsafe[0], risk.reason
        assert risk.step[0] == t and np.isfinite(risk.probability).all()
        assert ((risk.probability >= 0) & (risk.probability <= 1)).all()
        assert risk.score[0] >= risk.probability[0, mon.score_index] - 1e-12  # running max
        obs, *_ = env.step(action)
    last_gripper = action[3]

    bad = dict(obs)
    bad["state"] = obs["state"].copy()
    bad["state"][5] = np.nan
    action, risk = mon.step(bad)  # must not raise
    assert risk.failsafe[0] and risk.alarm[0] and "state" in str(risk.reason[0])
    assert np.isnan(risk.probability).all() and np.isnan(risk.score[0])
    np.testing.assert_array_equal(action[:3], 0.0)  # hold still, gripper unchanged
    assert action[3] == pytest.approx(last_gripper)
    assert "FAIL-SAFE" in risk.describe(0)

    obs, *_ = env.step(action)
    _, risk = mon.step(obs)  # sticky until reset: the history is broken
    assert risk.failsafe[0]
    obs, _ = env.reset(seed=1)
    mon.reset()
    _, risk = mon.step(obs)
    assert not risk.failsafe[0] and risk.reason[0] is None and risk.step[0] == 0
    env.close()


def test_batched_failsafe_is_per_environment_and_alarm_is_the_callers_choice(tiny_model: Path) -> None:
    rng = np.random.default_rng(0)
    mon = Monitor.load(tiny_model, policy=_builtin_policy(), failsafe_alarm=False)
    mon.reset()
    for _ in range(3):
        actions, risk = mon.step(_random_obs(rng, 3))
    assert actions.shape == (3, 4) and not risk.failsafe.any()
    obs = _random_obs(rng, 3)
    obs["state"][1, 0] = np.inf
    actions, risk = mon.step(obs)
    assert risk.failsafe.tolist() == [False, True, False]
    assert not risk.alarm[1]  # failsafe_alarm=False: the caller decides
    assert np.isfinite(risk.probability[[0, 2]]).all() and np.isnan(risk.probability[1]).all()
    np.testing.assert_array_equal(actions[1, :3], 0.0)
    mon.reset(1)
    _, risk = mon.step(_random_obs(rng, 3))
    assert not risk.failsafe.any() and risk.step.tolist() == [4, 0, 4]


def test_every_internal_error_becomes_a_reported_failsafe(tiny_model: Path) -> None:
    rng = np.random.default_rng(1)
    policy = _builtin_policy()
    mon = Monitor.load(tiny_model, policy=policy)
    mon.reset()
    obs = _random_obs(rng, None)
    action = policy.act(obs)
    assert not mon.observe(obs, action).failsafe[0]
    risk = mon.observe(obs, action)  # no act in between: stale internals
    assert risk.failsafe[0] and "did not change" in str(risk.reason[0])

    cases = {
        "not a dict": ([1, 2, 3], "dict"),
        "no state": ({"task": "x"}, "state"),
        "float image with NaN": ({**obs, "image_front": np.full((96, 96, 3), np.nan)}, "image_front"),
    }
    for name, (bad, needle) in cases.items():
        mon.reset()
        action, risk = mon.step(bad)  # type: ignore[arg-type]
        assert risk.failsafe.all() and risk.alarm.all(), name
        assert needle in str(risk.reason[0]), (name, risk.reason)
        assert np.isfinite(action).all()
    mon.reset()  # a state of the wrong shape is the caller's mistake: raised, not fail-safe
    with pytest.raises(InvalidInputError, match=r"shape \(22,\), got \(5,\)"):
        mon.step({**obs, "state": np.zeros(5, np.float32)})

    lone = Monitor.load(tiny_model)  # no policy and no internals
    risk = lone.observe(obs)
    assert risk.failsafe[0] and "internals" in str(risk.reason[0])
    lone.reset()  # fail-safe is sticky until reset
    risk = lone.observe_signals(np.full(12, np.nan), np.ones(12, bool))
    assert risk.failsafe[0] and "NaN" in str(risk.reason[0])
    raising = Monitor.load(tiny_model, policy=_builtin_policy(), safe_action="raise")
    with pytest.raises(InvalidInputError):
        raising.step({"task": "x"})


def test_load_and_config_errors_are_clear(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="predictor.json"):
        Monitor.load(tmp_path)
    with pytest.raises(InvalidInputError, match="calibrated alphas"):
        Monitor.load(tiny_model, alpha=0.3)
    with pytest.warns(UserWarning, match="never alarms"):  # 0.05 needs >= 19 calibration successes
        strict = Monitor.load(tiny_model, alpha=0.05)
    risk = strict.observe_signals(np.full(12, 5.0))
    assert np.isinf(risk.threshold[0]) and not risk.alarm[0]
    with pytest.raises(InvalidNameError, match="attribution mode"):
        MonitorConfig(attribution="sometimes")
    with pytest.raises(InvalidInputError, match="needs a policy"):
        Monitor.load(tiny_model).step({"state": np.zeros(22)})


def test_monitor_with_the_lerobot_smolvla_adapter(tiny_model: Path, tmp_path: Path) -> None:
    """The same monitor around LeRobot's real SmolVLAPolicy (tiny random configuration, offline)."""
    import json
    import os
    import shutil

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pytest.importorskip("lerobot", reason="LeRobot extra not installed (make install-lerobot)")
    from salus.policies import load_policy
    from salus.policies.smolvla import build_tiny_smolvla
    from salus.signals import SignalExtractor

    smol = build_tiny_smolvla(
        tmp_path / "smolvla", chunk_size=8, n_action_steps=3, num_steps=3, hidden_size=64
    )
    rng = np.random.default_rng(2)

    def obs(b: int) -> dict:
        return {
            "image_front": rng.integers(0, 256, (b, 32, 32, 3), dtype=np.uint8),
            "image_wrist": rng.integers(0, 256, (b, 32, 32, 3), dtype=np.uint8),
            "state": rng.normal(0.0, 0.1, (b, 22)).astype(np.float32),
            "task": ["pick up the cube and place it on the target"] * b,
        }

    # A predictor for this policy carries extractor statistics fitted on this policy's embeddings
    # (as a dataset collected with `--policy smolvla:PATH` would): fit them and put them in a copy.
    adapter = load_policy(f"smolvla:{smol}", seed=0)
    embeddings = []
    for _ in range(9):
        adapter.act(obs(4))
        embeddings.append(adapter.last_internals.obs_embedding)  # type: ignore[union-attr]
    stats = SignalExtractor(1).fit(np.concatenate(embeddings)).state_dict()
    stats["tensors"] = {k: np.asarray(v).tolist() for k, v in stats["tensors"].items()}
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    meta = json.loads((model / "predictor.json").read_text())
    meta["extractor_statistics"] = stats
    (model / "predictor.json").write_text(json.dumps(meta))

    mon = Monitor.load(model, policy=load_policy(f"smolvla:{smol}", seed=1), attribution="always")
    mon.reset()
    for t in range(7):  # crosses chunk boundaries (3 executed steps per chunk)
        action, risk = mon.step(obs(2))
        assert action.shape == (2, 4) and not risk.failsafe.any(), risk.reason
        assert np.isfinite(risk.probability).all() and risk.step.tolist() == [t, t]
    bad = obs(2)
    bad["state"][0, :] = np.nan
    action, risk = mon.step(bad)
    assert risk.failsafe.tolist() == [True, False] and np.isfinite(action).all()


def test_monitor_with_the_generic_adapter_around_a_user_module(tiny_model: Path) -> None:
    """Any nn.Module policy with an output layer name (here a small flow-matching policy of our own)."""
    import torch
    from torch import nn

    from salus.policies import TorchPolicyAdapter

    class UserPolicy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = nn.Sequential(nn.Linear(22, 128), nn.Tanh())  # observation embedding, E = 128
            self.expert = nn.Linear(4 + 128 + 1, 32)
            self.action_out_proj = nn.Linear(32, 4)

        def sample_actions(self, batch: dict, noise: torch.Tensor) -> torch.Tensor:
            emb = self.trunk(batch["state"])[:, None].expand(-1, noise.shape[1], -1)
            x = noise
            for k in range(3):  # three Euler steps from t = 1 to 0
                t = torch.full((*x.shape[:2], 1), 1.0 - k / 3)
                velocity = self.action_out_proj(torch.relu(self.expert(torch.cat([x, emb, t], dim=-1))))
                x = x - velocity / 3
            return torch.tanh(x)

    torch.manual_seed(0)
    adapter = TorchPolicyAdapter(
        UserPolicy(),
        output_layer="action_out_proj",
        embedding_layer="trunk",
        chunk_size=6,
        n_action_steps=3,
        action_dim=4,
    )
    mon = Monitor.load(tiny_model, policy=adapter, attribution="always")
    mon.reset()
    rng = np.random.default_rng(3)
    for t in range(8):
        obs = {"state": rng.normal(0.0, 0.1, (2, 22)).astype(np.float32), "task": ["reach"] * 2}
        actions, risk = mon.step(obs)
        assert actions.shape == (2, 4) and not risk.failsafe.any(), risk.reason
        assert risk.step.tolist() == [t, t] and np.isfinite(risk.probability).all()
    assert any(risk.top_signals[i] for i in range(2))  # attribution="always" explains every step


def test_offline_risk_scores_a_recorded_episode_as_training_saw_it(tiny_data: Path, tiny_model: Path) -> None:
    """The checkpoint was trained on ood_distance recomputed under its split's Gaussian; a recorded
    episode's stored column was computed with the collection's statistics. offline_risk applies the
    checkpoint's, so its curve is the evaluated one."""
    from salus.data import SalusDataset
    from salus.monitor import offline_risk
    from salus.predictor import TrainedPredictor, episodes_from_dataset
    from salus.predictor.episodes import with_statistics

    pred = TrainedPredictor.load(tiny_model)
    ds = SalusDataset(tiny_data)
    i = pred.meta["split"]["test_seen"][0]
    ep = episodes_from_dataset(ds)[i]
    state, names = pred.meta["extractor_statistics"], pred.meta["signal_names"]
    want = pred.episode_probs([with_statistics(ep, state, names)])[0]
    stored = pred.episode_probs([ep])[0]
    assert not np.allclose(want, stored)  # the refit changes the column (the check can fail)
    got = offline_risk(tiny_model, ds.episode(i).steps)["probability"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_the_robot_state_can_live_under_another_observation_key(tiny_model: Path) -> None:
    """``robot_state="observation.state"`` (a LeRobot-style observation) reads the same state as
    salus's ``state``: the same scores; NaN in it is fail-safe naming that key; a missing key names
    the keys present."""
    pol = _builtin_policy()
    plain = Monitor.load(tiny_model, attribution="never")
    lerobot = Monitor.load(tiny_model, attribution="never", robot_state="observation.state")
    rng = np.random.default_rng(3)
    for _ in range(5):
        obs = _random_obs(rng, 2)
        pol.act(obs)
        renamed = {("observation.state" if k == "state" else k): v for k, v in obs.items()}
        a = plain.observe(obs, internals=pol.last_internals)
        b = lerobot.observe(renamed, internals=pol.last_internals)
        np.testing.assert_array_equal(a.probability, b.probability)
        np.testing.assert_array_equal(a.score, b.score)
    renamed["observation.state"] = renamed["observation.state"].copy()
    renamed["observation.state"][1, 0] = np.nan
    pol.act(obs)
    risk = lerobot.observe(renamed, internals=pol.last_internals)
    assert not risk.failsafe[0] and risk.failsafe[1] and "'observation.state' contains NaN" in risk.reason[1]
    pol.act(obs)
    risk = Monitor.load(tiny_model, robot_state="observation.state").observe(
        obs, internals=pol.last_internals
    )
    assert (
        risk.failsafe.all()
        and "no 'observation.state'" in str(risk.reason[0])
        and "'state'" in str(risk.reason[0])
    )
    with pytest.raises(InvalidInputError, match="robot_state must be the observation key"):
        MonitorConfig(robot_state="")
