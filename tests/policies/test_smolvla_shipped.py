"""The SmolVLA shipped in the package (``smolvla`` spec, ``src/salus/policies/smolvla/weights/``).

Trained in the simulator with ``salus policy train --arch smolvla`` (docs/policies.md). It must load
offline through LeRobot's own ``SmolVLAPolicy.from_pretrained`` and through ``salus.policies.load_policy``,
and drive the simulator for a few steps.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from the model hub
os.environ.setdefault("MUJOCO_GL", "egl")
pytest.importorskip("lerobot", reason="LeRobot extra not installed (make install-lerobot)")

import torch  # noqa: E402

from salus.policies import DEFAULT_POLICY, load_policy, packaged_weights_dir  # noqa: E402
from salus.policies.smolvla import ensure_torchvision_importable  # noqa: E402
from salus.policies.smolvla.configuration_smolvla import MAPPING_FILE  # noqa: E402
from salus.signals.analysis import load_extractor_for_policy, policy_weights_fingerprint  # noqa: E402
from salus.sim import make_env  # noqa: E402

SHIPPED_WEIGHTS_DIR = packaged_weights_dir("smolvla")

FILES = ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json",
         MAPPING_FILE, "train_log.json", "vlm/config.json", "vlm/tokenizer.json")  # fmt: skip


def test_shipped_folder_is_complete_and_small() -> None:
    for name in FILES:
        assert (SHIPPED_WEIGHTS_DIR / name).is_file(), name
    total = sum(p.stat().st_size for p in SHIPPED_WEIGHTS_DIR.rglob("*") if p.is_file())
    assert total < 10 * 2**20
    log = json.loads((SHIPPED_WEIGHTS_DIR / "train_log.json").read_text())
    assert log["arch"] == "smolvla" and set(log["tasks"]) == {"pick_place", "push", "stack", "pick_color"}
    # no machine-specific path is shipped: LeRobot's VLM name is relative to the folder
    assert json.loads((SHIPPED_WEIGHTS_DIR / "config.json").read_text())["vlm_model_name"] == "vlm"


def test_shipped_loads_with_lerobot_and_acts_in_the_simulator() -> None:
    ensure_torchvision_importable()
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action

    folder = str(SHIPPED_WEIGHTS_DIR)
    vlm = str(SHIPPED_WEIGHTS_DIR / "vlm")
    cfg = PreTrainedConfig.from_pretrained(folder)
    cfg.vlm_model_name = vlm  # the folder's own VLM config and tokenizer
    policy = SmolVLAPolicy.from_pretrained(folder, config=cfg)
    policy.eval()
    pre = PolicyProcessorPipeline.from_pretrained(
        folder, config_filename="policy_preprocessor.json",
        overrides={"tokenizer_processor": {"tokenizer_name": vlm}},
    )  # fmt: skip
    post = PolicyProcessorPipeline.from_pretrained(
        folder, config_filename="policy_postprocessor.json",
        to_transition=policy_action_to_transition, to_output=transition_to_policy_action,
    )  # fmt: skip
    mapping = json.loads((SHIPPED_WEIGHTS_DIR / MAPPING_FILE).read_text())
    env = make_env("pick_place")
    obs, _ = env.reset(seed=0)
    torch.manual_seed(0)
    try:
        for _ in range(5):
            raw = {
                dst: torch.from_numpy(np.ascontiguousarray(obs[src]))[None].permute(0, 3, 1, 2).float() / 255
                for src, dst in mapping["image_keys"].items()
            }
            raw["observation.state"] = torch.from_numpy(
                obs["state"][mapping["state_indices"]].astype(np.float32)
            )[None]
            raw["task"] = [obs["task"]]
            with torch.no_grad():
                action = post(policy.select_action(pre(raw)))
            assert action.shape == (1, 4) and torch.isfinite(action).all()
            obs, *_ = env.step(np.clip(action[0].numpy(), -1, 1))
    finally:
        env.close()


def test_shipped_signal_statistics_are_fitted_for_these_weights() -> None:
    """`salus collect --policy smolvla` needs them; a stale file (other weights) is refused."""
    extractor = load_extractor_for_policy("smolvla")
    assert extractor.meta["weights_sha256"] == policy_weights_fingerprint("smolvla")
    assert extractor.meta["policy"] == "smolvla" and extractor.meta["successful"] >= 20
    assert extractor.cluster_radius is not None and extractor.cluster_radius > 0


def test_shipped_is_the_default_and_the_smolvla_spec_without_a_path() -> None:
    assert DEFAULT_POLICY == "smolvla"
    policy = load_policy("smolvla", seed=0)
    assert policy.action_dim == 4 and policy.n_action_steps == 4
    env = make_env("push")
    obs, _ = env.reset(seed=0)
    try:
        policy.reset()
        for step in range(6):
            action = policy.act(obs)
            rec = policy.last_internals
            assert action.shape == (4,) and np.isfinite(action).all()
            assert rec.chunk.shape == (1, 16, 4) and int(rec.chunk_offset[0]) == step % 4
            obs, *_ = env.step(action)
    finally:
        env.close()
