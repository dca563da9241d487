"""DART-style noise injection while recording demonstrations (`salus policy train --demo-noise`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

os.environ.setdefault("MUJOCO_GL", "egl")

import salus.sim  # noqa: E402
from salus.cli.main import app  # noqa: E402
from salus.errors import InvalidInputError  # noqa: E402
from salus.policies.builtin.training import check_demo_noise, record_demonstrations  # noqa: E402


def _record(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
    """Record one push demonstration; returns it with the expert's outputs and the executed actions."""
    expert_out: list[np.ndarray] = []
    executed: list[np.ndarray] = []
    make_env, expert_cls = salus.sim.make_env, salus.sim.ScriptedExpert

    class SpyExpert(expert_cls):  # type: ignore[misc, valid-type]
        def reset(self) -> None:
            expert_out.clear()
            executed.clear()
            super().reset()

        def act(self, observation: Any = None) -> np.ndarray:
            action = super().act(observation)
            expert_out.append(np.array(action, dtype=np.float32))
            return action

    def spy_make_env(*args: Any, **kw: Any) -> Any:
        env = make_env(*args, **kw)
        step = env.step

        def spy_step(action: np.ndarray) -> Any:
            executed.append(np.array(action, dtype=np.float32))
            return step(action)

        env.step = spy_step  # type: ignore[method-assign]
        return env

    monkeypatch.setattr(salus.sim, "make_env", spy_make_env)
    monkeypatch.setattr(salus.sim, "ScriptedExpert", SpyExpert)
    demos = record_demonstrations(["push"], 1, image_size=32, cameras=("front",), **kwargs)
    return demos, list(expert_out), list(executed)


def test_noise_changes_the_executed_actions_but_labels_stay_the_experts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clean, clean_expert, clean_exec = _record(monkeypatch, action_noise=0.0)
    noisy, expert, executed = _record(monkeypatch, demo_noise=0.3)
    assert noisy.attempts == {"push": 1}  # the kept episode is the one the spies saw last
    # without noise the expert's action is executed as is
    np.testing.assert_allclose(np.stack(clean_exec), np.clip(np.stack(clean_expert), -1, 1), atol=1e-6)
    labels, exe = noisy.action, np.stack(executed)
    assert labels.shape == exe.shape
    np.testing.assert_array_equal(labels, np.stack(expert))  # label = the expert's clean action
    np.testing.assert_array_equal(exe[:, 3], labels[:, 3])  # gripper untouched
    diff = exe[:, :3] - np.clip(labels[:, :3], -1, 1)
    assert np.mean(np.abs(diff) > 1e-6) > 0.8 and 0.1 < diff[np.abs(exe[:, :3]) < 1].std() < 0.5
    # the noise changes the visited states (same episode seed)
    n = min(clean.num_frames, noisy.num_frames)
    assert not np.allclose(clean.state[:n], noisy.state[:n])


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf")])
def test_bad_demo_noise_raises(bad: float) -> None:
    with pytest.raises(InvalidInputError, match="demo noise"):
        check_demo_noise(bad)
    with pytest.raises(InvalidInputError, match="demo noise"):
        record_demonstrations(["push"], 1, demo_noise=bad)


def test_cli_rejects_bad_demo_noise(tmp_path: Any) -> None:
    result = CliRunner().invoke(app, ["policy", "train", "--demo-noise", "2", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2  # refused where the option is parsed, with the valid range
    assert "--demo-noise" in result.output and "[0, 1], got 2.0" in result.output
    assert not (tmp_path / "p").exists()
