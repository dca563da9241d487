"""The generic adapter on a user's own module, and the ensemble adapter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from policy_helpers import make_model, make_obs, random_stats
from torch import nn

from salus.errors import InvalidInputError, InvalidNameError
from salus.policies import EnsembleAdapter, TorchPolicyAdapter
from salus.policies.builtin import BuiltinPolicyAdapter


class UserFlowPolicy(nn.Module):
    """A user's flow policy following the protocol of salus.policies.generic (no multi-sample)."""

    def __init__(self, chunk: int = 5, a_m: int = 6, steps: int = 4):
        super().__init__()
        self.chunk, self.a_m, self.steps = chunk, a_m, steps
        self.encoder = nn.Linear(7, 9)  # output (N, T=2, E=9): averaged over T by the adapter
        self.mix = nn.Linear(a_m + 9 + 1, 16)
        self.velocity_head = nn.Linear(16, a_m)

    def sample_actions(self, batch: dict[str, Any], noise: torch.Tensor) -> torch.Tensor:
        emb = self.encoder(batch["feat"]).mean(1)  # (N, 9)
        x = noise
        for i in range(self.steps):
            t = torch.full((x.shape[0], x.shape[1], 1), 1 - i / self.steps)
            h = torch.tanh(self.mix(torch.cat([x, emb[:, None].expand(-1, x.shape[1], -1), t], -1)))
            x = x - self.velocity_head(h) / self.steps
        return x


def user_obs(b: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"feat": rng.normal(size=(b, 2, 7)).astype(np.float32), "task": ["do it"] * b}


def test_generic_adapter_on_user_module() -> None:
    model = UserFlowPolicy()
    ad = TorchPolicyAdapter(
        model,
        output_layer="velocity_head",
        embedding_layer="encoder",
        chunk_size=5,
        n_action_steps=3,
        action_dim=4,
        num_samples=3,
    )
    assert ad.noise_shape == (5, 6)  # A_m inferred from the output layer
    calls = 0

    def count(*_: object) -> None:
        nonlocal calls
        calls += 1

    handle = model.velocity_head.register_forward_hook(count)
    ad.act(user_obs(2))
    assert calls == 4  # one batched call computes all K samples
    ad.act(user_obs(2, seed=1))
    assert calls == 4
    handle.remove()
    rec = ad.last_internals
    assert rec is not None
    assert rec.velocities.shape == (2, 4, 6) and rec.hidden_step.shape == (2, 16)
    assert rec.obs_embedding.shape == (2, 9)
    assert rec.samples is not None and rec.samples.shape == (2, 3, 5, 4)
    assert not np.allclose(rec.samples[:, 0], rec.samples[:, 1])
    np.testing.assert_array_equal(rec.action, rec.chunk[:, 1])
    # the default postprocess keeps the first action_dim of A_m outputs
    noise = np.random.default_rng(0).normal(size=(2, 3, 5, 6)).astype(np.float32)
    ad.reset()
    a = ad.act(user_obs(2), noise=noise)
    with torch.no_grad():
        direct = model.sample_actions(
            {"feat": torch.from_numpy(user_obs(2)["feat"])}, torch.from_numpy(noise[:, 0])
        )
    np.testing.assert_allclose(a, direct[:, 0, :4].numpy(), rtol=1e-5, atol=1e-6)


def test_generic_adapter_protocol_errors() -> None:
    model = UserFlowPolicy()
    with pytest.raises(InvalidNameError, match="velocity_head"):
        TorchPolicyAdapter(
            model, output_layer="action_out_proj", chunk_size=5, n_action_steps=2, action_dim=4
        )
    with pytest.raises(InvalidInputError, match="sample_actions"):
        TorchPolicyAdapter(
            nn.Sequential(nn.Linear(2, 2)), output_layer="0", chunk_size=5, n_action_steps=2, action_dim=2
        )
    # a layer that sample_actions never calls is reported when the first chunk is computed
    model.unused = nn.Linear(3, 3)
    ad = TorchPolicyAdapter(
        model, output_layer="unused", chunk_size=5, n_action_steps=2, action_dim=3, model_action_dim=6
    )
    with pytest.raises(InvalidInputError, match="never called"):
        ad.act(user_obs(1))
    with pytest.raises(InvalidInputError, match="n_action_steps"):
        TorchPolicyAdapter(model, output_layer="velocity_head", chunk_size=5, n_action_steps=6, action_dim=4)
    with pytest.raises(InvalidInputError, match="NaN"):
        ok = TorchPolicyAdapter(
            model, output_layer="velocity_head", chunk_size=5, n_action_steps=2, action_dim=4
        )
        bad = user_obs(1)
        bad["feat"][0, 0, 0] = np.nan
        ok.act(bad)


def test_ensemble_reports_member_chunks() -> None:
    members = [BuiltinPolicyAdapter(make_model(seed=s), random_stats(), seed=s) for s in range(3)]
    ens = EnsembleAdapter(members)
    obs = make_obs(2, seed=0)
    a = ens.act(obs)
    rec = ens.last_internals
    assert rec is not None and rec.samples is not None
    assert rec.samples.shape == (2, 3, members[0].chunk_size, 4)
    np.testing.assert_array_equal(a, rec.action)
    np.testing.assert_array_equal(rec.samples[:, 0], rec.chunk)
    assert not np.allclose(rec.samples[:, 0], rec.samples[:, 1])
    mean = EnsembleAdapter(
        [BuiltinPolicyAdapter(make_model(seed=s), random_stats(), seed=s) for s in range(3)], "mean"
    )
    np.testing.assert_allclose(mean.act(obs), rec.samples[:, :, 0].mean(1), rtol=1e-5, atol=1e-6)
    ens.reset(seed=4)
    ens.act(obs)
    assert ens.last_internals is not None and ens.last_internals.new_chunk.all()


def test_ensemble_validation() -> None:
    with pytest.raises(InvalidInputError, match="at least 2"):
        EnsembleAdapter([BuiltinPolicyAdapter(make_model(), random_stats())])
    a = BuiltinPolicyAdapter(make_model(), random_stats())
    b = BuiltinPolicyAdapter(make_model(), random_stats(), n_action_steps=2)
    with pytest.raises(InvalidInputError, match="n_action_steps"):
        EnsembleAdapter([a, b])
    with pytest.raises(InvalidNameError):
        EnsembleAdapter([a, a], execute="vote")
