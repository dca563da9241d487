"""Benchmark: signal extractor (and online baselines) time per control step vs the built-in policy's step.

Runs the built-in policy (shipped weights, or the same architecture untrained when the weights are
absent: the cost is the same) on synthetic batched observations, and times, interleaved in the same
loop (CPU time of this process, robust to other load on the machine), ``policy.act`` and ``SignalExtractor.step`` / ``OnlineBaselines.step`` on the policy's own
internals. Reports the mean per-step times and their ratio at B = 1 and B = 64 (each case is run
``--repeats`` times and the run with the median ratio is shown).

Usage: ``.venv/bin/python bench/bench_signals.py [--steps 48] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from salus.signals import OnlineBaselines, SignalExtractor  # noqa: E402


def build_policy(num_samples: int) -> tuple[object, str]:
    """The shipped built-in policy, or its architecture untrained if no weights are shipped yet."""
    from salus.errors import CheckpointError
    from salus.policies import load_policy

    try:
        return load_policy("builtin", num_samples=num_samples), "builtin (shipped weights)"
    except (CheckpointError, FileNotFoundError, OSError):
        from salus.policies.builtin.adapter import BuiltinPolicyAdapter
        from salus.policies.builtin.configuration_builtin import BuiltinConfig
        from salus.policies.builtin.modeling_builtin import BuiltinFlowPolicy, NormalizationStats

        cfg = BuiltinConfig()
        stats = NormalizationStats(np.zeros(cfg.state_dim), np.ones(cfg.state_dim), np.zeros(4), np.ones(4))
        model = BuiltinFlowPolicy(cfg).eval()
        return BuiltinPolicyAdapter(model, stats, num_samples=num_samples), "builtin architecture (untrained)"


def observation(b: int, size: int, rng: np.random.Generator) -> dict:
    return {
        "image_front": rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8),
        "image_wrist": rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8),
        "state": (rng.normal(size=(b, 22)) * 0.1).astype(np.float32),
        "task": ["pick up the red cube and place it on the green target"] * b,
    }


def run_case(b: int, k: int, steps: int) -> dict:
    rng = np.random.default_rng(0)
    policy, which = build_policy(k)
    size = int(getattr(getattr(policy, "config", None), "image_size", 96))
    obs = observation(b, size, rng)
    policy.reset()  # type: ignore[attr-defined]
    embs, samples = [], []
    for _ in range(16):  # warm-up, and data to fit the extractor's statistics
        policy.act(obs)  # type: ignore[attr-defined]
        it = policy.last_internals  # type: ignore[attr-defined]
        embs.append(it.obs_embedding)
        if it.samples is not None and it.samples.shape[1] >= 2:
            samples.append(it.samples)
    emb = np.concatenate(embs) + rng.normal(scale=1e-3, size=np.concatenate(embs).shape)
    extractor = SignalExtractor(b).fit(emb, np.concatenate(samples) if samples else None)
    baselines = OnlineBaselines(b)
    t_pol = t_ext = t_base = 0.0
    state = np.tile(np.r_[np.zeros(7), np.zeros(7), 0.04, 0.5, 0.0, 0.2, 1.0, 0, 0, 0], (b, 1)).astype(
        np.float32
    )
    state[:, 3] = -1.5
    for _ in range(steps):
        t0 = time.process_time()
        policy.act(obs)  # type: ignore[attr-defined]
        t1 = time.process_time()
        it = policy.last_internals  # type: ignore[attr-defined]
        out = extractor.step(it, state)
        t2 = time.process_time()
        baselines.step(it)
        t3 = time.process_time()
        t_pol += t1 - t0
        t_ext += t2 - t1
        t_base += t3 - t2
        state[:, 15] += 0.001
        assert np.isfinite(out.values).all()
    return {
        "B": b,
        "K": k,
        "policy": which,
        "steps": steps,
        "policy_ms_per_step": 1e3 * t_pol / steps,
        "extractor_us_per_step": 1e6 * t_ext / steps,
        "baselines_us_per_step": 1e6 * t_base / steps,
        "extractor_ratio": t_ext / t_pol,
        "baselines_ratio": t_base / t_pol,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=48, help="timed control steps per case (multiple of 8)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the median ratio is reported")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [(1, 1, args.steps), (1, 4, args.steps), (64, 1, max(16, args.steps // 3))]
    results = []
    for b, k, steps in cases:  # the repeat with the median extractor ratio (the machine may be shared)
        runs = sorted(
            (run_case(b, k, steps) for _ in range(args.repeats)), key=lambda r: r["extractor_ratio"]
        )
        results.append({**runs[len(runs) // 2], "repeats": args.repeats})
    if args.json:
        print(json.dumps({"results": results}))
        return
    print(
        f"{'B':>3} {'K':>2} {'policy ms/step':>15} {'extractor us/step':>18} {'ratio':>7} {'baselines us/step':>18} {'ratio':>7}"
    )
    for r in results:
        print(
            f"{r['B']:>3} {r['K']:>2} {r['policy_ms_per_step']:>15.3f} {r['extractor_us_per_step']:>18.1f} "
            f"{r['extractor_ratio']:>7.2%} {r['baselines_us_per_step']:>18.1f} {r['baselines_ratio']:>7.2%}"
        )
    print(f"policy: {results[0]['policy']}; goal: extractor <= 1% of the policy step at B=1")


if __name__ == "__main__":
    main()
