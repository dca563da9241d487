"""Acting on an alarm in a real simulator loop: a handover at the alarm step is the policy-alone
episode up to that step, replayed deterministically, and the plain replay gives the recorded outcome
(the ground truth ``salus assist`` uses); a stop ends the episode there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from salus.errors import InvalidInputError, InvalidNameError
from salus.monitor import Monitor
from salus.monitor.intervention import Intervention, expert_fallback, run_assisted_episode
from salus.sim.handover import NO_HANDOVER, HandoverJob, replay_handovers

from .test_monitor import _builtin_policy

PERTURB = (("action_noise", 0.5),)  # the perturbation draws from the simulator's own generator
MAX_STEPS = 60


def _env():
    from salus.sim import make_env

    return make_env("pick_place", max_steps=MAX_STEPS, perturbations=list(PERTURB))


def _policy_alone(seed: int):
    """The policy alone, recorded as collection records it."""
    from salus.collect.recorder import make_extractor
    from salus.collect.runner import run_episode

    env = _env()
    try:
        return run_episode(env, _builtin_policy(), make_extractor(None), None, seed, MAX_STEPS)
    finally:
        env.close()


def test_handover_is_replayed_deterministically_and_the_plain_replay_is_the_ground_truth(
    tiny_model: Path,
) -> None:
    events = []
    found = 0
    for seed in range(6):
        alone = _policy_alone(seed)
        env = _env()
        mon = Monitor.load(tiny_model, policy=_builtin_policy(), alpha=0.2, attribution="always")
        assisted = run_assisted_episode(
            env, mon, Intervention("handover", expert_fallback(env), on_alarm=events.append), seed=seed
        )
        env.close()
        t = assisted.alarm_step
        recorded = alone.steps["action"]
        if t <= 0:
            continue
        found += 1
        # same seed, same actions up to the alarm; the person's actions after it
        np.testing.assert_array_equal(assisted.actions[:t], recorded[:t])
        assert not np.array_equal(assisted.actions[t : t + 5], recorded[t : t + 5])
        assert events[-1].step == t and events[-1].score > events[-1].threshold
        assert events[-1].describe.startswith("env 0 step") and events[-1].top_signals
        job = HandoverJob("ep", "pick_place", seed, PERTURB, recorded, (NO_HANDOVER, t), MAX_STEPS)
        plain, handed = replay_handovers(job)
        assert (plain.success, plain.failure_step, plain.failure_type, plain.length) == (
            alone.success,
            alone.failure_step,
            alone.failure_type,
            len(recorded),
        )
        assert handed.success == assisted.success and handed.length == assisted.steps
        assert handed.success == (assisted.label["success"])

        env = _env()
        stopped = run_assisted_episode(env, mon, Intervention("stop"), seed=seed)
        env.close()
        assert stopped.outcome == "stopped" and stopped.alarm_step == t and stopped.steps == t
        np.testing.assert_array_equal(stopped.actions, recorded[:t])
        if found >= 2:
            break
    assert found >= 1, "the monitor never alarmed after step 0 on these seeds: the test checked nothing"


def test_intervention_arguments_are_checked() -> None:
    with pytest.raises(InvalidNameError, match="handover"):
        Intervention("pause")
    with pytest.raises(InvalidInputError, match="fallback"):
        Intervention("handover")
    with pytest.raises(InvalidInputError, match="on_alarm"):
        Intervention("stop", on_alarm=3)  # type: ignore[arg-type]
    job = HandoverJob("ep", "pick_place", 0, (), np.zeros((5, 4), np.float32), (7,))
    with pytest.raises(InvalidInputError, match=r"\[0, 5\)"):
        replay_handovers(job)


def test_counterfactual_runs_resume_after_a_kill(tmp_path: Path) -> None:
    from salus.monitor.assist import _load_done, _run_jobs

    zeros = np.zeros((6, 4), np.float32)
    jobs = [HandoverJob(f"ep{s}", "push", s, (), zeros, (NO_HANDOVER, 0, 3), 6) for s in range(3)]
    path = tmp_path / "handovers.jsonl"
    done = _run_jobs(jobs, path, 1, None)
    assert sorted(done) == ["ep0", "ep1", "ep2"]
    for outs in done.values():
        plain = next(o for o in outs if o["step"] == NO_HANDOVER)
        assert plain["failure_type"] == "timeout" and plain["length"] == 6  # a still arm times out
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # killed mid-write
    assert sorted(_load_done(path)) == ["ep0", "ep1"]  # the torn line is ignored
    seen: list[tuple[int, int]] = []
    again = _run_jobs(jobs, path, 1, lambda k, n: seen.append((k, n)))
    assert seen[0] == (2, 3) and seen[-1] == (3, 3)  # only the missing episode ran
    assert again["ep2"] == done["ep2"]  # deterministic
    assert sorted(_load_done(path)) == ["ep0", "ep1", "ep2"]  # the rerun's line survives the torn one
