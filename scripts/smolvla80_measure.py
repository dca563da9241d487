"""Measurements behind the SmolVLA training plan for the 80% target (docs/policies.md).

Single-threaded and small (each command runs in one to three minutes on one core)::

    python scripts/smolvla80_measure.py expert --episodes 200 --seed 1000000 --noise 0,0.1,0.2
    python scripts/smolvla80_measure.py push --episodes 20 --seed 0          # how the policy fails on push
    python scripts/smolvla80_measure.py pick-color --episodes 10 --seed 0    # which cube it lifts
    python scripts/smolvla80_measure.py gap --episodes 10 --seed 0           # its error on the expert's states

``expert``: the scripted expert per task, executing its action plus Gaussian noise of std NOISE on the
x, y, z axes (as ``record_demonstrations(demo_noise=NOISE)``): success rate and episode lengths
against the task's step limit. ``push`` / ``pick-color``: the policy (default the packaged SmolVLA)
drives; per episode, where the cube went (push: the direction of the cube's first 3 cm of motion
against the cube-to-target line, its closest approach to the target) or which cube left the table
(pick_color). ``gap``: the expert drives and the policy acts in shadow on the same observations; the
gap between the policy's action and the expert's clean label on x, y, z is the learner's error that
DART's noise level is matched to. Every command prints one JSON line per task or episode.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from salus.sim import TASKS, ScriptedExpert, get_task, make_env  # noqa: E402
from salus.sim.rollout import run_lockstep, run_loop  # noqa: E402
from salus.sim.spec import CUBE_HALF  # noqa: E402

WRONG_SIDE_DEG = 60.0  # the cube's first 3 cm of motion further than this off the line to the target
MOVED_M = 0.03
LIFTED_Z_M = 2 * CUBE_HALF  # a cube whose centre is above this has left the table


def _load(spec: str, seed: int) -> Any:
    import torch

    from salus.policies import load_policy

    torch.set_num_threads(1)
    return load_policy(spec, seed=seed)


def expert(args: argparse.Namespace) -> None:
    for noise in (float(x) for x in args.noise.split(",")):
        for task in args.tasks.split(","):
            t0 = time.perf_counter()
            rng = np.random.default_rng(0)
            env = make_env(task, render=False, max_steps=400)  # past the limit: would it finish later?
            limit = get_task(task).max_steps
            ex = ScriptedExpert(env)

            def act(
                obs: Any, ex: ScriptedExpert = ex, noise: float = noise, rng: np.random.Generator = rng
            ) -> np.ndarray:
                a = np.asarray(ex.act(obs), np.float32).copy()
                if noise > 0:
                    a[:3] += rng.normal(0.0, noise, 3).astype(np.float32)
                return np.clip(a, -1.0, 1.0)

            def on_reset(_obs: Any, ex: ScriptedExpert = ex) -> None:
                ex.reset()

            ok, steps = [], []
            for s in range(args.seed, args.seed + args.episodes):
                end = run_loop(env, act, seed=s, on_reset=on_reset)
                ok.append(bool(end.info["label"]["success"]))
                steps.append(int(end.steps))
            env.close()
            good = np.array(steps)[np.array(ok)]
            print(json.dumps({
                "task": task, "noise": noise, "episodes": args.episodes, "step_limit": limit,
                "successes": int(sum(ok)), "successes_within_limit": int(sum(good <= limit)),
                "steps_mean": round(float(good.mean()), 1), "steps_p50": float(np.median(good)),
                "steps_p90": float(np.percentile(good, 90)), "steps_max": int(good.max()),
                "seconds": round(time.perf_counter() - t0, 1),
            }), flush=True)  # fmt: skip


def _drive(task: str, args: argparse.Namespace, log: Any) -> list[Any]:
    """The policy drives ``args.episodes`` episodes of ``task`` in lockstep; ``log(b, env)`` per step."""
    from salus.policies.harness import stack_observations

    policy = _load(args.policy, args.seed)
    envs = [make_env(task) for _ in range(args.episodes)]
    done = [False] * len(envs)

    def act(obs: list[Any]) -> Any:
        for b, env in enumerate(envs):
            if not done[b]:
                log(b, env.unwrapped)
        return policy.act(stack_observations(obs))

    def on_done(b: int, _end: Any) -> None:
        done[b] = True

    seeds = [args.seed + i for i in range(len(envs))]
    ends = run_lockstep(envs, act, seeds, on_reset=lambda _o: policy.reset(seed=args.seed), on_done=on_done)
    for env in envs:
        env.close()
    return ends


def push(args: argparse.Namespace) -> None:
    cube: list[list[np.ndarray]] = [[] for _ in range(args.episodes)]
    goal: list[np.ndarray] = [np.zeros(2)] * args.episodes

    def log(b: int, env: Any) -> None:
        cube[b].append(env.object_pos(0)[:2].copy())
        goal[b] = env.goal_xy

    t0 = time.perf_counter()
    ends = _drive("push", args, log)
    counts: dict[str, int] = {}
    for b, end in enumerate(ends):
        c = np.array(cube[b])
        line = goal[b] - c[0]
        unit = line / np.linalg.norm(line)
        moved = np.linalg.norm(c - c[0], axis=1)
        if end.info["label"]["success"]:
            kind, angle = "success", None
        elif not (moved > MOVED_M).any():
            kind, angle = "barely_moved", None
        else:
            k = int(np.argmax(moved > MOVED_M))
            angle = float(np.degrees(np.arccos(np.clip((c[k] - c[0]) @ unit / moved[k], -1, 1))))
            kind = "wrong_side" if angle > WRONG_SIDE_DEG else "right_side_missed_target"
        counts[kind] = counts.get(kind, 0) + 1
        first = int(np.argmax(moved > 0.005)) if (moved > 0.005).any() else None
        print(json.dumps({
            "seed": args.seed + b, "outcome": kind, "steps": int(end.steps),
            "label": end.info["label"]["failure_type"], "first_cube_motion_step": first,
            "first_3cm_angle_deg": None if angle is None else round(angle),
            "start_to_target_m": round(float(np.linalg.norm(line)), 3),
            "closest_to_target_m": round(float(np.linalg.norm(c - goal[b], axis=1).min()), 3),
            "final_to_target_m": round(float(np.linalg.norm(c[-1] - goal[b])), 3),
        }), flush=True)  # fmt: skip
    print(json.dumps({"task": "push", "episodes": args.episodes, "outcomes": counts,
                      "seconds": round(time.perf_counter() - t0, 1)}))  # fmt: skip


def pick_color(args: argparse.Namespace) -> None:
    lifted: list[set[int]] = [set() for _ in range(args.episodes)]
    target = [0] * args.episodes

    def log(b: int, env: Any) -> None:
        target[b] = int(env.task_variant)
        for i in range(env.task_spec.n_objects):
            if env.object_pos(i)[2] > LIFTED_Z_M:
                lifted[b].add(i)

    t0 = time.perf_counter()
    ends = _drive("pick_color", args, log)
    counts: dict[str, int] = {}
    for b, end in enumerate(ends):
        if lifted[b] - {target[b]}:
            kind = "lifted_wrong_cube"
        elif lifted[b]:
            kind = "lifted_named_cube"
        else:
            kind = "lifted_none"
        counts[kind] = counts.get(kind, 0) + 1
        print(json.dumps({"seed": args.seed + b, "success": bool(end.info["label"]["success"]),
                          "label": end.info["label"]["failure_type"], "lifted": kind}))  # fmt: skip
    print(json.dumps({"task": "pick_color", "episodes": args.episodes, "lifted": counts,
                      "seconds": round(time.perf_counter() - t0, 1)}))  # fmt: skip


def gap(args: argparse.Namespace) -> None:
    from salus.policies.harness import stack_observations

    policy = _load(args.policy, args.seed)
    for task in args.tasks.split(","):
        t0 = time.perf_counter()
        envs = [make_env(task) for _ in range(args.episodes)]
        experts = [ScriptedExpert(e) for e in envs]
        gaps: list[np.ndarray] = []
        done = [False] * len(envs)

        def act(
            obs: list[Any],
            experts: list[ScriptedExpert] = experts,
            done: list[bool] = done,
            gaps: list[np.ndarray] = gaps,
        ) -> np.ndarray:
            labels = np.stack([np.asarray(x.act(o), np.float32) for x, o in zip(experts, obs, strict=True)])
            shadow = np.asarray(policy.act(stack_observations(obs)))
            gaps.extend(shadow[b, :3] - labels[b, :3] for b in range(len(obs)) if not done[b])
            return labels  # the expert drives

        def on_reset(_obs: Any, experts: list[ScriptedExpert] = experts) -> None:
            policy.reset(seed=args.seed)
            for x in experts:
                x.reset()

        def on_done(b: int, _end: Any, done: list[bool] = done) -> None:
            done[b] = True

        seeds = [args.seed + i for i in range(len(envs))]
        run_lockstep(envs, act, seeds, on_reset=on_reset, on_done=on_done)
        for env in envs:
            env.close()
        g = np.array(gaps)
        print(json.dumps({
            "task": task, "episodes": args.episodes, "frames": len(g),
            "rms_xyz": round(float(np.sqrt((g**2).mean())), 3),
            "std_per_axis": np.round(g.std(0), 3).tolist(),
            "median_abs_per_axis": np.round(np.median(np.abs(g), 0), 3).tolist(),
            "frac_steps_any_axis_over_0_5": round(float((np.abs(g) > 0.5).any(1).mean()), 3),
            "seconds": round(time.perf_counter() - t0, 1),
        }), flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in (("expert", expert), ("push", push), ("pick-color", pick_color), ("gap", gap)):
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--episodes", type=int, default=20)
        p.add_argument("--seed", type=int, default=0)
        if name in ("expert", "gap"):
            p.add_argument("--tasks", default=",".join(TASKS))
        if name == "expert":
            p.add_argument("--noise", default="0", help="comma-separated DART noise stds")
        else:
            p.add_argument("--policy", default="smolvla")
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    args.fn(args)


if __name__ == "__main__":
    main()
