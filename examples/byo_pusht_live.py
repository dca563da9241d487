"""Monitor PushT live with the model chosen on validation, in your own loop, and check it offline.

Used by docs/byo-robot.md (section "Monitor your robot live"). Each fresh episode runs the loop a
user writes: ``salus.Recorder`` lets the policy act and records the step (internals, signals,
online baselines), ``Monitor.observe`` scores the same step with the checkpoint (any model kind:
salus-risk, salus-mlp, salus-tcn, SAFE), and the episode is committed with the outcome PushT
reports. After each episode its per-step scores, thresholds and first alarm are compared with
``salus.monitor.offline_risk`` on the recorded episode: live and offline must agree.

    python examples/byo_pusht_live.py --model out/byo/model_all --signal-stats out/byo/stats/pusht \\
        --record out/byo/live.zarr --episodes 20 --seed 10000 --overwrite
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from byo_pusht import TASK_TEXT, failure, make_env, make_policy

# Scores are float32 features through float32 networks: the streaming step and the whole-episode
# path differ only by float32 rounding (the tolerance tests/monitor/test_any_robot.py uses).
RTOL, ATOL = 1e-4, 1e-5


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The live loop over ``args.episodes`` fresh episodes; returns the summary it prints."""
    from salus import Monitor, ObservationMap, Recorder
    from salus.monitor import offline_risk
    from salus.predictor.discovery import choose_checkpoint

    torch.set_num_threads(1)
    env = make_env()
    policy = make_policy(num_samples=1, noise_scale=args.noise_scale)  # as collected (--samples 1)
    # the model chosen on validation (selection.json of `salus train --model all`), or the one named
    checkpoint = choose_checkpoint(args.model, args.checkpoint)
    monitor = Monitor.load(checkpoint, policy=policy, alpha=args.alpha)
    print(
        f"model {monitor.predictor.name} ({monitor.input_kind} input), alpha {monitor.alpha:g}, "
        f"robot {monitor.robot.name!r} ({monitor.robot.state_dim}-value state, {monitor.robot.control_hz:g} Hz)"
    )
    observation = ObservationMap(state=(".",), task=None, task_text=TASK_TEXT)
    rows: list[dict[str, Any]] = []
    observe_s: list[float] = []
    started = time.perf_counter()
    with Recorder(
        args.record,
        policy,
        observation=observation,
        signal_stats=args.signal_stats,
        action_dim=3,
        control_hz=monitor.robot.control_hz,
        overwrite=args.overwrite,
    ) as rec:
        for k in range(args.episodes):
            seed = args.seed + k
            obs, info = env.reset(seed=seed)
            rec.start(seed=seed, task=env.spec.id if env.spec else None)  # as `salus collect --env` names it
            monitor.reset(reset_policy=False)  # the recorder seeded the policy's noise
            scores, thresholds, alarms = [], [], []
            while True:
                action = rec.step(obs)  # the policy acts; internals and signals are recorded
                t0 = time.perf_counter()
                risk = monitor.observe({"state": np.asarray(obs, np.float32), "task": TASK_TEXT}, action)
                observe_s.append(time.perf_counter() - t0)
                if risk.failsafe[0]:
                    raise SystemExit(f"episode {k}: the monitor went fail-safe: {risk.reason[0]}")
                scores.append(float(risk.score[0]))
                thresholds.append(float(risk.threshold[0]))
                alarms.append(bool(risk.alarm[0]))  # a real system would stop or hand over here
                obs, _reward, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
            steps = len(scores)
            if info["is_success"]:
                record = rec.end(success=True)
                outcome = "success"
            else:
                fstep, ftype = failure(info, obs, steps)
                record = rec.end(failure_step=fstep, failure_type=ftype)
                outcome = f"failure '{ftype}' at step {fstep}"
            off = offline_risk(checkpoint, record.steps, alpha=monitor.alpha)
            live_first = alarms.index(True) if any(alarms) else -1
            off_first = int(off["alarm_step"])
            if live_first != off_first:  # allowed only where the score ties the threshold (float32)
                first = min(s for s in (live_first, off_first) if s >= 0)
                tie = abs(off["score"][first] - off["threshold"][first]) <= ATOL + RTOL * abs(
                    off["threshold"][first]
                )
                print(f"episode {k}: first alarm live {live_first}, offline {off_first} (tie: {tie})")
                off_first = live_first if tie else off_first
            row = {
                "episode": k,
                "seed": seed,
                "steps": steps,
                "success": bool(info["is_success"]),
                "first_alarm": live_first,
                "offline_first_alarm": off_first,
                "max_score_diff": float(np.max(np.abs(np.array(scores) - off["score"]))),
                "scores_equal": bool(np.allclose(scores, off["score"], rtol=RTOL, atol=ATOL)),
                "thresholds_equal": bool(np.array_equal(np.array(thresholds), np.asarray(off["threshold"]))),
            }
            rows.append(row)
            alarm = f"first alarm at step {live_first}" if live_first >= 0 else "no alarm"
            print(
                f"episode {k} (seed {seed}, {steps} steps): {outcome}; {alarm} (offline: "
                f"{row['offline_first_alarm']}); max |live - offline| score {row['max_score_diff']:.1e}"
            )
        total = rec.num_episodes
    env.close()
    seconds = time.perf_counter() - started
    failed = [r for r in rows if not r["success"]]
    succeeded = [r for r in rows if r["success"]]
    summary = {
        "model": monitor.predictor.name,
        "alpha": monitor.alpha,
        "episodes": len(rows),
        "failures": len(failed),
        "alarms_on_failures": sum(r["first_alarm"] >= 0 for r in failed),
        "alarms_on_successes": sum(r["first_alarm"] >= 0 for r in succeeded),
        "first_alarm_steps_failures": [r["first_alarm"] for r in failed if r["first_alarm"] >= 0],
        "first_alarm_steps_successes": [r["first_alarm"] for r in succeeded if r["first_alarm"] >= 0],
        "steps": sum(r["steps"] for r in rows),
        "seconds": round(seconds, 1),
        "observe_ms_median": round(1e3 * float(np.median(observe_s)), 2),
        "max_score_diff": max(r["max_score_diff"] for r in rows),
        "all_scores_equal": all(r["scores_equal"] for r in rows),
        "all_thresholds_equal": all(r["thresholds_equal"] for r in rows),
        "all_first_alarms_equal": all(r["first_alarm"] == r["offline_first_alarm"] for r in rows),
        "recorded": total,
    }
    print(
        f"{summary['episodes']} episodes ({summary['failures']} failures, {summary['steps']} steps) in "
        f"{summary['seconds']} s, Monitor.observe median {summary['observe_ms_median']} ms/step\n"
        f"alarms: {summary['alarms_on_failures']}/{summary['failures']} failures (first at steps "
        f"{summary['first_alarm_steps_failures']}), {summary['alarms_on_successes']}/"
        f"{len(succeeded)} successes (first at steps {summary['first_alarm_steps_successes']})\n"
        f"live vs offline_risk on the recorded episodes: per-step scores equal "
        f"(rtol {RTOL:g}, atol {ATOL:g}): {summary['all_scores_equal']} (max difference "
        f"{summary['max_score_diff']:.1e}); thresholds equal: {summary['all_thresholds_equal']}; first "
        f"alarms equal: {summary['all_first_alarms_equal']}; {args.record} holds {total} episodes"
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--model",
        required=True,
        help="predictor checkpoint(s) (salus train --out; with --model all the one chosen on validation)",
    )
    parser.add_argument(
        "--checkpoint", default=None, help="with several checkpoints in --model: this one (its folder name)"
    )
    parser.add_argument("--record", required=True, help="dataset the loop records into")
    parser.add_argument("--signal-stats", default=None, help="the signal statistics the training data used")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=10_000, help="seed of the first episode (then +1 each)")
    parser.add_argument(
        "--alpha", type=float, default=None, help="calibrated band (default: the checkpoint's)"
    )
    parser.add_argument("--noise-scale", type=float, default=0.8, help="the policy's noise, as collected")
    parser.add_argument("--overwrite", action="store_true", help="start --record afresh")
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    summary = run(args)
    if not (
        summary["all_scores_equal"] and summary["all_thresholds_equal"] and summary["all_first_alarms_equal"]
    ):
        raise SystemExit("the live monitor disagrees with offline_risk on the recorded episodes")


if __name__ == "__main__":
    main()
