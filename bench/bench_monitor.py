"""The runtime monitor's added time per control step against the bare policy step, in one run.

Bare: the built-in policy with internals capture off (``capture_internals=False``). Added: the
capture hooks (the same policy with capture on, minus bare) plus ``Monitor.observe`` (signal
extractor + predictor step + conformal band test; attribution only on alarms, the default). Within
each timed block the three run in turn at every control step on the same observation and seeds, so
slow phases of a shared machine hit all of them; medians over blocks are reported. As a cross-check
``Monitor.step`` (policy + monitor in one call) is timed against the bare policy in separate blocks.
Time is the thread's CPU time (``time.thread_time``), which other processes barely disturb. The
observation is a real rendered simulator observation (96x96, two cameras); a component breakdown
(extractor alone; predictor + band alone via ``observe_signals``) is measured on the same steps.

The checkpoints are ``salus-mlp`` and ``salus-tcn`` with the default architectures, trained for one
epoch on synthetic episodes (inference cost does not depend on the weights). If the package's
built-in policy weights are missing, a randomly initialised built-in network of the same
architecture is timed (printed). Run: ``python bench/bench_monitor.py [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def make_policy(capture: bool) -> tuple[Any, str]:
    """The shipped built-in policy, or the same architecture with random weights."""
    from salus.policies import load_policy
    from salus.policies.builtin.adapter import BuiltinPolicyAdapter
    from salus.policies.builtin.configuration_builtin import BuiltinConfig
    from salus.policies.builtin.modeling_builtin import BuiltinFlowPolicy, NormalizationStats

    try:
        return load_policy("builtin", capture_internals=capture, seed=0), "builtin (shipped weights)"
    except Exception:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        stats = NormalizationStats.fit(
            rng.normal(0, 0.3, (64, 22)).astype(np.float32), rng.uniform(-1, 1, (64, 4)).astype(np.float32)
        )
        model = BuiltinFlowPolicy(BuiltinConfig())
        return BuiltinPolicyAdapter(
            model, stats, capture_internals=capture, seed=0
        ), "builtin (random weights)"


def make_checkpoints(out: Path, embed_dim: int) -> dict[str, Path]:
    """salus-mlp (default architecture) and salus-tcn checkpoints with real extractor statistics."""
    from salus.predictor import ModelConfig, SplitConfig, TrainConfig, synthetic_episodes, train_model
    from salus.signals import SignalExtractor

    eps = synthetic_episodes(80, seed=0, embedding_dim=embed_dim)
    stats = SignalExtractor(1).fit(np.random.default_rng(0).normal(size=(256, embed_dim))).state_dict()
    stats["tensors"] = {k: np.asarray(v).tolist() for k, v in stats["tensors"].items()}
    eps.extractor_statistics = stats
    cfg = TrainConfig(max_epochs=1, patience=1, split=SplitConfig(calib_fraction=0.3))
    dirs = {}
    for name in ("salus-mlp", "salus-tcn"):
        dirs[name] = train_model(eps, ModelConfig(name=name), cfg).save(out / name)
    return dirs


def sim_observation(batch: int) -> dict[str, Any]:
    from salus.sim import make_env

    env = make_env("pick_place")
    obs, _ = env.reset(seed=0)
    env.close()
    if batch == 1:
        return obs
    return {k: (np.stack([v] * batch) if k != "task" else [v] * batch) for k, v in obs.items()}


def block(fn: Any, reset: Any, obs: dict[str, Any], steps: int) -> tuple[float, float]:
    reset()
    c0, w0 = time.thread_time(), time.perf_counter()
    for _ in range(steps):
        fn(obs)
    return (time.thread_time() - c0) / steps, (time.perf_counter() - w0) / steps


def interleaved_block(
    bare: Any, captured: Any, monitor: Any, obs: dict[str, Any], steps: int
) -> tuple[float, ...]:
    """Per step, in turn: the bare policy, the capturing policy, then ``monitor.observe`` on the
    capturing policy's step. Returns CPU seconds per step (bare, capturing policy, observe); pairing
    at the step level keeps slow phases of a shared machine out of the differences."""
    bare.reset(seed=0)
    captured.reset(seed=0)
    monitor.reset(reset_policy=False)
    tb = tc = to = 0.0
    clock = time.thread_time
    for _ in range(steps):
        t0 = clock()
        bare.act(obs)
        t1 = clock()
        action = captured.act(obs)
        t2 = clock()
        monitor.observe(obs, action)
        t3 = clock()
        tb, tc, to = tb + t1 - t0, tc + t2 - t1, to + t3 - t2
    return tb / steps, tc / steps, to / steps


def bench(model_dir: Path, batch: int, rounds: int, chunks: int) -> dict[str, Any]:
    from salus.monitor import Monitor

    bare, which = make_policy(capture=False)
    captured, _ = make_policy(capture=True)
    monitor = Monitor.load(model_dir, policy=captured)
    obs = sim_observation(batch)
    steps = chunks * bare.n_action_steps
    for _ in range(2):  # warm-up
        interleaved_block(bare, captured, monitor, obs, steps)
        block(monitor.step, monitor.reset, obs, steps)
    t: dict[str, list[float]] = {k: [] for k in ("bare", "capture", "observe", "step", "step_bare")}
    for _ in range(rounds):
        b, c, o = interleaved_block(bare, captured, monitor, obs, steps)
        t["bare"].append(b)
        t["capture"].append(c)
        t["observe"].append(o)
        t["step_bare"].append(block(bare.act, lambda: bare.reset(seed=0), obs, steps)[0])
        t["step"].append(block(monitor.step, monitor.reset, obs, steps)[0])
    med = {k: statistics.median(v) * 1e3 for k, v in t.items()}
    paired = lambda a, b: statistics.median(x - y for x, y in zip(t[a], t[b], strict=True)) * 1e3  # noqa: E731
    hooks = paired("capture", "bare")
    # component breakdown on the same steps: the extractor alone, then predictor + band alone
    captured.reset(seed=0)
    internals, states = [], []
    state = np.asarray(obs["state"], dtype=np.float32).reshape(batch, -1)
    for _ in range(steps):
        captured.act(obs)
        internals.append(captured.last_internals)
        states.append(state)
    ex = monitor._extractor_cls(batch)
    ex.load_state_dict(monitor._extractor_state)
    c0 = time.thread_time()
    sig = [ex.step(i, s) for i, s in zip(internals, states, strict=True)]
    t_extract = (time.thread_time() - c0) / steps * 1e3
    monitor.reset(reset_policy=False)
    c0 = time.thread_time()
    for s in sig:
        monitor.observe_signals(s.values, s.valid)
    t_predict = (time.thread_time() - c0) / steps * 1e3
    added = hooks + med["observe"]
    return {
        "policy": which,
        "predictor": monitor.predictor.name,
        "runner": type(monitor.runner).__name__,
        "batch": batch,
        "steps_per_block": steps,
        "rounds": rounds,
        "bare_ms": med["bare"],
        "hooks_ms": hooks,
        "observe_ms": med["observe"],
        "extractor_ms": t_extract,
        "predictor_and_band_ms": t_predict,
        "added_ms": added,
        "added_ratio": added / med["bare"],
        "step_added_ms": paired("step", "step_bare"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--chunks", type=int, default=3, help="chunks per timed block (one fewer for B > 8)")
    parser.add_argument(
        "--batch", type=int, action="append", default=None, help="batch sizes (default 1 and 8)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    torch.set_num_threads(1)
    probe, _ = make_policy(capture=True)
    embed_dim = int(probe.config.embed_dim)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dirs = make_checkpoints(Path(tmp), embed_dim)
        for batch in args.batch or [1, 64]:
            for name, d in dirs.items():
                if batch != 1 and name != "salus-mlp":
                    continue
                rows.append(
                    bench(d, batch, args.rounds, args.chunks if batch <= 8 else max(1, args.chunks - 1))
                )
    if args.json:
        print(json.dumps({"results": rows}))
        return
    print(
        f"policy: {rows[0]['policy']}; CPU time per control step, medians of {args.rounds} interleaved blocks"
    )
    print(
        "| predictor (runner) | B | bare policy step | hooks | monitor.observe | = added | added / bare "
        "| of which extractor | of which predictor+band | added via monitor.step |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['predictor']} ({r['runner']}) | {r['batch']} | {r['bare_ms']:.3f} ms | {r['hooks_ms']:.3f} ms | "
            f"{r['observe_ms']:.3f} ms | {r['added_ms']:.3f} ms | {100 * r['added_ratio']:.1f}% | "
            f"{r['extractor_ms']:.3f} ms | {r['predictor_and_band_ms']:.3f} ms | {r['step_added_ms']:.3f} ms |"
        )
    print("goal: added <= 1% of the bare step and <= 0.2 ms at B=1")


if __name__ == "__main__":
    main()
