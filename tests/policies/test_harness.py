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
        self.actions: list[list[np.ndarray]] = []
        self.groups: list[list[int]] = []
        self.ended: list[int] = []
        self._base = 0

    def start(self, plans: Any) -> None:
        self._base = len(self.steps)
        self.steps += [0] * len(plans)
        self.actions += [[] for _ in plans]
        self.groups.append([p.seed for p in plans])

    def step(self, obs: dict[str, Any], actions: np.ndarray, internals: Any, live: Any) -> None:
        assert actions.shape == (len(live), 4) and internals.action.shape[0] == len(live)
        assert obs["state"].shape == (len(live), 22) and len(obs["task"]) == len(live)
        for b, running in enumerate(live):
            self.steps[self._base + b] += int(running)
            if running:
                self.actions[self._base + b].append(actions[b].copy())

    def end(self, row: int, outcome: Any) -> None:
        self.ended.append(outcome.plan.seed)


def test_taps_see_every_live_step_and_outcomes_keep_the_plan_order() -> None:
    policy = load_policy("builtin")
    plans = [
        EpisodePlan(t, s, max_steps=12 + 3 * i)
        for i, (t, s) in enumerate((("push", 40), ("stack", 57), ("pick_place", 42)))
    ]
    tap = CountingTap()
    seen: list[int] = []
    out = run_policy_episodes(
        policy, plans, batch_size=2, taps=[tap], progress=lambda o: seen.append(o.plan.seed)
    )
    assert [o.plan for o in out] == plans and [o.index for o in out] == [0, 1, 2]
    assert tap.groups == [[40, 57], [42]]
    assert tap.steps == [o.steps for o in out] == [12, 15, 18]  # step limits: no policy step after the end
    assert sorted(tap.ended) == sorted(seen) == [40, 42, 57]
    assert all(o.label["failure_type"] in ("none", "timeout", "drop", "miss", "collision") for o in out)
    # the same plan alone gives the same episode: row b's policy noise is seeded with its own plan's
    # seed (57, not the group's first seed + 1), the actions equal up to batched arithmetic
    solo = CountingTap()
    alone = run_policy_episodes(policy, plans[1:2], taps=[solo])
    assert alone[0].steps == out[1].steps and alone[0].success == out[1].success
    np.testing.assert_allclose(np.stack(solo.actions[0]), np.stack(tap.actions[1]), rtol=1e-4, atol=1e-5)


def test_bad_harness_arguments_name_what_is_allowed() -> None:
    policy = load_policy("builtin")
    plan = [EpisodePlan("push", 0, max_steps=2)]
    with pytest.raises(InvalidNameError, match="expert"):
        run_policy_episodes(policy, plan, actor="human")
    with pytest.raises(InvalidInputError, match="batch_size must be an int >= 1"):
        run_policy_episodes(policy, plan, batch_size=0)
    with pytest.raises(InvalidInputError, match="at least one episode plan"):
        run_policy_episodes(policy, [])
