"""The built-in adapter: chunk bookkeeping, per-step internals, K samples, noise equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_helpers import make_model, make_obs, random_stats

from salus.policies import capture_modules
from salus.policies.builtin import BuiltinPolicyAdapter


def adapter(seed: int = 0, **kw: object) -> BuiltinPolicyAdapter:
    return BuiltinPolicyAdapter(make_model(), random_stats(), seed=seed, **kw)  # type: ignore[arg-type]


class CallCounter:
    """A persistent forward hook counting calls of a module (independent of the adapter's hooks)."""

    def __init__(self, module: torch.nn.Module):
        self.count = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.count += 1


def test_hook_fires_num_steps_per_chunk_and_never_on_queued_steps() -> None:
    ad = adapter()
    cfg = ad.config
    counter = CallCounter(ad.model.action_out_proj)
    per_step = []
    for t in range(3 * cfg.n_action_steps + 1):
        before = counter.count
        ad.act(make_obs(2, seed=t))
        per_step.append(counter.count - before)
        rec = ad.last_internals
        assert rec is not None
        if t % cfg.n_action_steps == 0:
            assert per_step[-1] == cfg.num_steps and rec.new_chunk.all()
        else:
            assert per_step[-1] == 0 and not rec.new_chunk.any()
    counter.handle.remove()
    assert not ad.model.action_out_proj._forward_hooks  # the adapter left no hook behind


def test_every_step_has_internals_of_its_chunk() -> None:
    """Each step's record equals a direct capture of the chunk that produced it, at its position."""
    ad = adapter()
    cfg = ad.config
    b, k_steps = 2, cfg.n_action_steps
    noises = [np.random.default_rng(i).normal(size=(b, cfg.chunk_size, cfg.action_dim)) for i in range(3)]
    records = []
    for t in range(3 * k_steps):
        obs = make_obs(b, seed=t)
        if t % k_steps == 0:
            chunk_obs = obs
            batch = ad.processor.preprocess(obs)
            with torch.no_grad(), capture_modules(ad.model, ["action_out_proj", "trunk"]) as buf:
                ad.model.sample_actions(batch, torch.as_tensor(noises[t // k_steps], dtype=torch.float32))
            hidden = buf.inputs("action_out_proj").numpy()  # (S, B, C, H)
            vel = buf.outputs("action_out_proj").numpy()
            emb = buf.outputs("trunk")[-1].numpy()
        ad.act(obs, noise=noises[t // k_steps])
        rec = ad.last_internals
        assert rec is not None
        off = t % k_steps
        records.append(rec)
        np.testing.assert_array_equal(rec.chunk_id, [t // k_steps] * b)
        np.testing.assert_array_equal(rec.chunk_offset, [off] * b)
        assert rec.hidden_step.shape == (b, cfg.expert_hidden)
        assert rec.hidden_mean.shape == (b, cfg.expert_hidden)
        assert rec.velocities.shape == (b, cfg.num_steps, cfg.action_dim)
        assert rec.obs_embedding.shape == (b, cfg.embed_dim)
        assert rec.chunk.shape == (b, cfg.chunk_size, cfg.action_dim)
        assert rec.action.shape == (b, cfg.action_dim) and rec.samples is None
        np.testing.assert_allclose(rec.hidden_step, hidden[-1, :, off], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rec.hidden_mean, hidden.mean(axis=(0, 2)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rec.velocities, vel[:, :, off].transpose(1, 0, 2), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rec.obs_embedding, emb, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(rec.action, rec.chunk[:, off])
        assert chunk_obs is not None
    # records handed out earlier are not overwritten by later chunks
    assert not np.allclose(records[0].hidden_mean, records[-1].hidden_mean)
    assert not np.allclose(records[0].hidden_step, records[1].hidden_step)


def test_reset_leaves_no_stale_internals() -> None:
    ad = adapter()
    n = ad.n_action_steps
    for t in range(n + 2):  # second chunk, offset 1
        ad.act(make_obs(3, seed=t))
    before = ad.last_internals
    assert before is not None and before.chunk_id.tolist() == [1, 1, 1]
    # one environment starts a new episode: only it computes a new chunk
    ad.reset(env_index=1)
    ad.act(make_obs(3, seed=100))
    rec = ad.last_internals
    assert rec is not None
    assert rec.new_chunk.tolist() == [False, True, False]
    assert rec.chunk_id.tolist() == [1, 0, 1]
    assert rec.chunk_offset.tolist() == [2, 0, 2]
    np.testing.assert_array_equal(rec.chunk[[0, 2]], before.chunk[[0, 2]])
    assert not np.allclose(rec.chunk[1], before.chunk[1])
    assert not np.allclose(rec.obs_embedding[1], before.obs_embedding[1])
    # a full reset forgets everything
    ad.reset()
    assert ad.last_internals is None
    ad.act(make_obs(3, seed=200))
    rec = ad.last_internals
    assert rec is not None and rec.new_chunk.all() and rec.chunk_id.tolist() == [0, 0, 0]
    assert rec.chunk_offset.tolist() == [0, 0, 0]


def test_shared_arrays_are_read_only() -> None:
    ad = adapter()
    a = ad.act(make_obs(2))
    rec = ad.last_internals
    assert rec is not None
    with pytest.raises(ValueError, match="read-only"):
        rec.chunk[0, 0, 0] = 5.0
    a[0, 0] = 5.0  # the returned action and per-step fields are the caller's own
    rec.hidden_step[0, 0] = 5.0
    ad.act(make_obs(2))
    assert ad.last_internals is not None and ad.last_internals.hidden_step[0, 0] != 5.0


def test_single_and_batched_observations() -> None:
    ad = adapter()
    a = ad.act(make_obs(None, seed=1))
    assert a.shape == (4,) and a.dtype == np.float32
    assert ad.last_internals is not None and ad.last_internals.batch_size == 1
    ad.reset()
    a = ad.act(make_obs(5, seed=1))
    assert a.shape == (5, 4)
    assert np.all(np.abs(a) <= 1.0)


def test_environments_are_independent_of_batching() -> None:
    """Env b of a batch equals a single-env adapter seeded seed + b (per-environment noise streams)."""
    batched = adapter(seed=7)
    obs = make_obs(3, seed=3)
    acts = [batched.act(obs) for _ in range(6)]
    single = adapter(seed=9)  # env 2 of the batch uses seed 7 + 2
    one = {k: (v[2] if k != "task" else v[2]) for k, v in obs.items()}
    for t in range(6):
        np.testing.assert_allclose(single.act(one), acts[t][2], rtol=1e-4, atol=1e-5)


def test_k_samples_differ_and_sample_zero_is_executed() -> None:
    k = 5
    ad = adapter(num_samples=k)
    obs = make_obs(2, seed=0)
    ad.act(obs)
    rec = ad.last_internals
    assert rec is not None and rec.samples is not None
    assert rec.samples.shape == (2, k, ad.chunk_size, 4)
    np.testing.assert_array_equal(rec.samples[:, 0], rec.chunk)
    spread = rec.samples.std(axis=1).mean()
    assert spread > 1e-3
    for i in range(k):
        for j in range(i + 1, k):
            assert not np.allclose(rec.samples[:, i], rec.samples[:, j])
    # sample 0 of K-sample mode is exactly what K = 1 computes for the same noise
    noise = np.random.default_rng(1).normal(size=(2, k, ad.chunk_size, 4))
    ad.reset()
    ad.act(obs, noise=noise)
    multi = ad.last_internals
    one = adapter()
    one.act(obs, noise=noise[:, 0])
    single = one.last_internals
    assert multi is not None and single is not None
    for name in ("chunk", "hidden_step", "hidden_mean", "velocities", "obs_embedding"):
        np.testing.assert_allclose(getattr(multi, name), getattr(single, name), rtol=1e-4, atol=1e-5)


def test_actions_equal_unwrapped_model_for_same_noise() -> None:
    """Normalisation, tokenisation and un-normalisation done by hand match the adapter."""
    model = make_model()
    stats = random_stats()
    ad = BuiltinPolicyAdapter(model, stats)
    cfg = model.config
    obs = make_obs(2, seed=4)
    noise = np.random.default_rng(5).normal(size=(2, cfg.chunk_size, cfg.action_dim)).astype(np.float32)
    executed = [ad.act(obs, noise=noise) for _ in range(cfg.n_action_steps)]
    tok = cfg.tokenizer()
    batch = {
        "image_front": torch.from_numpy(obs["image_front"]).permute(0, 3, 1, 2).float() / 255.0,
        "image_wrist": torch.from_numpy(obs["image_wrist"]).permute(0, 3, 1, 2).float() / 255.0,
        "state": torch.from_numpy((obs["state"] - stats.state_mean) / stats.state_std),
        "tokens": torch.tensor([tok.encode(t) for t in obs["task"]]),
    }
    with torch.no_grad():
        raw = model.sample_actions(batch, torch.from_numpy(noise)).numpy()
    expected = np.clip(raw * stats.action_std + stats.action_mean, -1, 1)
    for t in range(cfg.n_action_steps):
        np.testing.assert_allclose(executed[t], expected[:, t], rtol=1e-5, atol=1e-6)


def test_capture_off_gives_same_actions() -> None:
    on, off = adapter(seed=3), adapter(seed=3, capture_internals=False)
    for t in range(6):
        obs = make_obs(2, seed=t)
        np.testing.assert_allclose(on.act(obs), off.act(obs), rtol=1e-6)
    rec = off.last_internals
    assert rec is not None and rec.hidden_step.shape == (2, 0) and rec.obs_embedding.shape == (2, 0)


def test_n_action_steps_override() -> None:
    ad = adapter(n_action_steps=1)
    for t in range(3):
        ad.act(make_obs(1, seed=t))
        rec = ad.last_internals
        assert rec is not None and rec.new_chunk.all() and rec.chunk_id.tolist() == [t]


def test_model_reads_only_its_state_features() -> None:
    """Joint velocities are not among the default state features: changing them changes nothing."""
    from salus.sim.spec import STATE_SLICES

    obs = make_obs(2, seed=0)
    noise = np.random.default_rng(0).normal(size=(2, 6, 4))
    a = adapter().act(obs, noise=noise)
    obs["state"][:, STATE_SLICES["joint_vel"]] += 3.0
    np.testing.assert_array_equal(adapter().act(obs, noise=noise), a)
    obs["state"][:, STATE_SLICES["ee_pos"]] += 3.0
    assert not np.allclose(adapter().act(obs, noise=noise), a)
