"""Bad inputs, configuration validation, checkpoints and the policy registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from policy_helpers import TASK, make_model, make_obs, random_stats, small_config

from salus.errors import CheckpointError, InvalidInputError, InvalidNameError
from salus.policies import POLICY_LOADERS, load_policy
from salus.policies.builtin import (
    BuiltinConfig,
    BuiltinPolicyAdapter,
    WordTokenizer,
    load_pretrained,
    save_pretrained,
)
from salus.policies.builtin.modeling_builtin import STATS_FILE, WEIGHTS_FILE


@pytest.fixture
def ad() -> BuiltinPolicyAdapter:
    return BuiltinPolicyAdapter(make_model(), random_stats())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.pop("image_wrist"), "missing \\['image_wrist'\\]"),
        (lambda o: o.pop("task"), "missing \\['task'\\]"),
        (lambda o: o.__setitem__("state", np.zeros((2, 21), np.float32)), "'state' must have shape"),
        (lambda o: o["state"].__setitem__((1, 3), np.nan), "NaN"),
        (lambda o: o["state"].__setitem__((0, 0), np.inf), "NaN or inf"),
        (
            lambda o: o.__setitem__("image_front", np.zeros((2, 16, 16, 3), np.uint8)),
            "'image_front' must have shape",
        ),
        (lambda o: o.__setitem__("image_front", o["image_front"].astype(np.float32)), "must be uint8"),
        (lambda o: o.__setitem__("task", ["a"]), "list of B=2 str"),
        (lambda o: o.__setitem__("task", ["a", 3]), "must be str"),
    ],
)
def test_bad_observations_are_clear_errors(ad: BuiltinPolicyAdapter, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    obs = make_obs(2)
    mutate(obs)
    with pytest.raises(InvalidInputError, match=message):
        ad.act(obs)


def test_other_bad_calls(ad: BuiltinPolicyAdapter) -> None:
    with pytest.raises(InvalidInputError, match="mapping"):
        ad.act([1, 2, 3])  # type: ignore[arg-type]
    ad.act(make_obs(2))
    with pytest.raises(InvalidInputError, match="batch size changed from 2 to 3"):
        ad.act(make_obs(3))
    with pytest.raises(InvalidInputError, match="env_index"):
        ad.reset(env_index=2)
    with pytest.raises(InvalidInputError, match="noise must have shape"):
        ad.reset()
        ad.act(make_obs(2), noise=np.zeros((2, 3, 4)))
    with pytest.raises(InvalidInputError, match="num_samples"):
        BuiltinPolicyAdapter(make_model(), random_stats(), num_samples=0)
    ad.reset()
    ad.act(make_obs(3))  # after reset() another batch size is fine


def test_config_validation_and_json_roundtrip(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="n_action_steps"):
        BuiltinConfig(chunk_size=4, n_action_steps=5)
    with pytest.raises(InvalidInputError, match="cameras"):
        BuiltinConfig(cameras=("top",))
    with pytest.raises(InvalidInputError, match="positive int"):
        BuiltinConfig(num_steps=0)
    with pytest.raises(InvalidInputError, match="divisible"):
        BuiltinConfig(expert_hidden=30, expert_heads=4)
    with pytest.raises(InvalidInputError, match="vocab"):
        BuiltinConfig(vocab=("a", "b"))
    with pytest.raises(InvalidInputError, match="state_features"):
        BuiltinConfig(state_features=("joint_pos", "object_pos"))
    assert BuiltinConfig().state_indices() == [*range(0, 7), *range(14, 22)]  # no joint velocities
    cfg = small_config()
    cfg.save(tmp_path)
    assert BuiltinConfig.load(tmp_path) == cfg
    (tmp_path / "config.json").write_text(json.dumps({**cfg.to_dict(), "bogus": 1}))
    with pytest.raises(CheckpointError, match="bogus"):
        BuiltinConfig.load(tmp_path)


def test_tokenizer_is_deterministic_word_level() -> None:
    cfg = small_config()
    tok = cfg.tokenizer()
    ids = tok.encode(TASK.upper() + "!")
    assert ids == tok.encode(TASK) and len(ids) == cfg.max_text_tokens
    assert tok.unk_id not in ids[: len(WordTokenizer.words(TASK))]
    assert tok.encode("zebra cube")[0] == tok.unk_id
    assert tok.encode("")[0] == tok.pad_id
    assert small_config().vocab == cfg.vocab  # vocabulary order is deterministic


def test_save_load_roundtrip_and_missing_files(tmp_path: Path) -> None:
    model, stats = make_model(), random_stats()
    save_pretrained(tmp_path, model, stats)
    obs = make_obs(2)
    noise = np.random.default_rng(0).normal(size=(2, model.config.chunk_size, 4))
    a = BuiltinPolicyAdapter(model, stats).act(obs, noise=noise)
    loaded = load_policy(f"builtin:{tmp_path}")
    assert isinstance(loaded, BuiltinPolicyAdapter)
    b = loaded.act(obs, noise=noise)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    (tmp_path / STATS_FILE).unlink()
    with pytest.raises(CheckpointError, match="without the statistics"):
        load_pretrained(tmp_path)
    save_pretrained(tmp_path, model, stats)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE):
        load_policy(f"builtin:{tmp_path}")
    other = make_model()
    save_pretrained(tmp_path, other, stats)
    small_config(expert_hidden=16).save(tmp_path)  # weights no longer match the config
    with pytest.raises(CheckpointError, match="does not match"):
        load_policy(f"builtin:{tmp_path}")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(f"builtin:{tmp_path / 'nope'}")


def test_registry() -> None:
    assert {"builtin", "smolvla", "ensemble"} <= set(POLICY_LOADERS)
    with pytest.raises(InvalidNameError, match="builtin"):
        load_policy("pi0:somewhere")
    with pytest.raises(InvalidInputError, match="ensemble:SPEC"):
        load_policy("ensemble")


def test_shipped_builtin_policy_loads_and_acts() -> None:
    ad = load_policy("builtin", num_samples=2)
    assert isinstance(ad, BuiltinPolicyAdapter)
    cfg = ad.config
    assert set(cfg.extra["tasks"]) >= {"pick_place", "push", "stack", "pick_color"}
    size = cfg.image_size
    a = ad.act(make_obs(None, size=size))
    assert a.shape == (4,) and np.all(np.isfinite(a))
    rec = ad.last_internals
    assert rec is not None and rec.samples is not None
    assert rec.velocities.shape == (1, cfg.num_steps, 4) and rec.obs_embedding.shape == (1, cfg.embed_dim)
