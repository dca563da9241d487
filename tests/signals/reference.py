"""Saved outputs of the signal extractor on fixed streams, to keep refactors numerically identical.

``extractor_reference.safetensors`` was written by ``python -m tests.signals.reference`` with the
implementation before the single-vectorised-path refactor (commit cff780d: a batched path and a
scalar B = 1 path). Keys ``CASE.values`` (T, B, 12) float32 and ``CASE.valid`` (T, B, 12) uint8;
for B = 1, ``CASE`` is the old default (scalar) path and ``CASE_vec`` the old batched path. The
metadata ``signal_names`` names the columns, so the test compares signals by name: adding a signal
leaves the file valid. Regenerate only when a saved signal's definition changes on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from salus.signals import SIGNAL_NAMES, SignalConfig, SignalExtractor

from .helpers import internals, random_stream, robot_state

REFERENCE = Path(__file__).parent / "data" / "extractor_reference.safetensors"


def _inject(stream, rng: np.random.Generator, b: int) -> None:
    """NaN / inf entries in every input field at a few steps, and a softmax-free no-overlap jump."""
    fields = ["action", "hidden_step", "chunk", "obs_embedding", "samples", "state"]
    for t, (it, st) in enumerate(stream):
        if t % 7 == 3:
            name = fields[(t // 7) % len(fields)]
            row = int(rng.integers(0, b))
            target = st if name == "state" else getattr(it, name)
            target[row].flat[int(rng.integers(0, target[row].size))] = np.nan if t % 2 else np.inf


def cases() -> dict[str, Callable[[bool], list]]:
    """Case name -> function(fast_path) returning the list of (values, valid) per step."""

    def stream_case(b: int, seed: int, cfg: SignalConfig, inject: bool, fit: bool, resets=()):
        def run(fast: bool) -> list:
            rng = np.random.default_rng(seed)
            stream = random_stream(rng, 48, b=b, c=8, n_exec=4, k=5)
            if inject:
                _inject(stream, rng, b)
            ex = SignalExtractor(b, cfg)
            ex._fast_path = fast  # type: ignore[attr-defined]  # the old implementation's switch (now unused)
            if fit:
                ex.fit(rng.normal(size=(80, 5)) * 1.5, rng.normal(scale=0.3, size=(8, 5, 8, 4)))
            out = []
            for t, (it, st) in enumerate(stream):
                for when, env in resets:
                    if t == when:
                        ex.reset(env)
                s = ex.step(it, st)
                out.append((s.values, s.valid))
            return out

        return run

    def token_case(fast: bool) -> list:
        rng = np.random.default_rng(11)
        ex = SignalExtractor(2, SignalConfig(require_fitted=False))
        ex._fast_path = fast  # type: ignore[attr-defined]
        out = []
        ee = np.array([0.5, 0.0, 0.2])
        for t in range(30):
            a = np.clip(rng.normal(scale=0.4, size=(2, 4)), -1, 1)
            logits = rng.normal(scale=2.0, size=(2, 16))
            p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            if t == 9:
                p[1, 0] = np.nan
            ee = ee + 0.01 * a[0, :3]
            it = internals(
                action=a,
                chunk=np.repeat(a[:, None], 3, axis=1),
                chunk_id=t,
                chunk_offset=0,
                new_chunk=True,
                hidden=rng.normal(size=(2, 6)),
                emb=rng.normal(size=(2, 3)),
                probs=p,
            )
            s = ex.step(it, robot_state(2, ee=ee))
            out.append((s.values, s.valid))
        return out

    def jump_case(fast: bool) -> list:
        """Chunks recomputed at irregular offsets (no overlap, offsets past the previous chunk)."""
        rng = np.random.default_rng(12)
        ex = SignalExtractor(1, SignalConfig(cluster_radius=0.2))
        ex._fast_path = fast  # type: ignore[attr-defined]
        ex.fit(rng.normal(size=(40, 4)))
        out, cid, off = [], 0, 0
        chunk = rng.normal(scale=0.3, size=(1, 3, 4))
        for t in range(40):
            new = t == 0 or rng.uniform() < 0.3
            if new:
                cid += 1
                off = int(rng.integers(0, 3))
                chunk = rng.normal(scale=0.3, size=(1, 3, 4))
            else:
                off = min(off + 1, 2)
            smp = rng.normal(scale=0.2, size=(1, 4, 3, 4))
            it = internals(
                action=chunk[:, off],
                chunk=chunk,
                chunk_id=cid,
                chunk_offset=off,
                new_chunk=new,
                hidden=rng.normal(size=(1, 5)) * (0 if t == 5 else 1),
                emb=rng.normal(size=(1, 4)) * (0 if t == 7 else 1),
                samples=smp,
            )
            s = ex.step(it, robot_state(1, ee=(0.5 + 0.01 * t, 0.0, 0.2)))
            out.append((s.values, s.valid))
        return out

    base = SignalConfig()
    return {
        "b1": stream_case(1, 1, base, False, True),
        "b1_nan": stream_case(1, 2, base, True, True, resets=((20, 0), (33, None))),
        "b1_radius": stream_case(1, 3, SignalConfig(cluster_radius=0.15, consistency_window=3), True, True),
        "b1_unfitted": stream_case(1, 4, SignalConfig(require_fitted=False), True, False),
        "b4": stream_case(4, 5, base, False, True),
        "b4_nan": stream_case(4, 6, base, True, True, resets=((10, 2), (25, 0), (40, None))),
        "b4_unfitted": stream_case(
            4, 7, SignalConfig(require_fitted=False, consistency_window=7), True, False
        ),
        "b2_tokens": token_case,
        "b1_jump": jump_case,
    }


def stack(out: list) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([v for v, _ in out]), np.stack([m for _, m in out]).astype(np.uint8)


def main() -> None:
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    for name, fn in cases().items():
        tensors[f"{name}.values"], tensors[f"{name}.valid"] = stack(fn(True))
        if name.startswith("b1"):
            tensors[f"{name}_vec.values"], tensors[f"{name}_vec.valid"] = stack(fn(False))
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(REFERENCE), metadata={"signal_names": json.dumps(list(SIGNAL_NAMES))})
    print(f"wrote {REFERENCE} ({len(tensors)} tensors)")


if __name__ == "__main__":
    main()
