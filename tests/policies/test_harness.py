"""The episode harness: planned episodes of a real policy in the simulator, B at a time, with taps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from salus.errors import InvalidInputError, InvalidNameError
from salus.policies import load_policy
from salus.policies.harness import EpisodePlan, EpisodeTap, run_policy_episodes


class CountingTap(EpisodeTap):
    """Counts each plan's live steps and records the order of group starts and ends."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.groups: list[list[int]] = []
        self.ended: list[int] = []
        self._base = 0

    def start(self, plans: Any) -> None:
        self._base = len(self.steps)
        self.steps += [0] * len(plans)
        self.groups.append([p.seed for p in plans])

    def step(self, obs: dict[str, Any], actions: np.ndarray, internals: Any, live: Any) -> None:
        assert actions.shape == (len(live), 4) and internals.action.shape[0] == len(live)
        assert obs["state"].shape == (len(live), 22) and len(obs["task"]) == len(live)
        for b, running in enumerate(live):
            self.steps[self._base + b] += int(running)

    def end(self, row: int, outcome: Any) -> None:
        self.ended.append(outcome.plan.seed)


def test_taps_see_every_live_step_and_outcomes_keep_the_plan_order() -> None:
    policy = load_policy("builtin")
    plans = [
        EpisodePlan(t, 40 + i, max_steps=12 + 3 * i) for i, t in enumerate(("push", "stack", "pick_place"))
    ]
    tap = CountingTap()
    seen: list[int] = []
    out = run_policy_episodes(
        policy, plans, batch_size=2, taps=[tap], progress=lambda o: seen.append(o.plan.seed)
    )
    assert [o.plan for o in out] == plans and tap.groups == [[40, 41], [42]]
    assert tap.steps == [o.steps for o in out] == [12, 15, 18]  # step limits: no policy step after the end
    assert sorted(tap.ended) == sorted(seen) == [40, 41, 42]
    assert all(o.label["failure_type"] in ("none", "timeout", "drop", "miss", "collision") for o in out)
    # the same plan alone gives the same episode (row b's policy noise is seeded with its plan's seed)
    alone = run_policy_episodes(policy, plans[1:2])
    assert alone[0].steps == out[1].steps and alone[0].success == out[1].success


def test_bad_harness_arguments_name_what_is_allowed() -> None:
    policy = load_policy("builtin")
    plan = [EpisodePlan("push", 0, max_steps=2)]
    with pytest.raises(InvalidNameError, match="expert"):
        run_policy_episodes(policy, plan, actor="human")
    with pytest.raises(InvalidInputError, match="batch_size must be an int >= 1"):
        run_policy_episodes(policy, plan, batch_size=0)
    with pytest.raises(InvalidInputError, match="at least one episode plan"):
        run_policy_episodes(policy, [])
