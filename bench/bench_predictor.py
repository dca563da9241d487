"""Benchmark of the failure predictor (part 5): training time per epoch on 1M timesteps and
streaming inference time per control step at B=1, for each model.

Synthetic episodes at the dataset's real shapes (12 signals + valid flags, obs_embedding E=128 of
the built-in policy, ~120 steps per episode). One epoch is timed on a measured fraction of 1M
timesteps (``--steps``, default 60k) and extrapolated linearly (an epoch is one pass over the
episodes, so its cost is linear in timesteps). Single CPU thread.

    .venv/bin/python bench/bench_predictor.py [--steps 60000] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from salus.predictor import (
    MODEL_NAMES,
    FailurePredictor,
    ModelConfig,
    SplitConfig,
    TrainConfig,
    split_episodes,
    synthetic_episodes,
    train_model,
)

CONTROL_PERIOD_MS = 50.0  # 20 Hz
FULL = 1_000_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=60_000, help="timesteps actually trained per epoch")
    ap.add_argument("--infer-steps", type=int, default=400)
    ap.add_argument("--embedding-dim", type=int, default=128)
    ap.add_argument("--out", default=None, help="also write the markdown here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n_eps = max(40, args.steps // 110)
    data = synthetic_episodes(
        n_eps,
        seed=0,
        embedding_dim=args.embedding_dim,
        n_baselines=4,
        success_len=(90, 130),
        failure_len=(100, 150),
    )
    # All seen episodes except a small validation / calibration part train; no test part needed.
    split_cfg = SplitConfig(val_fraction=0.05, calib_fraction=0.05, test_fraction=0.01)
    split = split_episodes(data, split_cfg)
    train_steps = sum(data[i].length for i in split.train)
    rows = []
    for name in MODEL_NAMES:
        if ModelConfig(name=name).input_kind == "features" and "privileged" in ModelConfig(name=name).groups:
            continue  # the oracle reads simulator state: it has no streaming path to time
        stamps: list[float] = []
        t0 = time.perf_counter()
        trained = train_model(
            data,
            ModelConfig(name=name),
            TrainConfig(max_epochs=2, patience=5, split=split_cfg),
            split=split,
            on_epoch=lambda log, stamps=stamps: stamps.append(time.perf_counter()),
        )
        epoch_s = stamps[1] - stamps[0]  # the second epoch: no set-up cost
        with tempfile.TemporaryDirectory() as tmp:
            trained.save(tmp)
            fp = FailurePredictor.load(tmp)
        fp.reset(batch_size=1)
        ep = data[split.train[0]]
        sig, val = ep.signals[:1], ep.valid[:1]
        emb = ep.embedding[:1] if ep.embedding is not None else None
        extra = (
            {"baselines": ep.baselines[:1], "state": ep.state[:1], "hidden": ep.hidden[:1]}
            if fp.input_kind == "features"
            else {}
        )
        for _ in range(20):
            fp.predict(sig, val, embedding=emb, **extra)
        blocks = []
        for _ in range(5):  # best of 5 blocks: the CPU is shared, the minimum is the cost
            t = time.perf_counter()
            for _ in range(args.infer_steps // 5):
                fp.predict(sig, val, embedding=emb, **extra)
                fp.alarm()
            blocks.append((time.perf_counter() - t) / (args.infer_steps // 5) * 1e3)
        per_step_ms = min(blocks)
        params = sum(p.numel() for p in trained.model.parameters())
        rows.append(
            {
                "model": name,
                "params": params,
                "epoch_measured_s": epoch_s,
                "epoch_1m_s": epoch_s * FULL / train_steps,
                "infer_ms": per_step_ms,
                "budget_ratio": per_step_ms / CONTROL_PERIOD_MS,
                "total_s": time.perf_counter() - t0,
            }
        )
        print(
            f"{name}: epoch {epoch_s:.2f}s on {train_steps} steps, {per_step_ms:.3f} ms/step", file=sys.stderr
        )
    lines = [
        "# Predictor benchmark",
        "",
        "Command: `.venv/bin/python bench/bench_predictor.py"
        + (f" --steps {args.steps}" if args.steps != 60_000 else "")
        + (f" --out {args.out}" if args.out else "")
        + "` (also run by `make bench`, without `--out`)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 CPU thread. "
        f"Synthetic episodes at the dataset's shapes (signals 12 + valid 12, obs_embedding E={args.embedding_dim}). "
        f"Epoch time measured on {train_steps} training timesteps (second epoch, including the validation pass) and "
        f"extrapolated linearly to 1M timesteps. Inference: `FailurePredictor.predict` + `alarm` at B=1, "
        f"best of 5 blocks of {args.infer_steps // 5} steps after warm-up; ratio = time per step / 50 ms control period (20 Hz). "
        f"Times are wall-clock under whatever load the machine had (epoch times are one measurement each).",
        "",
        "| model | parameters | epoch on measured steps (s) | epoch on 1M timesteps (s, extrapolated) | inference per step, B=1 (ms) | fraction of the 50 ms control period |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['epoch_measured_s']:.2f} | {r['epoch_1m_s']:.0f} | "
            f"{r['infer_ms']:.3f} | {r['budget_ratio']:.4f} |"
        )
    md = "\n".join(lines) + "\n"
    print(md)
    if args.out:
        with open(args.out, "w") as f:
            f.write(md)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
