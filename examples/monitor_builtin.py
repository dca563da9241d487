"""Run the built-in policy in the simulator under the salus monitor and stop an episode on alarm.

A predictor checkpoint comes from the pipeline (`make demo`, or `salus collect` + `salus train`)::

    python examples/monitor_builtin.py --model MODEL_DIR --episodes 5 --perturb push=0.6
    python examples/monitor_builtin.py --model MODEL_DIR --keep-going   # run on, compare with the label

The monitor is one call per control step: ``action, risk = monitor.step(obs)``. ``risk.alarm`` is
the calibrated conformal alarm; ``risk.describe()`` says which signals drove the score.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="predictor checkpoint directory (salus train --out)")
    parser.add_argument("--policy", default="builtin", help="policy spec (default: builtin)")
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--perturb", action="append", default=[], help="e.g. push=0.6 (repeatable)")
    parser.add_argument(
        "--alpha", type=float, default=None, help="conformal alpha (default: the checkpoint's)"
    )
    parser.add_argument(
        "--keep-going", action="store_true", help="do not stop on alarm; report the true outcome"
    )
    args = parser.parse_args()

    import torch

    from salus import Monitor
    from salus.policies import load_policy
    from salus.sim import make_env

    torch.set_num_threads(1)
    env = make_env(args.task, perturbations=args.perturb or None)
    monitor = Monitor.load(args.model, policy=load_policy(args.policy, seed=args.seed), alpha=args.alpha)
    print(f"monitor: {monitor.predictor.name}, alpha {monitor.alpha:g}, horizons {monitor.horizons_s} s")

    for episode in range(args.episodes):
        obs, info = env.reset(seed=args.seed + episode)
        monitor.reset()
        alarm_step, step = -1, 0
        while True:
            action, risk = monitor.step(obs)
            if risk.failsafe[0]:
                print(f"  fail-safe: {risk.reason[0]}")  # treated as an alarm (failsafe_alarm=True)
            if risk.alarm[0] and alarm_step < 0:
                alarm_step = step
                print(f"  {risk.describe(0)}")
                if not args.keep_going:
                    break  # a real system would stop the arm or hand over to a person here
            obs, _, terminated, truncated, info = env.step(action)
            step += 1
            if terminated or truncated:
                break
        label = info.get("label")
        if label is None:
            seconds = alarm_step / monitor.predictor.control_hz
            print(f"episode {episode}: stopped on alarm at step {alarm_step} ({seconds:.2f} s)")
        else:
            outcome = (
                "success"
                if label["success"]
                else f"failure '{label['failure_type']}' at step {label['failure_step']}"
            )
            alarm = f"alarm at step {alarm_step}" if alarm_step >= 0 else "no alarm"
            print(f"episode {episode}: {outcome}; {alarm}")
    env.close()


if __name__ == "__main__":
    main()
