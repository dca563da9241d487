"""Lockstep collection throughput: steps/s of ``salus collect`` (one worker, in-process) with
B = 1, 8 and 32 environments in lockstep, for the packaged SmolVLA and the built-in policy.

Each run collects 2 B episodes (at least 8) of at most 40 control steps into a fresh zarr store,
under the default perturbation mix with the signals and baselines on, after a warm-up; the
datasets are the same bits for every B (tested in tests/collect), so only the speed differs.
Run: ``.venv/bin/python bench/bench_lockstep.py [--policies smolvla,builtin] [--batch 1,8,32]``
(about 4 minutes; prints one JSON object last).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

MAX_STEPS, SEED = 40, 5


def steps_per_second(policy: str, batch: int, tmp: Path) -> float:
    from salus.collect import CollectConfig
    from salus.collect.collector import collect

    episodes = max(8, 2 * batch)
    config = CollectConfig(policy=policy, episodes=episodes, max_steps=MAX_STEPS, seed=SEED)
    out = tmp / f"{policy}_{batch}.zarr"
    t0 = time.perf_counter()
    result = collect(config, out, batch_size=batch)
    return result.steps / (time.perf_counter() - t0)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--policies", default="smolvla,builtin")
    parser.add_argument("--batch", default="1,8,32")
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    result: dict[str, object] = {"max_steps": MAX_STEPS, "cpu_count": os.cpu_count()}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        for policy in args.policies.split(","):
            steps_per_second(policy, 1, Path(d) / "warm")  # warm-up: imports, first env and policy
            rates = {}
            for b in batches:
                rates[b] = steps_per_second(policy, b, Path(d))
                print(f"{policy:8s} B={b:3d} {rates[b]:7.1f} steps/s", file=sys.stderr, flush=True)
            result[policy] = {f"B{b}_steps_per_s": round(r, 1) for b, r in rates.items()} | {
                f"B{b}_over_B1": round(r / rates[batches[0]], 2) for b, r in rates.items()
            }
    result["load_average_1min"] = os.getloadavg()[0]
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
