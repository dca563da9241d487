"""Per-control-step time of the LeRobot SmolVLA adapter with internals capture against without.

Builds the tiny offline SmolVLA (real ``SmolVLAPolicy`` class, random weights) in a temporary folder,
then runs two adapters on the same observations, interleaved round by round (ABBA order) so that
machine noise hits both alike, and prints the median per-step times (wall clock and
thread CPU time) and the medians of the per-round ratios (with their interquartile ranges). Run: ``python bench/bench_smolvla.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1, help="parallel environments B")
    parser.add_argument("--steps", type=int, default=40, help="control steps per round and adapter")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--n-action-steps", type=int, default=10)
    parser.add_argument("--num-steps", type=int, default=10, help="denoising steps (SmolVLA default 10)")
    parser.add_argument("--image-size", type=int, default=96, help="simulator image side (resized to 32)")
    args = parser.parse_args(argv)

    try:
        import torch

        torch.set_num_threads(1)
        from salus.policies.smolvla import SmolVLAAdapter, build_tiny_smolvla
    except ImportError as exc:  # pragma: no cover
        print(f"skipped: {exc}", file=sys.stderr)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_tiny_smolvla(
            tmp, chunk_size=args.chunk_size, n_action_steps=args.n_action_steps, num_steps=args.num_steps
        )
        build_s = time.perf_counter() - t0
        adapters = {
            "capture": SmolVLAAdapter.from_pretrained(tmp, capture_internals=True),
            "plain": SmolVLAAdapter.from_pretrained(tmp, capture_internals=False),
        }
    rng = np.random.default_rng(0)
    b, s = args.batch, args.image_size
    observations = [
        {
            "image_front": rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8),
            "image_wrist": rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8),
            "state": rng.normal(size=(b, 22)).astype(np.float32),
            "task": ["pick up the red cube and place it on the green target"] * b,
        }
        for _ in range(args.steps)
    ]
    for adapter in adapters.values():  # warm-up: first-call allocations
        adapter.reset()
        for o in observations[: args.n_action_steps + 1]:
            adapter.act(o)
    wall: dict[str, list[float]] = {name: [] for name in adapters}
    cpu: dict[str, list[float]] = {name: [] for name in adapters}
    for r in range(args.rounds):
        order = list(adapters) if r % 2 == 0 else list(reversed(adapters))
        for name in order:
            adapter = adapters[name]
            adapter.reset()
            t0, c0 = time.perf_counter(), time.thread_time()
            for o in observations:
                adapter.act(o)
            cpu[name].append((time.thread_time() - c0) / args.steps)
            wall[name].append((time.perf_counter() - t0) / args.steps)
    per_step = {name: float(np.median(v)) for name, v in wall.items()}
    cpu_step = {name: float(np.median(v)) for name, v in cpu.items()}
    # Median of the per-round ratios: each pair ran back to back, so shared-machine load cancels.
    # Thread CPU time is the steadier measure on a busy machine (it excludes time spent descheduled).
    ratios = np.asarray(wall["capture"]) / np.asarray(wall["plain"])
    ratio = float(np.median(ratios))
    cpu_ratios = np.asarray(cpu["capture"]) / np.asarray(cpu["plain"])
    cpu_ratio = float(np.median(cpu_ratios))
    result = {
        "bench": "smolvla_capture_overhead",
        "policy": "tiny SmolVLA (lerobot SmolVLAPolicy, random weights, CPU, 1 thread)",
        "batch": b,
        "chunk_size": args.chunk_size,
        "n_action_steps": args.n_action_steps,
        "num_steps": args.num_steps,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "build_s": round(build_s, 2),
        "per_step_ms_capture": round(per_step["capture"] * 1e3, 3),
        "per_step_ms_plain": round(per_step["plain"] * 1e3, 3),
        "ratio_capture_over_plain": round(ratio, 4),
        "overhead_pct": round((ratio - 1) * 100, 2),
        "ratio_iqr": [round(float(q), 4) for q in np.percentile(ratios, [25, 75])],
        "cpu_per_step_ms_capture": round(cpu_step["capture"] * 1e3, 3),
        "cpu_per_step_ms_plain": round(cpu_step["plain"] * 1e3, 3),
        "cpu_ratio_capture_over_plain": round(cpu_ratio, 4),
        "cpu_overhead_pct": round((cpu_ratio - 1) * 100, 2),
        "cpu_ratio_iqr": [round(float(q), 4) for q in np.percentile(cpu_ratios, [25, 75])],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
