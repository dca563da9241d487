"""Collection throughput: (1) steps/s of collection with the monitor's signal extraction (policy
internals capture, 12 signals, online baselines, zarr commit per episode) against plain rollouts
(policy + simulator only) of the same episodes, goal >= 0.95x; (2) steps/s of `collect` with 2
local worker processes against 1, goal >= 1.8x on 2 free cores.

Run: ``.venv/bin/python bench/bench_collect.py`` (1.5-2.5 minutes; prints one JSON object last).
Uses the shipped built-in policy when its weights exist, else an untrained one of the same shape.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

EPISODES_RATIO = 7  # part 1: one warm-up + 6 timed, each run in the three variants
ROUNDS, EPISODES_PER_ROUND = 3, 4  # part 2: alternating 1-worker / 2-worker rounds of 4 episodes
MAX_STEPS = None  # the simulator's step limit per task (100-150 steps), as `salus collect` uses
SEED = 11


def policy_spec(tmp: Path) -> str:
    from salus.policies.builtin.adapter import DEFAULT_WEIGHTS_DIR

    if (DEFAULT_WEIGHTS_DIR / "model.safetensors").is_file():
        return "builtin"
    import numpy as np
    import torch

    from salus.policies.builtin.configuration_builtin import BuiltinConfig
    from salus.policies.builtin.modeling_builtin import BuiltinFlowPolicy, NormalizationStats, save_pretrained

    torch.manual_seed(0)
    stats = NormalizationStats(np.zeros(22), np.ones(22), np.zeros(4), np.full(4, 0.5))
    save_pretrained(tmp / "policy", BuiltinFlowPolicy(BuiltinConfig()), stats)
    return f"builtin:{tmp / 'policy'}"


class PlainRunner:
    """Policy + simulator only: what a user runs without salus (reusing one simulator per task for
    unperturbed episodes, as the collector's workers do)."""

    def __init__(self, config):
        from salus.collect.worker import limit_threads
        from salus.policies import load_policy

        limit_threads()
        self.config = config
        self.policy = load_policy(config.policy, num_samples=config.num_samples, capture_internals=False)
        self.envs: dict = {}

    def run(self, spec) -> int:
        from salus.collect.runner import reset_policy
        from salus.sim import make_env

        if not spec.perturbations and spec.task in self.envs:
            env = self.envs[spec.task]
        else:
            env = make_env(
                spec.task, max_steps=self.config.max_steps, perturbations=list(spec.perturbations) or None
            )
        obs, _ = env.reset(seed=spec.seed)
        reset_policy(self.policy, spec.seed)
        steps = 0
        while True:
            obs, _, term, trunc, _ = env.step(self.policy.act(obs))
            steps += 1
            if term or trunc:
                break
        if spec.perturbations:
            env.close()
        else:
            self.envs[spec.task] = env
        return steps


def captured_rollout(worker, spec) -> int:
    """The collector's rollout without signal extraction or storage: capture on, runner bookkeeping."""
    from salus.collect.runner import run_episode

    env, cached = worker.source.make(spec.task, spec.perturbations)
    record = run_episode(env, worker.policy, None, None, spec.seed, env.unwrapped.max_steps, task=spec.task)
    if not cached:
        env.close()
    return record.length


def compare(config, specs, out: Path) -> dict[str, dict[str, float]]:
    """Three variants on the same episodes, interleaved episode by episode so load drift hits all
    alike: ``plain`` (policy + simulator), ``captured`` (the collector's rollout with the policy's
    internals captured, no signals, no storage) and ``monitored`` (the collector's full work per
    episode: capture, 12 signals, online baselines, zarr commit). Steps per wall second and per
    process-CPU second (the fair measure on a shared machine: every variant is single-threaded)."""
    from dataclasses import replace

    import numpy as np

    from salus.collect.collector import collection_attrs
    from salus.collect.worker import EpisodeWorker
    from salus.data import DatasetWriter

    # One-row forward passes, as the plain runner's: this part measures extraction and storage, not
    # the fixed-size passes that make lockstep batches bit-identical (part 3 measures those).
    plain, worker = PlainRunner(config), EpisodeWorker(replace(config, compute_batch=1))
    attrs, state = collection_attrs(config)
    names = ("plain", "captured", "monitored")
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    steps = dict.fromkeys(names, 0)
    per_episode: dict[str, list[float]] = {name: [] for name in names}  # CPU seconds per episode
    with DatasetWriter(out, attrs, state=state) as writer:

        def monitored(spec) -> int:
            record = worker.run(spec)
            writer.append(record)
            return record.length

        runs = {
            "plain": plain.run,
            "captured": lambda spec: captured_rollout(worker, spec),
            "monitored": monitored,
        }
        for run in runs.values():  # warm-up
            run(specs[0])
        for spec in specs[1:]:
            for name, run in runs.items():
                w0, c0 = time.perf_counter(), time.process_time()
                steps[name] += run(spec)
                wall[name] += time.perf_counter() - w0
                cpu[name] += time.process_time() - c0
                per_episode[name].append(time.process_time() - c0)
    assert len(set(steps.values())) == 1, steps
    n = steps["plain"]
    plain_ep = np.asarray(per_episode["plain"])
    return {
        name: {
            "steps_per_s": n / wall[name],
            "steps_per_cpu_s": n / cpu[name],
            # Median over episodes of (plain CPU time / this variant's CPU time): robust to bursts.
            "median_episode_ratio_cpu": float(np.median(plain_ep / np.asarray(per_episode[name]))),
        }
        for name in names
    } | {"steps": {"n": n}}


def scaling(config, specs, rounds: int) -> tuple[float, float]:
    """Steps/s of the collect loop (backend + in-order zarr commits) with 1 worker (in-process) and
    with 2 worker processes, both warmed up (one episode per worker first, so start-up is
    excluded) and timed in alternating rounds on the same episodes, so load drift on a shared
    machine hits both alike."""
    from salus.collect.backends import ProcessBackend, SerialBackend
    from salus.collect.collector import collection_attrs
    from salus.data import DatasetWriter

    attrs, state = collection_attrs(config)
    per_round = (len(specs) - 2) // rounds
    timed = {1: [0.0, 0], 2: [0.0, 0]}
    with tempfile.TemporaryDirectory() as d, SerialBackend(config) as one, ProcessBackend(config, 2) as two:
        backends = {1: one, 2: two}
        for _ in two.run(specs[:2]):  # warm-up: one episode per worker process
            pass
        for _ in one.run(specs[:1]):
            pass
        writers = {w: DatasetWriter(Path(d) / f"w{w}.zarr", attrs, state=state) for w in (1, 2)}
        try:
            for r in range(rounds):
                batch = specs[2 + r * per_round : 2 + (r + 1) * per_round]
                for w, backend in backends.items():
                    t0 = time.perf_counter()
                    buffer, next_index = {}, batch[0].index
                    for spec, record in backend.run(batch):  # commit in episode order, as collect does
                        buffer[spec.index] = record
                        while next_index in buffer:
                            rec = buffer.pop(next_index)
                            writers[w].append(rec)
                            timed[w][1] += rec.length
                            next_index += 1
                    timed[w][0] += time.perf_counter() - t0
        finally:
            for writer in writers.values():
                writer.close()
    return timed[1][1] / timed[1][0], timed[2][1] / timed[2][0]


def main() -> None:
    from salus.collect import CollectConfig, plan_episode
    from salus.collect.collector import resolve_signal_stats

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        spec = policy_spec(tmp)
        # As `salus collect` does: the signal statistics shipped beside the weights, when present.
        config = resolve_signal_stats(
            CollectConfig(policy=spec, episodes=EPISODES_RATIO, max_steps=MAX_STEPS, seed=SEED)
        )
        assert config.mix is not None
        specs = [plan_episode(i, SEED, config.task_list, config.mix) for i in range(EPISODES_RATIO)]
        r = compare(config, specs, tmp / "monitored.zarr")
        base = r["plain"]
        ratios = {}
        for name in ("plain", "captured", "monitored"):
            v = r[name]
            ratios[name] = (
                v["steps_per_s"] / base["steps_per_s"],
                v["steps_per_cpu_s"] / base["steps_per_cpu_s"],
            )
            print(
                f"{name:10s} {v['steps_per_s']:7.1f} steps/s {v['steps_per_cpu_s']:7.1f} steps/CPU-s "
                f"-> {ratios[name][0]:.3f}x wall, {ratios[name][1]:.3f}x CPU",
                file=sys.stderr,
            )

        n = 2 + ROUNDS * EPISODES_PER_ROUND
        scale_specs = [plan_episode(i, SEED, config.task_list, config.mix) for i in range(n)]
        one, two = scaling(config, scale_specs, ROUNDS)
        print(f"collect 1 worker    {one:8.1f} steps/s", file=sys.stderr)
        print(f"collect 2 workers   {two:8.1f} steps/s -> {two / one:.2f}x", file=sys.stderr)
    result = {
        "policy": spec.split(":")[0] + (" (untrained)" if ":" in spec else ""),
        "num_samples": config.num_samples,
        "extractor_fitted": config.signal_stats is not None,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "episodes": len(specs) - 1,
        "steps": r["steps"]["n"],
        **{f"{k}_steps_per_s": round(r[k]["steps_per_s"], 1) for k in ("plain", "captured", "monitored")},
        **{
            f"{k}_steps_per_cpu_s": round(r[k]["steps_per_cpu_s"], 1)
            for k in ("plain", "captured", "monitored")
        },
        "captured_over_plain_cpu": round(ratios["captured"][1], 3),
        "monitored_over_plain_wall": round(ratios["monitored"][0], 3),
        "monitored_over_plain_cpu": round(ratios["monitored"][1], 3),
        "captured_over_plain_cpu_median_episode": round(r["captured"]["median_episode_ratio_cpu"], 3),
        # Extraction + storage cost relative to the collector's own rollout (captured is the control:
        # it does what plain does plus capture, so its deviation from 1 shows the measurement noise).
        "monitored_over_captured_cpu": round(ratios["monitored"][1] / ratios["captured"][1], 3),
        "monitored_over_plain_cpu_median_episode": round(r["monitored"]["median_episode_ratio_cpu"], 3),
        "goal_monitored_over_plain": 0.95,
        "one_worker_steps_per_s": round(one, 1),
        "two_workers_steps_per_s": round(two, 1),
        "two_over_one": round(two / one, 2),
        "goal_two_over_one": 1.8,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
