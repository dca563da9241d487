"""Every registered network: streaming equals the sequence path; configs validate."""

from __future__ import annotations

import pytest
import torch

from salus.errors import InvalidInputError, InvalidNameError
from salus.predictor import MODEL_NAMES, ModelConfig, SplitConfig, TrainConfig, build_model

SMALL = {
    "mlp_hidden": (16, 16),
    "tcn_channels": 8,
    "tcn_dilations": (1, 2),
    "safe_hidden": (16,),
    "lstm_hidden": 8,
    "gru_hidden": 8,
    "dropout": 0.0,
}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_streaming_matches_sequence_with_reset(name):
    torch.manual_seed(0)
    cfg = ModelConfig.of(name, **SMALL)
    in_dim = 24 if cfg.input_kind == "signals" else 10
    model = build_model(cfg, in_dim, n_horizons=3, n_types=4).eval()
    B, T, cut = 3, 17, 9
    x = torch.randn(B, T, in_dim)
    with torch.no_grad():
        full = model.probs(x)  # (B, T, P)
        assert full.shape == (B, T, model.n_probs)
        assert torch.all((full >= 0) & (full <= 1))
        state = model.init_state(B)
        out = []
        for t in range(cut):
            p, state = model.step(x[:, t], state)
            out.append(p)
        torch.testing.assert_close(torch.stack(out, 1), full[:, :cut], rtol=1e-5, atol=1e-6)
        # Environment 1 starts a new episode at step `cut`: its stream must equal a fresh sequence.
        state = model.reset_state(state, 1)
        fresh = model.probs(x[1:2, cut:])[0]
        rest = []
        for t in range(cut, T):
            p, state = model.step(x[:, t], state)
            rest.append(p)
        rest_t = torch.stack(rest, 1)
        torch.testing.assert_close(rest_t[1], fresh, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rest_t[0], full[0, cut:], rtol=1e-5, atol=1e-6)


def test_tcn_receptive_field_is_causal_and_bounded():
    torch.manual_seed(0)
    cfg = ModelConfig.of("salus-tcn", **SMALL)
    model = build_model(cfg, 24, 2, 4).eval()
    R = model.receptive_field
    assert 1 + (cfg.tcn_kernel - 1) * sum(cfg.tcn_dilations) == R
    x = torch.randn(1, 40, 24)
    y = x.clone()
    y[0, 30] += 5.0  # a change at t=30 affects t in [30, 30 + R - 1] only
    with torch.no_grad():
        d = (model.probs(x) - model.probs(y)).abs().sum(-1)[0]
    assert torch.all(d[:30] == 0)
    assert torch.all(d[30 + R :] == 0)
    assert d[30] > 0


def test_configs_validate():
    with pytest.raises(InvalidNameError, match="salus-mlp"):
        ModelConfig(name="transformer")
    with pytest.raises(InvalidInputError):
        ModelConfig(mlp_hidden=())
    with pytest.raises(InvalidInputError):
        TrainConfig(horizons=(10, 6))
    with pytest.raises(InvalidInputError):
        SplitConfig(val_fraction=0.4, calib_fraction=0.3, test_fraction=0.3)
    cfg = TrainConfig(split=SplitConfig(holdout_tasks=("push",)))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig.from_dict(ModelConfig(name="safe-lstm").to_dict()).name == "safe-lstm"


def test_a_model_takes_only_its_own_architecture_options():
    """Each model has its own config class (its registry entry's): another model's option is
    refused with the model's own list; a checkpoint records only its own; a checkpoint of every
    field (before) still loads."""
    from dataclasses import asdict, replace

    from salus.predictor.config import SalusMLPConfig, SalusTreesConfig, config_class

    with pytest.raises(InvalidInputError, match=r"'salus-mlp' does not read \['trees'\].*mlp_hidden"):
        ModelConfig(name="salus-mlp", trees=10)
    with pytest.raises(InvalidInputError, match="safe-lstm.*lstm_hidden"):
        ModelConfig(name="safe-lstm", dropout=0.3)
    cfg = ModelConfig.of("salus-trees", **SMALL, trees=7)
    assert isinstance(cfg, SalusTreesConfig) and cfg.trees == 7 and not hasattr(cfg, "gru_hidden")
    assert type(replace(cfg, feature_groups=("signals",))) is SalusTreesConfig
    assert isinstance(ModelConfig(), SalusMLPConfig) and config_class("oracle-risk") is config_class(
        "salus-risk"
    )
    with pytest.raises(InvalidInputError, match="SalusTreesConfig, not SalusMLPConfig"):
        SalusMLPConfig(name="salus-trees")
    saved = cfg.to_dict()
    assert "trees" in saved and "mlp_hidden" not in saved and "gru_hidden" not in saved
    assert ModelConfig.from_dict(saved) == cfg
    old = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}  # every field
    old["mlp_hidden"] = [7]  # a field the trees never read, set in an old checkpoint
    assert ModelConfig.from_dict(old) == cfg


def test_registry_names_every_model_and_refuses_unknown_ones():
    from salus.predictor import get_model_spec

    assert {"salus-risk", "salus-mlp", "salus-tcn", "safe-mlp", "safe-lstm", "oracle-risk"} <= set(
        MODEL_NAMES
    )
    assert get_model_spec("oracle-risk").deployable is False and get_model_spec("salus-risk").deployable
    assert "privileged" in ModelConfig(name="oracle-risk").groups
    assert "privileged" not in ModelConfig(name="salus-risk").groups
    with pytest.raises(InvalidNameError, match="salus-risk"):
        get_model_spec("gpt")
    with pytest.raises(InvalidNameError, match="knn"):
        ModelConfig(name="salus-risk", feature_groups=("signals", "pixels"))
    with pytest.raises(InvalidInputError, match="horizons"):
        ModelConfig(name="salus-mlp", objective="horizons")


def test_risk_model_has_an_episode_row_unless_ablated():
    full = build_model(ModelConfig.of("salus-risk", **SMALL), 10, n_horizons=3, n_types=4)
    ablated = build_model(ModelConfig.of("salus-risk", objective="horizons", **SMALL), 10, 3, 4)
    x = torch.randn(2, 5, 10)
    assert full(x).shape == (2, 5, 4, 5) and full.probs(x).shape == (2, 5, 4)
    assert ablated(x).shape == (2, 5, 3, 5)
