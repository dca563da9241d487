"""Benchmark: simulator control steps per second, with and without rendering, on one core.

Each configuration runs in its own process (one environment per process) pinned to one CPU with
OMP_NUM_THREADS=1: the scripted expert drives ``pick_place`` (both cameras when rendering) for a
fixed number of control steps, resetting when an episode ends. The ratio row compares the
shipped fast rendering (no shadows, simplified display meshes) with the original meshes and
shadows at 96 px, measured in the same run.

Usage: ``python bench/bench_sim.py [--steps 150] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, os, sys, time
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
cfg = json.loads(sys.argv[1])
import functools
import salus.sim.env as senv
from salus.sim.make import make_env
from salus.sim.scene import build_model
from salus.sim import ScriptedExpert
if not cfg["fast"]:
    senv.build_model = functools.partial(build_model, fast_render=False)
env = make_env("pick_place", render=cfg["size"] > 0, image_size=max(cfg["size"], 16))
expert = ScriptedExpert(env)
obs, _ = env.reset(seed=0); expert.reset()
def run(n, seed):
    global obs
    for _ in range(n):
        obs, _, term, trunc, _ = env.step(expert.act(obs))
        if term or trunc:
            seed += 1
            obs, _ = env.reset(seed=seed); expert.reset()
    return seed
seed = run(10, 0)
start = time.perf_counter()
run(cfg["steps"], seed)
print(json.dumps({"steps_per_s": cfg["steps"] / (time.perf_counter() - start)}))
"""


def measure(size: int, steps: int, fast: bool = True) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cfg = json.dumps({"size": size, "steps": steps, "fast": fast})
    out = subprocess.run(
        [sys.executable, "-c", CHILD, cfg], env=env, capture_output=True, text=True, timeout=600, check=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description="salus simulator speed")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    rows = {"physics only": measure(0, args.steps)}
    for size in (64, 96, 128):
        rows[f"render {size} px (2 cameras)"] = measure(size, args.steps)
    slow = measure(96, max(args.steps // 10, 10), fast=False)
    rows["render 96 px, MuJoCo defaults (full meshes, shadows, 4x MSAA)"] = slow
    ratio = rows["render 96 px (2 cameras)"] / slow
    if args.json:
        print(json.dumps({"control_steps_per_s": rows, "fast_render_speedup_96px": ratio}))
        return
    print(f"{'configuration':60s} {'control steps/s':>16s}")
    for name, value in rows.items():
        print(f"{name:60s} {value:16.1f}")
    print(f"{'fast rendering speed-up at 96 px':60s} {ratio:15.1f}x")
    print(f"(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
