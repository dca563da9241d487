"""Streaming extractor of the 12 signals over B parallel episodes.

One ``step`` per control step takes that step's :class:`~salus.policies.base.StepInternals` and the
robot state (B, 22) the policy acted on, and returns the signals (B, 12) float32 plus a validity
mask (B, 12). Values are always finite: an invalid entry (missing history, missing input, NaN
input) is 0 and flagged False in ``valid``. Per-environment history lives in preallocated arrays,
so a step is a fixed number of vectorised numpy operations whatever B is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import CheckpointError, InvalidInputError, NotFittedError
from salus.signals.definitions import NUM_SIGNALS, SIGNAL_NAMES, SignalConfig
from salus.signals.stats import GaussianStats, as_2d_finite, cluster_probabilities, entropy, pairwise_rms
from salus.sim.spec import (
    JOINT_LOWER,
    JOINT_UPPER,
    POSITION_ACTION_SCALE_M,
    STATE_DIM,
    STATE_SLICES,
    WORKSPACE_HIGH,
    WORKSPACE_LOW,
)

__all__ = ["SignalExtractor", "SignalStep", "validate_step_inputs", "STATS_FORMAT_VERSION"]

STATS_FORMAT_VERSION = 1

# Column indices, in SIGNAL_NAMES order.
(
    _VOL,
    _MAG,
    _ACC,
    _TDIV,
    _DRIFT,
    _NSPIKE,
    _OOD,
    _ENT,
    _PMAX,
    _EXEC,
    _MARGIN,
    _TCONS,
) = range(NUM_SIGNALS)

# Constraint margin: the 7 joint positions and the 3 end-effector coordinates against their limits.
_LIMIT_COLS = np.r_[
    np.arange(STATE_DIM)[STATE_SLICES["joint_pos"]], np.arange(STATE_DIM)[STATE_SLICES["ee_pos"]]
]
_LIMIT_LO = np.concatenate([JOINT_LOWER, WORKSPACE_LOW]).astype(np.float64)
_LIMIT_HI = np.concatenate([JOINT_UPPER, WORKSPACE_HIGH]).astype(np.float64)
_LIMIT_RANGE = _LIMIT_HI - _LIMIT_LO


@dataclass
class SignalStep:
    """Signals of one control step: ``values`` (B, 12) float32, always finite; ``valid`` (B, 12) bool."""

    values: np.ndarray
    valid: np.ndarray


def _arr(internals: Any, name: str) -> np.ndarray:
    value = getattr(internals, name, None)
    if value is None:
        raise InvalidInputError(f"StepInternals.{name} is missing (None); it is required by the signals")
    return np.asarray(value)


def _shape_error(name: str, got: tuple[int, ...], want: str) -> InvalidInputError:
    return InvalidInputError(f"StepInternals.{name} must have shape {want}, got {got}")


def validate_step_inputs(internals: Any, robot_state: Any, batch_size: int) -> dict[str, np.ndarray | None]:
    """Check shapes of one step's inputs and return them as numpy arrays (no copies where possible).

    Raises InvalidInputError naming the field, its shape and the expected one.
    """
    b = batch_size
    action = _arr(internals, "action")
    if action.ndim != 2 or action.shape[0] != b or action.shape[1] < 3:
        raise _shape_error("action", action.shape, f"(B={b}, A>=3)")
    a_dim = action.shape[1]
    chunk = _arr(internals, "chunk")
    if chunk.ndim != 3 or chunk.shape[0] != b or chunk.shape[2] != a_dim or chunk.shape[1] < 1:
        raise _shape_error("chunk", chunk.shape, f"(B={b}, C>=1, A={a_dim})")
    out: dict[str, np.ndarray | None] = {"action": action, "chunk": chunk}
    for name in ("chunk_id", "chunk_offset", "new_chunk"):
        arr = _arr(internals, name)
        if arr.shape != (b,):
            raise _shape_error(name, arr.shape, f"(B={b},)")
        out[name] = arr
    offset = out["chunk_offset"]
    assert offset is not None
    if offset.size and (int(offset.min()) < 0 or int(offset.max()) >= chunk.shape[1]):
        raise InvalidInputError(
            f"StepInternals.chunk_offset must lie in [0, C={chunk.shape[1]}), got {offset.tolist()}"
        )
    for name in ("hidden_step", "obs_embedding"):
        arr = _arr(internals, name)
        if arr.ndim != 2 or arr.shape[0] != b or arr.shape[1] < 1:
            raise _shape_error(name, arr.shape, f"(B={b}, D>=1)")
        out[name] = arr
    samples = getattr(internals, "samples", None)
    if samples is not None:
        samples = np.asarray(samples)
        if samples.ndim != 4 or samples.shape[0] != b or samples.shape[3] != a_dim:
            raise _shape_error("samples", samples.shape, f"(B={b}, K, C, A={a_dim})")
    out["samples"] = samples
    probs = getattr(internals, "action_token_probs", None)
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[0] != b or probs.shape[1] < 1:
            raise _shape_error("action_token_probs", probs.shape, f"(B={b}, V>=1)")
        finite = np.isfinite(probs).all(axis=1)
        if finite.any():
            pf = probs[finite]
            if float(pf.min()) < -1e-6 or float(np.abs(pf.sum(axis=1) - 1.0).max()) > 1e-3:
                raise InvalidInputError(
                    "StepInternals.action_token_probs must be a softmax: entries >= 0, each row summing to 1"
                )
    out["action_token_probs"] = probs
    state = np.asarray(robot_state)
    if state.shape != (b, STATE_DIM):
        raise InvalidInputError(
            f"robot_state must have shape (B={b}, {STATE_DIM}) (layout salus.sim.spec.STATE_SLICES), got {state.shape}"
        )
    out["robot_state"] = state
    return out


def _norm(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("...d,...d->...", x, x))


class SignalExtractor:
    """Computes the 12 signals of :data:`~salus.signals.SIGNAL_NAMES` step by step for B episodes.

    Usage: ``ex = SignalExtractor(B); ex.fit(success_embeddings, samples)`` (or
    ``load_state_dict``), then per episode ``ex.reset(i)`` and per step
    ``ex.step(policy.last_internals, obs["state"]) -> SignalStep``.
    """

    _fast_path = True  # B = 1 runs on Python floats (tests compare it with the vectorised path)

    def __init__(self, batch_size: int, config: SignalConfig | None = None) -> None:
        if not isinstance(batch_size, int | np.integer) or int(batch_size) < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.config = config if config is not None else SignalConfig()
        self.ood = GaussianStats(shrinkage=self.config.ood_shrinkage)
        self.fitted_cluster_radius: float | None = None
        self.meta: dict[str, Any] = {}  # JSON-able provenance of the fit (policy, weights hash, episodes)
        self._dims: tuple[int, int, int, int] | None = None  # (C, A, E, H) fixed at the first step
        b, w = self.batch_size, self.config.consistency_window
        self._t = np.zeros(b, dtype=np.int64)
        self._nhist = np.zeros(b, dtype=np.int64)
        self._hist = np.zeros((b, w, 1))  # ring buffer of the last W actions; slot _pos is written next
        self._pos = 0
        self._diff = np.zeros((b, 5, 1))
        self._prev_ee = np.zeros((b, 3))
        self._lat_sum = np.zeros((b, 1))  # per episode: sum S of hidden_step over the finite steps
        self._lat_sq = np.zeros(b)  # ||S||^2, updated incrementally
        self._norm_cnt = np.zeros(b, dtype=np.int64)
        self._nchunks = np.zeros(b, dtype=np.int64)
        self._cur_id = np.zeros(b, dtype=np.int64)
        self._cur_start = np.zeros(b, dtype=np.int64)
        self._prev_start = np.zeros(b, dtype=np.int64)
        self._cur_chunk = np.zeros((b, 1, 1))
        self._prev_chunk = np.zeros((b, 1, 1))
        self._cur_emb = np.zeros((b, 1))
        # Values held for the steps served from one chunk: drift, ood, entropy, max probability.
        self._held = np.zeros((b, 4))
        self._held_ok = np.zeros((b, 4), dtype=bool)
        self._arange = np.arange(b)

    # ------------------------------------------------------------------ fitting and state
    @property
    def fitted(self) -> bool:
        """True once the OOD statistics are fitted or loaded."""
        return self.ood.fitted

    @property
    def cluster_radius(self) -> float | None:
        """Radius used to cluster the K samples: the configured one, else the fitted one."""
        return (
            self.config.cluster_radius
            if self.config.cluster_radius is not None
            else self.fitted_cluster_radius
        )

    def fit(self, obs_embeddings: Any, samples: Any = None) -> SignalExtractor:
        """Fit the frozen statistics on successful training rollouts.

        ``obs_embeddings`` (N, E): observation embeddings (one per computed chunk is enough).
        ``samples`` (M, K, C, A) or None: sampled chunk batches (K >= 2) of the same rollouts; sets the
        cluster radius to ``cluster_radius_scale`` x the median RMS distance between two samples of
        the same batch (so a typical in-distribution batch links about half of its pairs).
        """
        emb = as_2d_finite(obs_embeddings, "obs_embeddings")
        self.ood.fit(emb)
        if samples is not None:
            s = np.asarray(samples, dtype=np.float64)
            if s.ndim != 4 or s.shape[1] < 2:
                raise InvalidInputError(f"samples must have shape (M, K>=2, C, A), got {s.shape}")
            if not np.isfinite(s).all():
                raise InvalidInputError("samples contain non-finite values")
            d = pairwise_rms(s.reshape(s.shape[0], s.shape[1], -1))
            k = s.shape[1]
            pairs = d[:, ~np.eye(k, dtype=bool)]  # (M, K (K - 1)) distances between distinct samples
            radius = float(np.median(pairs)) * self.config.cluster_radius_scale
            self.fitted_cluster_radius = max(radius, 1e-9)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Fitted statistics: ``{"format_version", "signal_names", "config", "meta" (JSON dicts), "tensors"}``.

        ``tensors`` maps names to numpy arrays (safetensors-ready); everything else is JSON-able.
        """
        tensors = self.ood.state_dict(prefix="ood.")
        if self.fitted_cluster_radius is not None:
            tensors["cluster_radius"] = np.asarray([self.fitted_cluster_radius], dtype=np.float64)
        return {
            "format_version": STATS_FORMAT_VERSION,
            "signal_names": list(SIGNAL_NAMES),
            "config": self.config.to_dict(),
            "meta": dict(self.meta),
            "tensors": tensors,
        }

    def load_state_dict(self, state: dict[str, Any], *, load_config: bool = True) -> None:
        """Restore fitted statistics (and, unless ``load_config`` is False, the config) from ``state_dict()``."""
        if not isinstance(state, dict) or "tensors" not in state:
            raise CheckpointError(
                "signal statistics must be a dict with 'tensors' (from SignalExtractor.state_dict())"
            )
        version = state.get("format_version")
        if version != STATS_FORMAT_VERSION:
            raise CheckpointError(
                f"signal statistics format_version {version!r} is not supported (expected {STATS_FORMAT_VERSION})"
            )
        names = state.get("signal_names")
        if names is not None and list(names) != list(SIGNAL_NAMES):
            raise CheckpointError(
                f"signal statistics were fitted for signals {names}, not {list(SIGNAL_NAMES)}"
            )
        if load_config and "config" in state:
            self.config = SignalConfig.from_dict(dict(state["config"]))
        self.meta = dict(state.get("meta") or {})
        tensors = state["tensors"]
        self.ood = GaussianStats(shrinkage=self.config.ood_shrinkage)
        if "ood.mean" in tensors:
            self.ood.load_state_dict(tensors, prefix="ood.")
        radius = tensors.get("cluster_radius")
        self.fitted_cluster_radius = None if radius is None else float(np.asarray(radius).reshape(-1)[0])
        self._dims = None  # buffers are re-allocated (with the loaded window) at the next step
        self._hist = np.zeros((self.batch_size, self.config.consistency_window, 1))
        self.reset()

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``PATH.safetensors`` (tensors) and ``PATH.json`` (version, names, config); returns both paths."""
        from safetensors.numpy import save_file

        base = _stats_base(path)
        base.parent.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        tensors = {k: np.ascontiguousarray(v) for k, v in state.pop("tensors").items()}
        st_path, js_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
        save_file(tensors, str(st_path))
        js_path.write_text(json.dumps(state, indent=2) + "\n")
        return st_path, js_path

    @classmethod
    def load(cls, path: str | Path, batch_size: int = 1) -> SignalExtractor:
        """Load an extractor saved with :meth:`save` (PATH, PATH.json or PATH.safetensors)."""
        from safetensors.numpy import load_file

        base = _stats_base(path)
        st_path, js_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
        for p in (st_path, js_path):
            if not p.is_file():
                raise CheckpointError(
                    f"signal statistics file {p} is missing (expected {st_path} and {js_path})"
                )
        try:
            state = json.loads(js_path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"signal statistics {js_path} is not valid JSON: {exc}") from exc
        state["tensors"] = load_file(str(st_path))
        extractor = cls(batch_size, SignalConfig.from_dict(state.get("config", {})))
        extractor.load_state_dict(state)
        return extractor

    # ------------------------------------------------------------------ streaming
    def reset(self, env_index: int | None = None) -> None:
        """Start a new episode for all environments, or for one (``env_index``)."""
        if env_index is None:
            sel: Any = slice(None)
        else:
            if not 0 <= int(env_index) < self.batch_size:
                raise InvalidInputError(f"env_index must be in [0, {self.batch_size}), got {env_index}")
            sel = int(env_index)
        for arr in (self._t, self._nhist, self._norm_cnt, self._nchunks):
            arr[sel] = 0
        for farr in (
            self._hist,
            self._lat_sum,
            self._lat_sq,
            self._held,
            self._cur_chunk,
            self._prev_chunk,
            self._cur_emb,
        ):
            farr[sel] = 0.0
        self._held_ok[sel] = False

    def _allocate(self, c: int, a: int, e: int, h: int) -> None:
        b, w = self.batch_size, self.config.consistency_window
        self._dims = (c, a, e, h)
        self._lat_sum = np.zeros((b, h))
        self._hist = np.zeros((b, w, a))
        self._pos = 0
        self._diff = np.zeros((b, 5, a))
        self._cur_chunk = np.zeros((b, c, a))
        self._prev_chunk = np.zeros((b, c, a))
        self._cur_emb = np.zeros((b, e))
        self.reset()

    def step(self, internals: Any, robot_state: Any) -> SignalStep:
        """Signals of one control step of all B environments.

        ``internals``: :class:`~salus.policies.base.StepInternals` of this step (batch B).
        ``robot_state`` (B, 22): the state the policy acted on at this step.
        """
        if self.config.require_fitted and not self.ood.fitted:
            raise NotFittedError(
                "SignalExtractor needs fitted OOD statistics: call fit(...) on successful rollouts, "
                "load_state_dict(...), SignalExtractor.load(path), or `salus signals fit`"
            )
        x = validate_step_inputs(internals, robot_state, self.batch_size)
        action, chunk, emb, hid = x["action"], x["chunk"], x["obs_embedding"], x["hidden_step"]
        assert action is not None and chunk is not None and emb is not None and hid is not None
        dims = (chunk.shape[1], action.shape[1], emb.shape[1], hid.shape[1])
        c, e_dim = dims[0], dims[2]
        if self._dims is None:
            self._allocate(*dims)
        elif self._dims != dims:
            raise InvalidInputError(
                f"chunk length, action, embedding and hidden widths changed from {self._dims} to {dims} "
                "(C, A, E, H) without re-creating the extractor"
            )
        if self.ood.fitted and self.ood.dim != e_dim:
            raise InvalidInputError(
                f"obs_embedding width {e_dim} does not match the fitted statistics' width {self.ood.dim}"
            )
        if self.batch_size == 1 and x["action_token_probs"] is None and self._fast_path:
            return self._step_one(x, c)
        b, w, t = self.batch_size, self._hist.shape[1], self._t
        vals = np.empty((b, NUM_SIGNALS))
        ok = np.empty((b, NUM_SIGNALS), dtype=bool)
        a = action.astype(np.float64)
        state = x["robot_state"]
        assert state is not None
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # --- chunk bookkeeping (held per-chunk values are recomputed for rows that start a chunk)
            cid, off, new = x["chunk_id"], x["chunk_offset"], x["new_chunk"]
            assert cid is not None and off is not None and new is not None
            changed = (t == 0) | new.astype(bool) | (cid != self._cur_id)
            if changed.any():
                self._on_new_chunk(np.flatnonzero(changed), x, t)
            # --- the vectors whose norms are signals, in one (B, 5, A) buffer
            nh = self._nhist
            prev1 = self._hist[:, (self._pos - 1) % w]
            prev2 = self._hist[:, (self._pos - 2) % w]
            d = self._diff
            np.subtract(a, prev1, out=d[:, 0])  # volatility
            d[:, 1, :3] = a[:, :3]  # magnitude
            np.subtract(d[:, 0], prev1 - prev2, out=d[:, 2])  # acceleration: a - 2 a1 + a2
            sx = state[:, _LIMIT_COLS].astype(np.float64)  # 7 joints then 3 ee coordinates
            ee = sx[:, 7:]
            d[:, 3, :3] = (ee - self._prev_ee) / POSITION_ACTION_SCALE_M - np.minimum(
                np.maximum(prev1[:, :3], -1.0), 1.0
            )  # execution mismatch
            idx = t - self._prev_start
            d[:, 4] = (
                chunk[self._arange, off]
                - self._prev_chunk[self._arange, np.minimum(np.maximum(idx, 0), c - 1)]
            )
            norms = np.sqrt(np.einsum("bkd,bkd->bk", d, d))
            vals[:, _VOL : _ACC + 1] = norms[:, :3]
            vals[:, _EXEC] = norms[:, 3]
            vals[:, _TDIV] = norms[:, 4]
            ok[:, _VOL] = ok[:, _EXEC] = nh >= 1
            ok[:, _MAG] = ok[:, _MARGIN] = True
            ok[:, _ACC] = nh >= 2
            ok[:, _TDIV] = (self._nchunks >= 2) & (idx >= 0) & (idx < c)
            self._prev_ee[:] = ee
            # --- constraint margin over the 7 joints and the 3 workspace axes
            vals[:, _MARGIN] = (np.minimum(sx - _LIMIT_LO, _LIMIT_HI - sx) / _LIMIT_RANGE).min(axis=1)
            # --- push the action into the ring, then temporal consistency over the window
            self._hist[:, self._pos] = a
            self._pos = (self._pos + 1) % w
            np.minimum(nh + 1, w, out=nh)
            p3 = self._hist[:, :, :3]  # slots of a reset environment hold zeros until written
            total = np.sqrt(np.einsum("bwd,bwd->bw", p3, p3)).sum(axis=1)
            resultant = p3.sum(axis=1)
            vals[:, _TCONS] = np.sqrt(np.einsum("bd,bd->b", resultant, resultant)) / total
            ok[:, _TCONS] = (nh >= 2) & (total >= self.config.min_motion)
            # --- latent norm spike
            hs = x["hidden_step"]
            assert hs is not None
            # ||h - S/c||^2 = ||h||^2 - 2 h.S / c + ||S||^2 / c^2 (c finite steps so far): two passes over H
            h = hs.astype(np.float64)
            hh = np.einsum("bd,bd->b", h, h)
            hs_dot = np.einsum("bd,bd->b", h, self._lat_sum)
            good_h = np.isfinite(hh)  # any NaN / inf entry makes ||h||^2 non-finite
            cnt: np.ndarray = self._norm_cnt
            c = np.maximum(cnt, 1)
            mm = self._lat_sq / (c * c)
            d2 = np.maximum(hh - 2.0 * hs_dot / c + mm, 0.0)
            vals[:, _NSPIKE] = np.sqrt(d2 / mm)
            ok[:, _NSPIKE] = good_h & np.greater_equal(cnt, 1) & (mm > 0)
            np.add(self._lat_sum, h, out=self._lat_sum, where=good_h[:, None])
            self._lat_sq += np.where(good_h, 2.0 * hs_dot + hh, 0.0)
            cnt += good_h
            # --- held: latent drift, ood, sample entropy, max probability
            vals[:, _DRIFT] = self._held[:, 0]
            vals[:, _OOD : _PMAX + 1] = self._held[:, 1:]
            ok[:, _DRIFT] = self._held_ok[:, 0]
            ok[:, _OOD : _PMAX + 1] = self._held_ok[:, 1:]
            probs = x["action_token_probs"]
            if probs is not None:
                p = np.clip(probs, 0.0, None)
                vals[:, _ENT] = entropy(p)
                vals[:, _PMAX] = p.max(axis=1)
                ok[:, _ENT] = ok[:, _PMAX] = np.isfinite(probs).all(axis=1)
            self._t += 1
            ok &= np.isfinite(vals)
        return SignalStep(values=np.where(ok, vals, 0.0).astype(np.float32), valid=ok)

    def _step_one(self, x: dict[str, np.ndarray | None], c: int) -> SignalStep:
        """The same computation as the vectorised path for B = 1, on Python floats (5x fewer numpy calls).

        Reads and writes the same per-environment arrays, so reset, state and chunk handling are shared.
        """
        action, chunk, state, hs = x["action"], x["chunk"], x["robot_state"], x["hidden_step"]
        cid, off_arr, new = x["chunk_id"], x["chunk_offset"], x["new_chunk"]
        assert action is not None and chunk is not None and state is not None and hs is not None
        assert cid is not None and off_arr is not None and new is not None
        t = int(self._t[0])
        if t == 0 or bool(new[0]) or int(cid[0]) != int(self._cur_id[0]):
            self._on_new_chunk_one(x, t)
        a = action[0].tolist()
        w, pos = self._hist.shape[1], self._pos
        prev1 = self._hist[0, (pos - 1) % w].tolist()
        prev2 = self._hist[0, (pos - 2) % w].tolist()
        nh = int(self._nhist[0])
        nan = math.nan
        vals = [nan] * NUM_SIGNALS
        ok = [False] * NUM_SIGNALS
        vals[_VOL] = math.dist(a, prev1)
        ok[_VOL] = ok[_EXEC] = nh >= 1
        vals[_MAG] = math.hypot(a[0], a[1], a[2])
        ok[_MAG] = True
        vals[_ACC] = math.hypot(*[ai - 2.0 * p1 + p2 for ai, p1, p2 in zip(a, prev1, prev2, strict=True)])
        ok[_ACC] = nh >= 2
        sxa = state[0, _LIMIT_COLS].astype(np.float64)
        sx = sxa.tolist()
        pe = self._prev_ee[0].tolist()
        vals[_EXEC] = math.hypot(
            *[(sx[7 + i] - pe[i]) / POSITION_ACTION_SCALE_M - min(max(prev1[i], -1.0), 1.0) for i in range(3)]
        )
        self._prev_ee[0] = sx[7:]
        vals[_MARGIN] = float((np.minimum(sxa - _LIMIT_LO, _LIMIT_HI - sxa) / _LIMIT_RANGE).min())
        ok[_MARGIN] = True  # NaN propagates through min; filtered with the other non-finite values
        off = int(off_arr[0])
        idx = t - int(self._prev_start[0])
        if int(self._nchunks[0]) >= 2 and 0 <= idx < c:
            vals[_TDIV] = math.dist(chunk[0, off].tolist(), self._prev_chunk[0, idx].tolist())
            ok[_TDIV] = True
        # push the action, then temporal consistency over the ring (zeros in unwritten slots)
        self._hist[0, pos] = a
        self._pos = (pos + 1) % w
        nh = min(nh + 1, w)
        self._nhist[0] = nh
        rows = self._hist[0, :, :3].tolist()
        total = math.fsum(math.hypot(*r) for r in rows)
        if nh >= 2 and total >= self.config.min_motion:
            vals[_TCONS] = math.hypot(*[math.fsum(col) for col in zip(*rows, strict=True)]) / total
            ok[_TCONS] = True
        # latent norm spike
        h = hs[0].astype(np.float64)
        hh = float(h @ h)
        if math.isfinite(hh):
            cnt = int(self._norm_cnt[0])
            lat = self._lat_sum[0]
            hs_dot, sq = float(h @ lat), float(self._lat_sq[0])
            if cnt >= 1:
                mm = sq / (cnt * cnt)
                if mm > 0:
                    vals[_NSPIKE] = math.sqrt(max(hh - 2.0 * hs_dot / cnt + mm, 0.0) / mm)
                    ok[_NSPIKE] = True
            lat += h
            self._lat_sq[0] = sq + 2.0 * hs_dot + hh
            self._norm_cnt[0] = cnt + 1
        held, held_ok = self._held[0].tolist(), self._held_ok[0].tolist()
        vals[_DRIFT], ok[_DRIFT] = held[0], held_ok[0]
        vals[_OOD], vals[_ENT], vals[_PMAX] = held[1], held[2], held[3]
        ok[_OOD], ok[_ENT], ok[_PMAX] = held_ok[1], held_ok[2], held_ok[3]
        self._t[0] = t + 1
        good = [o and math.isfinite(v) for o, v in zip(ok, vals, strict=True)]
        values = np.array([[v if g else 0.0 for v, g in zip(vals, good, strict=True)]], dtype=np.float32)
        return SignalStep(values=values, valid=np.array([good], dtype=bool))

    def _on_new_chunk(self, rows: np.ndarray, x: dict[str, np.ndarray | None], t: np.ndarray) -> None:
        """Shift the chunk history of the rows that started a chunk and recompute the held values."""
        chunk, emb, off, cid = x["chunk"], x["obs_embedding"], x["chunk_offset"], x["chunk_id"]
        assert chunk is not None and emb is not None and off is not None and cid is not None
        self._prev_chunk[rows] = self._cur_chunk[rows]
        self._prev_start[rows] = self._cur_start[rows]
        self._cur_chunk[rows] = chunk[rows]
        self._cur_start[rows] = t[rows] - off[rows]
        self._cur_id[rows] = cid[rows]
        self._nchunks[rows] += 1
        e_new = emb[rows].astype(np.float64)
        e_old = self._cur_emb[rows]
        # The first chunk has no previous embedding (zeros): its cosine is NaN and flagged invalid.
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.einsum("bd,bd->b", e_new, e_old) / (_norm(e_new) * _norm(e_old))
        self._held[rows, 0] = 1.0 - cos
        self._held_ok[rows, 0] = (self._nchunks[rows] >= 2) & np.isfinite(cos)
        self._cur_emb[rows] = e_new
        if self.ood.fitted:
            d = self.ood.distance(e_new) / np.sqrt(e_new.shape[1])
            self._held[rows, 1] = d
            self._held_ok[rows, 1] = np.isfinite(d)
        else:
            self._held_ok[rows, 1] = False
        samples = x["samples"]
        radius = self.cluster_radius
        self._held_ok[rows, 2:] = False
        if samples is not None and samples.shape[1] >= 2:
            if radius is None:
                if self.config.require_fitted:
                    raise NotFittedError(
                        "sample_entropy needs a cluster radius: fit(...) with samples, load fitted statistics, "
                        "or set SignalConfig.cluster_radius"
                    )
                return
            s = samples[rows].astype(np.float64)
            s = s.reshape(s.shape[0], s.shape[1], -1)
            finite = np.isfinite(s).all(axis=(1, 2))
            p = cluster_probabilities(np.where(finite[:, None, None], s, 0.0), radius)
            self._held[rows, 2] = entropy(p)
            self._held[rows, 3] = p.max(axis=1)
            self._held_ok[rows, 2] = finite
            self._held_ok[rows, 3] = finite

    def _on_new_chunk_one(self, x: dict[str, np.ndarray | None], t: int) -> None:
        """:meth:`_on_new_chunk` for B = 1 on Python floats (same results; tests compare the paths)."""
        chunk, emb, off, cid = x["chunk"], x["obs_embedding"], x["chunk_offset"], x["chunk_id"]
        assert chunk is not None and emb is not None and off is not None and cid is not None
        self._prev_chunk[0] = self._cur_chunk[0]
        self._prev_start[0] = self._cur_start[0]
        self._cur_chunk[0] = chunk[0]
        self._cur_start[0] = t - int(off[0])
        self._cur_id[0] = int(cid[0])
        nchunks = int(self._nchunks[0]) + 1
        self._nchunks[0] = nchunks
        e_new = emb[0].astype(np.float64)
        e_old = self._cur_emb[0]
        den = math.sqrt(float(e_new @ e_new)) * math.sqrt(float(e_old @ e_old))
        cos = float(e_new @ e_old) / den if den > 0 else math.nan
        held = [1.0 - cos, 0.0, 0.0, 0.0]
        held_ok = [nchunks >= 2 and math.isfinite(cos), False, False, False]
        self._cur_emb[0] = e_new
        if self.ood.fitted:
            with np.errstate(invalid="ignore", over="ignore"):
                d = float(self.ood.distance(e_new[None])[0]) / math.sqrt(e_new.shape[0])
            held[1], held_ok[1] = d, math.isfinite(d)
        samples = x["samples"]
        if samples is not None and samples.shape[1] >= 2:
            radius = self.cluster_radius
            if radius is None:
                if self.config.require_fitted:
                    raise NotFittedError(
                        "sample_entropy needs a cluster radius: fit(...) with samples, load fitted statistics, "
                        "or set SignalConfig.cluster_radius"
                    )
            else:
                s = samples[0].astype(np.float64).reshape(samples.shape[1], -1)
                if np.isfinite(s).all():
                    probs = _cluster_shares(pairwise_rms(s[None])[0].tolist(), radius)
                    held[2] = 0.0 - math.fsum(p * math.log(p) for p in probs)
                    held[3] = max(probs)
                    held_ok[2] = held_ok[3] = True
        self._held[0] = held
        self._held_ok[0] = held_ok


def _cluster_shares(dist: list[list[float]], radius: float) -> list[float]:
    """Shares of the single-linkage clusters (links at distance <= radius) of K samples, Python floats."""
    k = len(dist)
    parent = list(range(k))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(k):
        row = dist[i]
        for j in range(i + 1, k):
            if row[j] <= radius:
                ri, rj = root(i), root(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    counts: dict[int, int] = {}
    for i in range(k):
        r = root(i)
        counts[r] = counts.get(r, 0) + 1
    return [c / k for c in counts.values()]


def _stats_base(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
