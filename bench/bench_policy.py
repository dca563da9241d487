"""Per-control-step time of the built-in policy with internals capture against without, in one run.

Both adapters load the shipped weights and act on the same synthetic observations (96x96 images) with
the same seeds; blocks of one whole chunk (``n_action_steps`` control steps, one chunk computation)
alternate between the two, and the ratio of the median per-step times is reported. Time is the
thread's CPU time (``time.thread_time``), which other processes on a shared machine barely disturb;
the wall-clock ratio is printed too. Run: ``python bench/bench_policy.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from salus.policies import load_policy  # noqa: E402
from salus.sim.spec import STATE_DIM  # noqa: E402


def observations(n: int, batch: int, size: int, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "image_front": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
            "image_wrist": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
            "state": rng.normal(size=(batch, STATE_DIM)).astype(np.float32),
            "task": ["pick up the red cube and place it on the green target"] * batch,
        }
        for _ in range(n)
    ]


def run_block(adapter, obs: list[dict[str, object]]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(CPU seconds, wall seconds) per control step over one block that starts at a chunk boundary."""
    adapter.reset(seed=0)
    c0, w0 = time.thread_time(), time.perf_counter()
    for o in obs:
        adapter.act(o)
    return (time.thread_time() - c0) / len(obs), (time.perf_counter() - w0) / len(obs)


def bench(
    spec: str, batch: int, rounds: int, chunks_per_block: int, num_samples: int = 1
) -> dict[str, float]:
    """Alternate blocks of three adapters: capture on, capture off, and a second capture-off adapter
    (an A/A control whose ratio to the first shows the measurement noise)."""
    adapters = {
        "on": load_policy(spec, capture_internals=True, num_samples=num_samples),
        "off": load_policy(spec, capture_internals=False, num_samples=num_samples),
        "control": load_policy(spec, capture_internals=False, num_samples=num_samples),
    }
    on = adapters["on"]
    steps = chunks_per_block * on.n_action_steps  # type: ignore[attr-defined]
    obs = observations(steps, batch, on.config.image_size)  # type: ignore[attr-defined]
    for adapter in adapters.values():
        run_block(adapter, obs)  # warm-up
    cpu: dict[str, list[float]] = {k: [] for k in adapters}
    wall: dict[str, list[float]] = {k: [] for k in adapters}
    names = list(adapters)
    for r in range(rounds):
        for name in names[r % 3 :] + names[: r % 3]:
            cpu_s, wall_s = run_block(adapters[name], obs)
            cpu[name].append(cpu_s)
            wall[name].append(wall_s)
    c = {k: statistics.median(v) for k, v in cpu.items()}
    w = {k: statistics.median(v) for k, v in wall.items()}
    return {
        "batch": batch,
        "num_samples": num_samples,
        "step_ms_capture": round(c["on"] * 1e3, 3),
        "step_ms_no_capture": round(c["off"] * 1e3, 3),
        "ratio_cpu": round(c["on"] / c["off"], 4),
        "overhead_pct_cpu": round((c["on"] / c["off"] - 1) * 100, 2),
        "control_ratio_cpu": round(c["control"] / c["off"], 4),
        "ratio_wall": round(w["on"] / w["off"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policy", default="builtin", help="builtin or builtin:DIR")
    parser.add_argument("--rounds", type=int, default=150, help="alternating timed blocks per setting")
    parser.add_argument("--chunks", type=int, default=1, help="chunks per timed block")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results = [
        bench(args.policy, 1, args.rounds, args.chunks),
        bench(args.policy, 8, args.rounds, args.chunks),
        bench(args.policy, 1, args.rounds, args.chunks, num_samples=8),
    ]
    print("built-in policy, CPU ms per control step (median over alternating blocks), capture on vs off")
    head = f"{'B':>3} {'K':>3} {'capture':>9} {'no capture':>11} {'ratio':>7} {'overhead':>9} {'A/A':>7} {'wall':>7}"
    print(head)
    for r in results:
        print(
            f"{r['batch']:>3} {r['num_samples']:>3} {r['step_ms_capture']:>9.3f} {r['step_ms_no_capture']:>11.3f} "
            f"{r['ratio_cpu']:>7.4f} {r['overhead_pct_cpu']:>8.2f}% {r['control_ratio_cpu']:>7.4f} "
            f"{r['ratio_wall']:>7.4f}"
        )
    print("A/A: a second capture-off adapter against the first (the noise floor); wall: wall-clock ratio")
    print(json.dumps({"bench": "policy", "results": results, "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
