"""The extractor and the online baselines on real built-in policy internals in the real simulator.

Uses the shipped built-in weights when present, else the same architecture untrained (the
internals have the same shapes and meaning). Episodes are short (max 48 steps) to fit the budget.
"""

from __future__ import annotations

import numpy as np
import pytest

from salus.signals import SIGNAL_NAMES, OnlineBaselines, SignalExtractor
from salus.signals.analysis import summarize_signals

pytest.importorskip("mujoco")


@pytest.fixture(scope="module")
def builtin_spec(tmp_path_factory) -> str:
    from salus.errors import CheckpointError
    from salus.policies import load_policy

    try:
        load_policy("builtin")
        return "builtin"
    except (CheckpointError, FileNotFoundError, OSError):
        import torch

        from salus.policies.builtin.configuration_builtin import BuiltinConfig
        from salus.policies.builtin.modeling_builtin import (
            BuiltinFlowPolicy,
            NormalizationStats,
            save_pretrained,
        )

        torch.manual_seed(0)
        cfg = BuiltinConfig()
        folder = tmp_path_factory.mktemp("builtin_untrained")
        stats = NormalizationStats(np.zeros(22), np.ones(22), np.zeros(4), np.full(4, 0.5))
        save_pretrained(folder, BuiltinFlowPolicy(cfg).eval(), stats)
        return f"builtin:{folder}"


def _record(spec: str, episodes: list[tuple[int, list]], k: int = 4, max_steps: int = 48):
    """Run the policy and keep each step's (internals, robot state)."""
    from salus.policies import load_policy
    from salus.sim import make_env

    policy = load_policy(spec, num_samples=k, seed=0)
    out = []
    for seed, perts in episodes:
        env = make_env("pick_place", max_steps=max_steps, perturbations=perts or None)
        obs, _ = env.reset(seed=seed)
        policy.reset()
        steps, done = [], False
        while not done:
            action = policy.act(obs)
            steps.append((policy.last_internals, np.asarray(obs["state"], np.float32)[None]))
            obs, _, term, trunc, _ = env.step(action)
            done = term or trunc
        env.close()
        out.append(steps)
    return out


def test_real_rollouts_give_twelve_finite_varying_distinct_signals(builtin_spec):
    fit_eps, eval_eps = _record(builtin_spec, [(0, []), (1, [("push", 0.8)])])
    ex = SignalExtractor(1)
    emb = np.concatenate([it.obs_embedding for it, _ in fit_eps if it.new_chunk[0]])
    samples = np.concatenate([it.samples for it, _ in fit_eps if it.new_chunk[0]])
    ex.fit(emb, samples)
    ob = OnlineBaselines(1)
    values, valid, base, base_ok = [], [], [], []
    for episode in (fit_eps, eval_eps):
        ex.reset()
        ob.reset()
        for it, state in episode:
            s = ex.step(it, state)
            b = ob.step(it)
            values.append(s.values)
            valid.append(s.valid)
            base.append(b.values)
            base_ok.append(b.valid)
    rep = summarize_signals(np.concatenate(values), np.concatenate(valid))
    assert rep["checks"] == {"finite": True, "nonzero_variance": True, "distinct": True}, rep
    for name in SIGNAL_NAMES:
        assert rep["signals"][name]["valid_rate"] > 0.8, (name, rep["signals"][name])
    base_ok_all = np.concatenate(base_ok)
    base_all = np.concatenate(base)
    assert np.isfinite(base_all).all() and base_ok_all.mean(axis=0).min() > 0.7
    assert (base_all[base_ok_all[:, 0], 0] > 0).all()  # K = 4 samples always spread


def test_shipped_statistics_match_the_shipped_builtin_weights():
    """The package ships extractor statistics fitted for its built-in weights (refit after retraining:
    `salus signals fit --policy builtin --source policy --episodes 128 --samples 4 --seed 1000`)."""
    from salus.signals.analysis import (
        load_extractor_for_policy,
        policy_weights_fingerprint,
        signal_stats_path,
    )

    if policy_weights_fingerprint("builtin") is None:
        pytest.skip("no built-in weights shipped yet")
    ex = load_extractor_for_policy("builtin", batch_size=2)  # raises if missing or stale
    assert ex.fitted and ex.cluster_radius is not None
    assert ex.meta["weights_sha256"] == policy_weights_fingerprint("builtin")
    assert signal_stats_path("builtin").with_suffix(".json").is_file()


def test_fit_from_expert_rollouts_records_provenance(builtin_spec, tmp_path):
    from salus.signals.analysis import fit_extractor_from_rollouts, policy_weights_fingerprint

    ex, summary = fit_extractor_from_rollouts(
        builtin_spec, 2, tasks=("pick_place",), num_samples=2, seed=7, source="expert"
    )
    assert summary["successful"] == 2 and summary["sample_batches"] == summary["embedding_rows"] > 0
    assert ex.fitted and ex.cluster_radius is not None and ex.cluster_radius > 0
    assert ex.meta["weights_sha256"] == policy_weights_fingerprint(builtin_spec)
    again = SignalExtractor.load(ex.save(tmp_path / "stats")[1])
    assert again.meta == ex.meta and again.cluster_radius == pytest.approx(ex.cluster_radius)


def test_lockstep_fit_rollouts_keep_each_live_envs_chunks(builtin_spec):
    """batch_size > 1 (the fast path of `salus signals fit`): the same episodes (task, seed), the
    first observation embedding equal to the single-environment run's, and exactly one embedding per
    chunk an environment computed before it finished (none from the steps it waits for the others)."""
    from salus.errors import InvalidInputError
    from salus.policies import load_policy
    from salus.signals.analysis import run_policy_rollouts

    tasks = ("pick_place", "push", "stack")
    one = run_policy_rollouts(builtin_spec, 3, tasks=tasks, seed=11, keep_internals=True)
    many = run_policy_rollouts(builtin_spec, 3, tasks=tasks, seed=11, keep_internals=True, batch_size=3)
    n = load_policy(builtin_spec).n_action_steps
    assert len(many.success) == len(many.embeddings) == 3 and len(set(many.lengths)) > 1
    for i in range(3):
        np.testing.assert_allclose(many.embeddings[i][0], one.embeddings[i][0], rtol=1e-5, atol=1e-6)
        assert many.embeddings[i].shape[0] == -(-many.lengths[i] // n)
        assert one.embeddings[i].shape[0] == -(-one.lengths[i] // n)
    with pytest.raises(InvalidInputError, match="batch_size must both be 1"):
        run_policy_rollouts(builtin_spec, 2, seed=1, batch_size=2, extractor=SignalExtractor(2))
    with pytest.raises(InvalidInputError, match="batch_size"):
        run_policy_rollouts(builtin_spec, 2, seed=1, batch_size=0)


def test_expert_rollouts_run_in_lockstep_with_the_policy_watching(builtin_spec):
    """actor="expert" at B = 2 through the episode harness: the scripted expert acts (it succeeds
    where the built-in policy often does not), the policy's embeddings are kept for every chunk."""
    from salus.policies import load_policy
    from salus.signals.analysis import run_policy_rollouts

    n = load_policy(builtin_spec).n_action_steps
    run = run_policy_rollouts(builtin_spec, 3, tasks=("pick_place",), seed=3, keep_internals=True,
                              actor="expert", batch_size=2)  # fmt: skip
    assert run.success == [True, True, True]  # the expert, not the policy
    for emb, length in zip(run.embeddings, run.lengths, strict=True):
        assert emb.shape[0] == -(-length // n)
