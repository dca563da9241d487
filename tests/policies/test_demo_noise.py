"""Options of demonstration recording: DART-style noise injection (`--demo-noise`) and per-task
demonstration counts (`--task-demos`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

os.environ.setdefault("MUJOCO_GL", "egl")

import salus.sim  # noqa: E402
from salus.cli.main import app  # noqa: E402
from salus.errors import InvalidInputError  # noqa: E402
from salus.policies.demonstrations import (  # noqa: E402
    check_demo_noise,
    record_demonstrations,
    resolve_demo_counts,
)


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


# -- per-task demonstration counts ---------------------------------------------------------------------
def test_per_task_counts_record_each_tasks_own_number() -> None:
    kw: dict[str, Any] = {"image_size": 32, "cameras": ("front",)}
    demos = record_demonstrations(["pick_color", "push"], {"pick_color": 2, "push": 1}, **kw)
    assert demos.task_name == ["pick_color", "pick_color", "push"]
    assert demos.attempts == {"pick_color": 2, "push": 1}  # the expert succeeds on these seeds
    # a task's episodes do not depend on the other tasks' counts: push alone gives the same episode
    alone = record_demonstrations(["push"], 1, **kw)
    start = int(demos.episode_ends[1])
    np.testing.assert_array_equal(demos.state[start:], alone.state)
    np.testing.assert_array_equal(demos.action[start:], alone.action)


def test_resolve_demo_counts() -> None:
    assert resolve_demo_counts(["push", "stack"], 3) == {"push": 3, "stack": 3}
    assert resolve_demo_counts(["push", "stack"], {"stack": 2, "push": 5}) == {"push": 5, "stack": 2}
    assert list(resolve_demo_counts(["stack", "push"], {"push": 5, "stack": 2})) == ["stack", "push"]


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        (0, ">= 1"),
        (True, ">= 1"),
        (2.0, ">= 1"),
        ({"push": 2}, "missing"),
        ({"push": 2, "stack": 2, "pick_place": 1}, "unknown"),
        ({"push": 2, "stack": 0}, ">= 1 for every task"),
        ({"push": 2, "stack": -1}, ">= 1 for every task"),
    ],
)
def test_bad_demo_counts_raise(counts: Any, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        resolve_demo_counts(["push", "stack"], counts)
    with pytest.raises(InvalidInputError, match=match):
        record_demonstrations(["push", "stack"], counts)


def test_cli_task_demos_override_demos_for_the_named_tasks(tmp_path: Path) -> None:
    out = tmp_path / "p"
    args = ["policy", "train", "--arch", "builtin", "--tasks", "pick_color,push", "--demos", "1",
            "--task-demos", "pick_color=2", "--steps", "1", "--batch-size", "2", "--out", str(out), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    log = json.loads((out / "train_log.json").read_text())
    assert log["episodes_per_task"] == {"pick_color": 2, "push": 1}
    assert log["demos_per_task"] == {"pick_color": 2, "push": 1}


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("push", "TASK=N"),
        ("push=0", "TASK=N"),
        ("push=two", "TASK=N"),
        ("push=1.5", "TASK=N"),
        ("=3", "TASK=N"),
        ("stack=3", "not a training task"),
        ("push=2,push=3", "twice"),
    ],
)
def test_cli_rejects_bad_task_demos(tmp_path: Path, value: str, match: str) -> None:
    out = tmp_path / "p"
    args = ["policy", "train", "--tasks", "push", "--task-demos", value, "--steps", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, InvalidInputError) and match in str(result.exception)
    assert not out.exists()  # refused before anything is recorded
