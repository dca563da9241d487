"""`salus policy train` and `salus policy eval` end to end on the real simulator (tiny settings)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ.setdefault("MUJOCO_GL", "egl")

from salus.cli.main import app  # noqa: E402
from salus.policies import load_policy  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("policy")
    result = CliRunner().invoke(
        app,
        [
            "policy",
            "train",
            "--tasks",
            "pick_color",
            "--demos",
            "2",
            "--steps",
            "3",
            "--batch-size",
            "8",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    log = json.loads(result.stdout)
    assert log["episodes_per_task"] == {"pick_color": 2} and log["frames"] > 20
    return out


def test_train_writes_a_loadable_policy(trained: Path) -> None:
    assert {p.name for p in trained.iterdir()} >= {"config.json", "model.safetensors", "stats.safetensors"}
    policy = load_policy(f"builtin:{trained}")
    assert policy.config.extra["tasks"] == ["pick_color"]  # type: ignore[attr-defined]
    # the vocabulary was extended with the task texts' words, so none maps to <unk>
    tok = policy.config.tokenizer()  # type: ignore[attr-defined]
    assert tok.unk_id not in tok.encode("pick up the blue cube")[:5]


def test_eval_reports_success_per_task_and_condition(trained: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "policy", "eval", "--policy", f"builtin:{trained}", "--episodes", "2", "--max-steps", "6",
            "--perturb", "obs_noise=0.5", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tasks"] == ["pick_color"]  # defaults to the policy's training tasks
    assert set(report["conditions"]) == {"none", "obs_noise=0.5"}
    cell = report["conditions"]["obs_noise=0.5"]["tasks"]["pick_color"]
    assert cell["episodes"] == 2 and 0.0 <= cell["success_rate"] <= 1.0
    assert report["conditions"]["obs_noise=0.5"]["perturbations"] == [{"name": "obs_noise", "strength": 0.5}]


def test_eval_rejects_unknown_task(trained: Path) -> None:
    result = CliRunner().invoke(app, ["policy", "eval", "--policy", f"builtin:{trained}", "--task", "fly"])
    assert result.exit_code != 0
    assert "unknown task 'fly'" in str(result.exception)


def test_shipped_policy_is_real_and_imperfect() -> None:
    """The shipped weights succeed on some and fail on other scenes of an unperturbed task."""
    from salus.policies.evaluation import evaluate_policy
    from salus.sim import FAILURE_TYPES

    result = evaluate_policy(load_policy("builtin"), "pick_color", 8, seed=0, batch_size=8)
    assert 1 <= result["successes"] <= 7, result
    assert set(result["failure_types"]) <= set(FAILURE_TYPES)
