"""The one control loop (salus.sim.rollout.run_loop / run_lockstep) on the real simulator."""

from __future__ import annotations

import numpy as np
import pytest

from salus.errors import InvalidInputError
from salus.sim import ScriptedExpert, make_env
from salus.sim.rollout import run_lockstep, run_loop

from .conftest import run_episode


def test_run_loop_is_the_plain_gymnasium_loop():
    env = make_env("push", max_steps=30, render=False)
    try:
        expert = ScriptedExpert(env)
        plain = run_episode(env, 3, expert)
        states = []

        def act(obs):
            states.append(obs["state"].copy())
            return expert.act(obs)

        end = run_loop(env, act, seed=3, on_reset=lambda _obs: expert.reset())
        assert end.steps == plain["steps"] and end.done
        assert end.info["label"] == plain["label"]
        np.testing.assert_array_equal(np.stack([*states, end.obs["state"]]), plain["states"])
        cut = run_loop(env, act, seed=3, max_steps=4, on_reset=lambda _obs: expert.reset())
        assert cut.steps == 4 and not cut.done
    finally:
        env.close()


def test_lockstep_steps_each_env_until_it_ends_and_keeps_its_last_observation():
    envs = [make_env("push", max_steps=n, render=False) for n in (3, 6)]
    try:
        seen: list[list[float]] = []
        done: list[tuple[int, int]] = []

        def act(obs):
            seen.append([float(o["state"][0]) for o in obs])
            return np.zeros((len(obs), 4), np.float32)

        ends = run_lockstep(envs, act, [1, 2], on_done=lambda b, end: done.append((b, end.steps)))
        assert [e.steps for e in ends] == [3, 6] and done == [(0, 3), (1, 6)]
        assert len(seen) == 6 and len({row[0] for row in seen[3:]}) == 1  # env 0 frozen after its end
        with pytest.raises(InvalidInputError, match="one seed per environment"):
            run_lockstep(envs, act, [1])
    finally:
        for env in envs:
            env.close()
