"""The policy-training job: its spec is checked before any work, and the architecture is a registry entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from salus.errors import InvalidInputError, InvalidNameError
from salus.jobs import POLICY_TRAINERS, PolicyTrainJob, run_policy_train


def test_spec_is_checked_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError, match="builtin, smolvla"):
        PolicyTrainJob(tmp_path, arch="diffusion")
    with pytest.raises(
        InvalidInputError, match=r"\['--dataset', '--hidden-size'\] apply to --arch smolvla only"
    ):
        PolicyTrainJob(tmp_path, dataset=tmp_path, hidden_size=64)
    with pytest.raises(InvalidNameError, match="task"):
        PolicyTrainJob(tmp_path, tasks=("fly",))
    with pytest.raises(InvalidInputError, match="demo noise"):
        PolicyTrainJob(tmp_path, demo_noise=2.0)
    with pytest.raises(InvalidInputError, match="--demos must be an integer >= 1, got 0"):
        PolicyTrainJob(tmp_path, tasks=("push",), demos=0)
    with pytest.raises(InvalidInputError, match="demos_per_task"):
        PolicyTrainJob(tmp_path, tasks=("push",), demos={"push": 0})
    job = PolicyTrainJob(tmp_path, tasks=("push", "stack"), demos={"push": 3, "stack": 1})
    assert job.recording()["recording"]["demos_per_task"] == {"push": 3, "stack": 1}
    job = PolicyTrainJob(tmp_path, tasks=("push", "stack"), demos=2, task_demos=("push=5",))
    assert job.demos == {"push": 5, "stack": 2}
    with pytest.raises(InvalidInputError, match="not a training task"):
        PolicyTrainJob(tmp_path, tasks=("push",), demos=2, task_demos=("stack=5",))
    # checked in the command's order: the architecture before the tasks, then SmolVLA-only options
    with pytest.raises(InvalidNameError, match="policy architecture"):
        PolicyTrainJob(tmp_path, arch="bogus", tasks=("fly",))
    with pytest.raises(InvalidInputError, match=r"\['--checkpoint-every', '--init-from'\]"):
        PolicyTrainJob(tmp_path, init_from=tmp_path, checkpoint_every=5, tasks=("fly",))


def test_a_new_architecture_is_one_registry_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def trainer(job: PolicyTrainJob, bar: Any, log: Any) -> dict[str, Any]:
        seen.append(job.arch)
        bar.update(bar.add_task("training", total=1), completed=1)  # the null bar takes progress too
        return {"frames": 0}

    monkeypatch.setitem(POLICY_TRAINERS, "mine", trainer)
    assert run_policy_train(PolicyTrainJob(tmp_path, arch="mine", tasks=("push",))) == {"frames": 0}
    assert seen == ["mine"]
