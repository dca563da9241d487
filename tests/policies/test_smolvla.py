"""The salus adapter around LeRobot's real SmolVLAPolicy, built offline with a tiny random configuration."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from the model hub
pytest.importorskip("lerobot", reason="LeRobot extra not installed (make install-lerobot)")

import torch  # noqa: E402

from salus.errors import (  # noqa: E402
    CheckpointError,
    InvalidInputError,
    InvalidNameError,
    MissingDependencyError,
)
from salus.policies import load_policy  # noqa: E402
from salus.policies.smolvla import (  # noqa: E402
    HOOK_MODULE,
    PREFIX_MODULE,
    SmolVLAAdapter,
    SmolVLAAdapterConfig,
    build_tiny_smolvla,
)

CHUNK, N_ACTION, STEPS, HIDDEN = 8, 3, 3, 64
EXPERT = int(HIDDEN * 0.75)  # SmolVLA's expert_width_multiplier
A_M = 32  # max_action_dim
TASK = "pick up the cube and place it on the target"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_smolvla(
        tmp_path_factory.mktemp("tiny_smolvla"),
        chunk_size=CHUNK,
        n_action_steps=N_ACTION,
        num_steps=STEPS,
        hidden_size=HIDDEN,
    )


def obs(batch: int | None = 2, seed: int = 0, size: int = 40) -> dict[str, Any]:
    """A salus simulator observation (single when batch is None)."""
    rng = np.random.default_rng(seed)
    shape = () if batch is None else (batch,)
    tasks = [TASK, "push the block to the goal region"] * 4
    return {
        "image_front": rng.integers(0, 256, (*shape, size, size, 3), dtype=np.uint8),
        "image_wrist": rng.integers(0, 256, (*shape, size, size, 3), dtype=np.uint8),
        "state": rng.normal(size=(*shape, 22)).astype(np.float32),
        "task": TASK if batch is None else tasks[:batch],
    }


def counting_hook(adapter: SmolVLAAdapter) -> tuple[list[Any], Any]:
    """An independent forward hook on action_out_proj recording (input, output) of every call."""
    calls: list[Any] = []
    module = adapter.policy.model.action_out_proj
    handle = module.register_forward_hook(lambda _m, a, o: calls.append((a[0].clone(), o.clone())))
    return calls, handle


def test_loads_through_registry_and_keeps_stdout_clean(
    tiny_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = load_policy(f"smolvla:{tiny_dir}", seed=3)
    assert isinstance(adapter, SmolVLAAdapter)
    assert type(adapter.policy).__name__ == "SmolVLAPolicy"
    assert type(adapter.policy).__module__ == "lerobot.policies.smolvla.modeling_smolvla"
    assert (adapter.action_dim, adapter.chunk_size, adapter.n_action_steps) == (4, CHUNK, N_ACTION)
    assert capsys.readouterr().out == ""


def test_hook_fires_num_steps_per_chunk_and_never_on_queued_steps(tiny_dir: Path) -> None:
    adapter = SmolVLAAdapter.from_pretrained(tiny_dir)
    calls, handle = counting_hook(adapter)
    try:
        for t in range(3 * N_ACTION + 1):
            before = len(calls)
            adapter.act(obs(seed=t))
            it = adapter.last_internals
            assert it is not None
            fired = len(calls) - before
            assert fired == (STEPS if t % N_ACTION == 0 else 0), (t, fired)
            assert it.new_chunk.tolist() == [t % N_ACTION == 0] * 2
    finally:
        handle.remove()


def test_every_step_has_its_own_internals(tiny_dir: Path) -> None:
    adapter = SmolVLAAdapter.from_pretrained(tiny_dir)
    calls, handle = counting_hook(adapter)
    embedding = np.zeros(0)
    try:
        for t in range(2 * N_ACTION + 2):
            adapter.act(obs(seed=t))
            it = adapter.last_internals
            assert it is not None
            chunk_id, offset = t // N_ACTION, t % N_ACTION
            assert it.chunk_id.tolist() == [chunk_id] * 2
            assert it.chunk_offset.tolist() == [offset] * 2
            # The record of a queued step comes from the chunk that produced it, at its own position.
            chunk_calls = calls[STEPS * chunk_id : STEPS * (chunk_id + 1)]
            hid_last = chunk_calls[-1][0]  # (B, C, H) at the last denoising step
            vel = torch.stack([o for _, o in chunk_calls], 1)  # (B, S, C, A_m)
            np.testing.assert_allclose(it.hidden_step, hid_last[:, offset].numpy(), rtol=1e-6)
            np.testing.assert_allclose(it.velocities, vel[:, :, offset].numpy(), rtol=1e-6)
            hid_all = torch.stack([i for i, _ in chunk_calls])  # (S, B, C, H)
            np.testing.assert_allclose(it.hidden_mean, hid_all.mean(dim=(0, 2)).numpy(), rtol=1e-5)
            np.testing.assert_array_equal(it.action, it.chunk[:, offset])
            # The embedding is that of the observation that produced the chunk: constant inside it.
            if offset == 0:
                assert chunk_id == 0 or not np.allclose(it.obs_embedding, embedding)
                embedding = it.obs_embedding.copy()
            np.testing.assert_array_equal(it.obs_embedding, embedding)
    finally:
        handle.remove()


def test_obs_embedding_is_the_masked_mean_of_the_vlm_prefix_output(tiny_dir: Path) -> None:
    from lerobot.policies.smolvla.modeling_smolvla import make_att_2d_masks

    adapter = SmolVLAAdapter.from_pretrained(tiny_dir)
    o = obs()  # two tasks of different lengths: the shorter one is padded
    adapter.act(o)
    assert adapter.last_internals is not None
    policy, model = adapter.policy, adapter.policy.model
    batch = adapter.preprocessor(adapter.lerobot_batch(o))
    with torch.no_grad():
        images, img_masks = policy.prepare_images(batch)
        lang_tokens = batch["observation.language.tokens"]
        lang_mask = batch["observation.language.attention_mask"]
        assert not lang_mask.all()
        embs, pad, att = model.embed_prefix(
            images, img_masks, lang_tokens, lang_mask, state=policy.prepare_state(batch)
        )
        (out, _), _ = model.vlm_with_expert.forward(
            attention_mask=make_att_2d_masks(pad, att),
            position_ids=torch.cumsum(pad, 1) - 1,
            past_key_values=None,
            inputs_embeds=[embs, None],
            use_cache=True,
            fill_kv_cache=True,
        )
    expected = torch.stack([out[i][pad[i]].mean(0) for i in range(2)]).numpy()
    np.testing.assert_allclose(adapter.last_internals.obs_embedding, expected, rtol=1e-5, atol=1e-6)


def test_captured_shapes(tiny_dir: Path) -> None:
    adapter = SmolVLAAdapter.from_pretrained(tiny_dir, num_samples=2)
    action = adapter.act(obs(batch=3))
    it = adapter.last_internals
    assert it is not None and action.shape == (3, 4)
    assert it.hidden_step.shape == (3, EXPERT) and it.hidden_mean.shape == (3, EXPERT)
    assert it.velocities.shape == (3, STEPS, A_M)
    assert it.obs_embedding.shape == (3, HIDDEN)
    assert it.chunk.shape == (3, CHUNK, 4) and it.action.shape == (3, 4)
    assert it.samples is not None and it.samples.shape == (3, 2, CHUNK, 4)
    for name in ("hidden_step", "hidden_mean", "velocities", "obs_embedding", "chunk"):
        assert np.all(np.isfinite(getattr(it, name))), name
    # Different images and tasks give different prefix embeddings.
    assert not np.allclose(it.obs_embedding[0], it.obs_embedding[1])
    adapter.reset()  # the batch size is fixed until reset
    assert adapter.act(obs(batch=None)).shape == (4,)


def test_reset_clears_queue_and_internals(tiny_dir: Path) -> None:
    adapter = SmolVLAAdapter.from_pretrained(tiny_dir)
    adapter.act(obs(seed=0))
    adapter.act(obs(seed=1))
    before = adapter.last_internals
    assert before is not None and before.chunk_offset.tolist() == [1, 1]
    adapter.policy._queues["action"].append(torch.zeros(2, 4))
    adapter.reset()
    assert adapter.last_internals is None
    assert len(adapter.policy._queues["action"]) == 0
    adapter.act(obs(seed=5))
    after = adapter.last_internals
    assert after is not None
    assert (
        after.new_chunk.all() and after.chunk_id.tolist() == [0, 0] and after.chunk_offset.tolist() == [0, 0]
    )
    assert not np.allclose(after.obs_embedding, before.obs_embedding)  # not stale: a new observation's
    # Resetting one environment restarts only its queue.
    adapter.act(obs(seed=6))
    adapter.reset(env_index=1)
    adapter.act(obs(seed=7))
    it = adapter.last_internals
    assert it is not None
    assert it.new_chunk.tolist() == [False, True]
    assert it.chunk_offset.tolist() == [2, 0] and it.chunk_id.tolist() == [0, 0]


def test_hooks_removed_after_each_chunk_and_on_error(tiny_dir: Path) -> None:
    adapter = SmolVLAAdapter.from_pretrained(tiny_dir)
    model = adapter.policy.model
    hooked = [adapter.policy.get_submodule(HOOK_MODULE), adapter.policy.get_submodule(PREFIX_MODULE)]
    adapter.act(obs())
    assert all(len(m._forward_hooks) == 0 for m in hooked)
    assert "embed_prefix" not in vars(model)

    class Boom(RuntimeError):
        pass

    def boom(*_: Any) -> None:
        raise Boom

    handle = hooked[0].register_forward_hook(boom)
    adapter.reset()
    with pytest.raises(Boom):
        adapter.act(obs())
    handle.remove()
    assert all(len(m._forward_hooks) == 0 for m in hooked)
    assert "embed_prefix" not in vars(model)
    adapter.reset()
    adapter.act(obs())  # still works


def test_k_samples_differ_and_sample_zero_is_executed(tiny_dir: Path) -> None:
    k = 3
    adapter = SmolVLAAdapter.from_pretrained(tiny_dir, num_samples=k, action_clip=None)
    calls, handle = counting_hook(adapter)
    noise = torch.randn(2, k, CHUNK, A_M, generator=torch.Generator().manual_seed(1))
    adapter.act(obs(), noise=noise.numpy())
    handle.remove()
    assert len(calls) == STEPS  # K chunks in one batched call per denoising step
    assert calls[0][0].shape[0] == 2 * k
    it = adapter.last_internals
    assert it is not None and it.samples is not None
    s = it.samples
    for i in range(k):
        for j in range(i + 1, k):
            assert np.abs(s[:, i] - s[:, j]).mean() > 1e-3
    np.testing.assert_array_equal(it.chunk, s[:, 0])
    single = SmolVLAAdapter.from_pretrained(tiny_dir, action_clip=None)
    single.act(obs(), noise=noise[:, 0].numpy())
    assert single.last_internals is not None
    np.testing.assert_allclose(single.last_internals.chunk, it.chunk, atol=1e-4)
    np.testing.assert_allclose(single.last_internals.obs_embedding, it.obs_embedding, atol=1e-4)


def test_actions_equal_unwrapped_policy_for_same_noise(tiny_dir: Path) -> None:
    from salus.policies.smolvla._compat import import_lerobot_smolvla

    lr = import_lerobot_smolvla()
    policy = lr.SmolVLAPolicy.from_pretrained(str(tiny_dir))
    pre = lr.PolicyProcessorPipeline.from_pretrained(
        str(tiny_dir), config_filename="policy_preprocessor.json"
    )
    post = lr.PolicyProcessorPipeline.from_pretrained(
        str(tiny_dir),
        config_filename="policy_postprocessor.json",
        to_transition=lr.policy_action_to_transition,
        to_output=lr.transition_to_policy_action,
    )
    policy.reset()
    adapter = SmolVLAAdapter.from_pretrained(tiny_dir, action_clip=None)
    gen = torch.Generator().manual_seed(0)
    for t in range(2 * N_ACTION + 1):
        o = obs(seed=t)
        noise = torch.randn(2, CHUNK, A_M, generator=gen)
        ours = adapter.act(o, noise=noise.numpy())
        theirs = post(policy.select_action(pre(adapter.lerobot_batch(o)), noise=noise.clone()))
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-6)
    # Without capture the actions are the same: the hooks only observe.
    plain = SmolVLAAdapter.from_pretrained(tiny_dir, action_clip=None, capture_internals=False)
    with_capture = SmolVLAAdapter.from_pretrained(tiny_dir, action_clip=None)
    for t in range(N_ACTION + 1):
        np.testing.assert_array_equal(plain.act(obs(seed=t)), with_capture.act(obs(seed=t)))
    it = plain.last_internals
    assert it is not None and it.hidden_step.shape == (2, 0) and it.obs_embedding.shape == (2, 0)


def test_seeded_noise_is_reproducible(tiny_dir: Path) -> None:
    a = SmolVLAAdapter.from_pretrained(tiny_dir, seed=11)
    b = SmolVLAAdapter.from_pretrained(tiny_dir, seed=11)
    c = SmolVLAAdapter.from_pretrained(tiny_dir, seed=12)
    xa, xb, xc = a.act(obs()), b.act(obs()), c.act(obs())
    np.testing.assert_array_equal(xa, xb)
    assert not np.allclose(xa, xc)
    assert np.all(np.abs(xa) <= 1.0)  # default action_clip


def test_bad_input_and_config_errors(tiny_dir: Path) -> None:
    adapter = SmolVLAAdapter.from_pretrained(tiny_dir)
    o = obs()
    with pytest.raises(InvalidInputError, match="missing"):
        adapter.act({k: v for k, v in o.items() if k != "image_wrist"})
    with pytest.raises(InvalidInputError, match="uint8"):
        adapter.act({**o, "image_front": o["image_front"].astype(np.float32)})
    with pytest.raises(InvalidInputError, match="state_indices"):
        adapter.act({**o, "state": o["state"][:, :10]})
    with pytest.raises(InvalidInputError, match="NaN"):
        adapter.act({**o, "state": np.full_like(o["state"], np.nan)})
    with pytest.raises(InvalidInputError, match="noise"):
        adapter.act(o, noise=np.zeros((2, CHUNK, 7)))
    with pytest.raises(InvalidNameError, match="observation.images.front"):
        SmolVLAAdapter.from_pretrained(tiny_dir, image_keys={"image_front": "observation.images.top"})
    with pytest.raises(InvalidInputError, match="n_action_steps"):
        SmolVLAAdapter.from_pretrained(tiny_dir, n_action_steps=CHUNK + 1)
    with pytest.raises(InvalidInputError, match="state_indices"):
        SmolVLAAdapter.from_pretrained(tiny_dir, state_indices=(0, 1, 2))
    with pytest.raises(InvalidInputError, match="num_samples"):
        SmolVLAAdapterConfig(num_samples=0)
    with pytest.raises(InvalidNameError, match="num_samples"):
        load_policy(f"smolvla:{tiny_dir}", num_sample=2)


def test_smolvla_without_a_path_needs_the_packaged_weights(tmp_path: Path, monkeypatch) -> None:
    """`smolvla` alone is the packaged SmolVLA; a package without its weights says what to pass."""
    import salus.policies

    monkeypatch.setattr(salus.policies, "packaged_weights_dir", lambda name: tmp_path / name)
    with pytest.raises(CheckpointError, match="smolvla:PATH"):
        load_policy("smolvla")


def test_state_and_action_index_mapping(tiny_dir: Path) -> None:
    adapter = SmolVLAAdapter.from_pretrained(tiny_dir, action_indices=(0, 3), action_clip=None)
    full = SmolVLAAdapter.from_pretrained(tiny_dir, action_clip=None)
    o = obs()
    np.testing.assert_array_equal(adapter.act(o), full.act(o)[:, [0, 3]])
    assert adapter.action_dim == 2
    # A wider env state with the policy's 22 entries picked by state_indices.
    idx = tuple(range(5, 27))
    wide = {**o, "state": np.concatenate([np.zeros((2, 5), np.float32), o["state"]], 1)}
    picked = SmolVLAAdapter.from_pretrained(tiny_dir, state_indices=idx, action_clip=None)
    full.reset()
    noise = np.random.default_rng(0).normal(size=(2, CHUNK, A_M)).astype(np.float32)
    np.testing.assert_allclose(picked.act(wide, noise=noise), full.act(o, noise=noise), rtol=1e-6)


def test_checkpoint_errors(tiny_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match="policy_preprocessor.json"):
        load_policy(f"smolvla:{broken}")


def test_missing_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from salus.policies.smolvla import _compat

    _compat.import_lerobot_smolvla.cache_clear()
    monkeypatch.setitem(sys.modules, "lerobot", None)
    try:
        with pytest.raises(MissingDependencyError, match=r"salus\[lerobot\].*install-lerobot"):
            _compat.import_lerobot_smolvla()
    finally:
        _compat.import_lerobot_smolvla.cache_clear()


def test_runs_in_the_simulator(tiny_dir: Path) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from salus.sim import make_env

    env = make_env("pick_place", image_size=32)
    adapter = load_policy(f"smolvla:{tiny_dir}")
    observation, _ = env.reset(seed=0)
    adapter.reset()
    try:
        for t in range(N_ACTION + 2):
            action = adapter.act(observation)
            assert action.shape == (4,) and env.action_space.contains(action)
            it = adapter.last_internals
            assert it is not None and it.chunk_offset.tolist() == [t % N_ACTION]
            observation, *_ = env.step(action)
    finally:
        env.close()


def test_package_import_is_cheap() -> None:
    import subprocess

    code = (
        "import sys, salus.policies.smolvla as m; m.SmolVLAAdapterConfig(); "
        "print(sorted(k for k in ('torch', 'lerobot', 'transformers') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
