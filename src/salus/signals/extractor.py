"""Streaming extractor of the 12 signals over B parallel episodes.

One ``step`` per control step takes that step's :class:`~salus.policies.base.StepInternals` and the
robot state (B, 22) the policy acted on, and returns the signals (B, 12) float32 plus a validity
mask (B, 12). Values are always finite: an invalid entry (missing history, missing input, NaN
input) is 0 and flagged False in ``valid``. Per-environment history lives in preallocated arrays,
so a step is a fixed number of vectorised numpy operations whatever B is: the extractor prepares
:class:`~salus.signals.definitions.StepInputs` once, then calls each signal's function (one per
signal, in ``salus.signals.definitions``); there is no separate single-environment path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from salus.errors import CheckpointError, InvalidInputError, NotFittedError
from salus.signals.definitions import (
    SIGNAL_FUNCTIONS,
    SIGNAL_NAMES,
    ChunkInputs,
    SignalConfig,
    StepInputs,
)
from salus.signals.stats import GaussianStats, as_2d_finite, pairwise_rms
from salus.sim.spec import STATE_DIM, STATE_SLICES

if TYPE_CHECKING:
    from salus.policies.base import StepInternals

__all__ = ["SignalExtractor", "SignalStep", "validate_step_inputs", "STATS_FORMAT_VERSION"]

STATS_FORMAT_VERSION = 1

# The state columns constraint_margin reads: the 7 joint positions, then the 3 end-effector coordinates.
_NO_CHUNK = np.iinfo(np.int64).min  # chunk id "none yet": differs from every id a policy reports
_LIMIT_COLS = np.r_[
    np.arange(STATE_DIM)[STATE_SLICES["joint_pos"]], np.arange(STATE_DIM)[STATE_SLICES["ee_pos"]]
]


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


def validate_step_inputs(
    internals: Any, robot_state: Any, batch_size: int, state_dim: int = STATE_DIM
) -> dict[str, np.ndarray | None]:
    """Check shapes of one step's inputs and return them as numpy arrays (no copies where possible).

    Raises InvalidInputError naming the field, its shape and the expected one. ``state_dim``: the
    robot state's width (the Panda layout's 22 unless the extractor has a robot description).
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
    offsets = offset.tolist()  # B Python ints: min / max without two numpy reductions
    if offsets and (min(offsets) < 0 or max(offsets) >= chunk.shape[1]):
        raise InvalidInputError(
            f"StepInternals.chunk_offset must lie in [0, C={chunk.shape[1]}), got {offsets}"
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
    if state.shape != (b, state_dim):
        layout = (
            "layout salus.sim.spec.STATE_SLICES"
            if state_dim == STATE_DIM
            else "the robot description's state"
        )
        raise InvalidInputError(
            f"robot_state must have shape (B={b}, {state_dim}) ({layout}), got {state.shape}"
        )
    out["robot_state"] = state
    return out


class SignalExtractor:
    """Computes the 12 signals of :data:`~salus.signals.SIGNAL_NAMES` step by step for B episodes.

    Usage: ``ex = SignalExtractor(B); ex.fit(success_embeddings, samples)`` (or
    ``load_state_dict``), then per episode ``ex.reset(i)`` and per step
    ``ex.step(policy.last_internals, obs["state"]) -> SignalStep``.
    """

    def __init__(self, batch_size: int, config: SignalConfig | None = None, *, robot: Any = None) -> None:
        if not isinstance(batch_size, int | np.integer) or int(batch_size) < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.config = config if config is not None else SignalConfig()
        self.set_robot(robot)
        self.ood = GaussianStats(shrinkage=self.config.ood_shrinkage)
        self.fitted_cluster_radius: float | None = None
        self.meta: dict[str, Any] = {}  # JSON-able provenance of the fit (policy, weights hash, episodes)
        self._dims: tuple[int, int, int, int] | None = None  # (C, A, E, H) fixed at the first step
        b, w = self.batch_size, self.config.consistency_window
        self._t = np.zeros(b, dtype=np.int64)
        self._nhist = np.zeros(b, dtype=np.int64)
        self._hist = np.zeros((b, w, 1))  # ring buffer of the last W actions; slot _pos is written next
        self._hist_norms = np.zeros((b, w))  # ||a[:3]|| of the actions in the ring
        self._pos = 0
        self._prev_ee = np.zeros((b, 3))
        self._lat_sum = np.zeros((b, 1))  # per episode: sum S of hidden_step over the finite steps
        self._lat_sq = np.zeros(b)  # ||S||^2, updated incrementally
        self._norm_cnt = np.zeros(b, dtype=np.int64)
        self._nchunks = np.zeros(b, dtype=np.int64)
        self._cur_id = np.full(b, _NO_CHUNK, dtype=np.int64)  # _NO_CHUNK after a reset: a new chunk is due
        self._cur_start = np.zeros(b, dtype=np.int64)
        self._prev_start = np.zeros(b, dtype=np.int64)
        self._cur_chunk = np.zeros((b, 1, 1))
        self._prev_chunk = np.zeros((b, 1, 1))
        self._cur_emb = np.zeros((b, 1))
        # Values of the per-chunk signals, held for the steps served from one chunk (other columns: 0).
        self._held = np.zeros((b, len(SIGNAL_FUNCTIONS)))
        self._held_ok = np.zeros((b, len(SIGNAL_FUNCTIONS)), dtype=bool)
        self._step_fns = [f.step for f in SIGNAL_FUNCTIONS]
        self._chunk_fns = [(j, f.chunk) for j, f in enumerate(SIGNAL_FUNCTIONS) if f.chunk is not None]
        self._inputs = StepInputs()
        self._inputs.rows = np.arange(b)
        self._inputs.always = np.ones(b, dtype=bool)
        self._inputs.config = self.config

    def set_robot(self, robot: Any) -> None:
        """The robot-state layout ``step`` reads: the Panda's (``robot`` None or a description of
        the Panda layout: ``robot_state`` (B, 22)), else the description's (``robot_state`` (B,
        state_dim)): constraint_margin from its limited entries (joint positions with limits, the
        end effector with a workspace), execution_mismatch from the end effector and its action
        scale, else from joint positions and commanded targets; without them, invalid."""
        from salus.signals.definitions import _LIMIT_HI, _LIMIT_LO, _LIMIT_RANGE
        from salus.sim.spec import POSITION_ACTION_SCALE_M

        if robot is not None and getattr(robot, "reads_panda_layout", False):
            robot = None
        self.robot = robot
        if robot is None:
            self._state_dim = STATE_DIM
            self._limits = (_LIMIT_LO, _LIMIT_HI, _LIMIT_RANGE)
            self._ee_scale = float(POSITION_ACTION_SCALE_M)
            return
        self._state_dim = int(robot.state_dim)
        cols: list[int] = []
        lo: list[float] = []
        hi: list[float] = []
        if robot.joint_lower:
            cols += list(robot.joint_pos)
            lo += list(robot.joint_lower)
            hi += list(robot.joint_upper)
        if robot.workspace_low:
            cols += list(robot.ee_pos)
            lo += list(robot.workspace_low)
            hi += list(robot.workspace_high)
        self._robot_limit_cols = np.asarray(cols, dtype=np.int64)
        lo_a, hi_a = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        self._limits = (lo_a, hi_a, hi_a - lo_a)
        self._robot_ee: np.ndarray | None = (
            np.asarray(robot.ee_pos, dtype=np.int64) if robot.ee_action_scale else None
        )
        self._ee_scale = float(robot.ee_action_scale or 1.0)
        if self._robot_ee is None and robot.joint_target:
            self._robot_joints: np.ndarray | None = np.asarray(robot.joint_pos, dtype=np.int64)
            self._robot_targets = np.asarray(robot.joint_target, dtype=np.int64)
            span = np.asarray(robot.joint_upper, np.float64) - np.asarray(robot.joint_lower, np.float64)
            self._joint_span = span if robot.joint_lower else np.ones(len(robot.joint_pos))
        else:
            self._robot_joints = None

    def _robot_inputs(self, state: np.ndarray, s: StepInputs) -> None:
        """``limit_state``, ``ee`` and ``joint_error`` of a described (non-Panda-layout) robot."""
        b = state.shape[0]
        st = state.astype(np.float64)
        nan = np.full((b, 1), np.nan)
        s.limit_state = st.take(self._robot_limit_cols, axis=1) if self._robot_limit_cols.size else nan
        if not self._robot_limit_cols.size:
            s.limit_lo, s.limit_hi, s.limit_range = np.zeros(1), np.ones(1), np.ones(1)
        s.ee = st.take(self._robot_ee, axis=1) if self._robot_ee is not None else np.full((b, 3), np.nan)
        s.joint_error = None
        if self._robot_joints is not None:
            err = (
                st.take(self._robot_joints, axis=1) - st.take(self._robot_targets, axis=1)
            ) / self._joint_span
            s.joint_error = np.sqrt(np.vecdot(err, err))

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
        self._hist_norms = np.zeros((self.batch_size, self.config.consistency_window))
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
            self._hist_norms,
            self._lat_sum,
            self._lat_sq,
            self._held,
            self._cur_chunk,
            self._prev_chunk,
            self._cur_emb,
        ):
            farr[sel] = 0.0
        self._held_ok[sel] = False
        self._cur_id[sel] = _NO_CHUNK

    def _allocate(self, c: int, a: int, e: int, h: int) -> None:
        b, w = self.batch_size, self.config.consistency_window
        self._dims = (c, a, e, h)
        self._prev_slots = [
            np.array([(p - 1) % w, (p - 2) % w]) for p in range(w)
        ]  # ring slots of a_{t-1}, a_{t-2}
        self._lat_sum = np.zeros((b, h))
        self._hist = np.zeros((b, w, a))
        self._hist_norms = np.zeros((b, w))
        self._pos = 0
        self._cur_chunk = np.zeros((b, c, a))
        self._prev_chunk = np.zeros((b, c, a))
        self._cur_emb = np.zeros((b, e))
        self.reset()

    def step(self, internals: StepInternals, robot_state: np.ndarray) -> SignalStep:
        """Signals of one control step of all B environments.

        ``internals``: :class:`~salus.policies.base.StepInternals` of this step (batch B).
        ``robot_state`` (B, 22), or (B, state_dim) with a robot description
        (``SignalExtractor(B, robot=...)``): the state the policy acted on at this step.
        """
        if self.config.require_fitted and not self.ood.fitted:
            raise NotFittedError(
                "SignalExtractor needs fitted OOD statistics: call fit(...) on successful rollouts, "
                "load_state_dict(...), SignalExtractor.load(path), or `salus signals fit`"
            )
        x = validate_step_inputs(internals, robot_state, self.batch_size, self._state_dim)
        action, chunk, emb, hid = x["action"], x["chunk"], x["obs_embedding"], x["hidden_step"]
        assert action is not None and chunk is not None and emb is not None and hid is not None
        dims = (chunk.shape[1], action.shape[1], emb.shape[1], hid.shape[1])
        if self._dims is None:
            self._allocate(*dims)
        elif self._dims != dims:
            raise InvalidInputError(
                f"chunk length, action, embedding and hidden widths changed from {self._dims} to {dims} "
                "(C, A, E, H) without re-creating the extractor"
            )
        if self.ood.fitted and self.ood.dim != dims[2]:
            raise InvalidInputError(
                f"obs_embedding width {dims[2]} does not match the fitted statistics' width {self.ood.dim}"
            )
        state, cid, off, new = x["robot_state"], x["chunk_id"], x["chunk_offset"], x["new_chunk"]
        assert state is not None and cid is not None and off is not None and new is not None
        t, w, pos = self._t, self._hist.shape[1], self._pos
        s = self._inputs
        s.config = self.config
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            changed = np.logical_or(new, cid != self._cur_id)
            if np.logical_or.reduce(changed):  # changed.any() without the method's Python wrapper
                self._on_new_chunk(np.flatnonzero(changed), x)
            s.action = a = action.astype(np.float64)
            prev = self._hist.take(self._prev_slots[pos], axis=1)  # a copy: the ring is written next
            s.prev1, s.prev2 = prev[:, 0], prev[:, 1]
            s.n_hist = self._nhist
            self._hist[:, pos] = a
            a3 = a[:, :3]
            s.step_norm = self._hist_norms[:, pos] = np.sqrt(np.vecdot(a3, a3))
            s.window_norms = self._hist_norms
            self._pos = (pos + 1) % w
            s.window, s.n_window = self._hist, np.minimum(self._nhist + 1, w)
            s.chunk, s.chunk_offset, s.t = chunk, off, t
            s.prev_chunk, s.prev_start, s.n_chunks = self._prev_chunk, self._prev_start, self._nchunks
            s.limit_lo, s.limit_hi, s.limit_range = self._limits
            s.ee_scale, s.joint_error = self._ee_scale, None
            if self.robot is None:
                # the columns of constraint_margin: 7 joint positions, then the 3 end-effector coordinates
                s.limit_state = sx = state.take(_LIMIT_COLS, axis=1).astype(np.float64)
                s.ee = sx[:, 7:]
            else:
                self._robot_inputs(state, s)
            s.prev_ee = self._prev_ee
            h = hid.astype(np.float64)
            s.hidden = h
            s.hidden_sq = hh = np.vecdot(h, h)
            s.hidden_dot_sum = hs_dot = np.vecdot(h, self._lat_sum)
            s.hidden_sum_sq, s.n_hidden = self._lat_sq, self._norm_cnt
            s.token_probs = x["action_token_probs"]
            columns = [fn(s) if fn is not None else None for fn in self._step_fns]
            held, held_ok = self._held.T, self._held_ok.T
            vals = np.array([held[j] if r is None else r[0] for j, r in enumerate(columns)])  # (12, B)
            ok = np.array([held_ok[j] if r is None else r[1] for j, r in enumerate(columns)])
            # state for the next step
            self._nhist = s.n_window
            self._prev_ee = s.ee
            good_h = np.isfinite(hh)  # any NaN / inf entry makes ||h||^2 non-finite
            if np.logical_and.reduce(good_h):  # the common case, fewer calls: the same numbers
                self._lat_sum += h
                self._lat_sq = self._lat_sq + (2.0 * hs_dot + hh)
                self._norm_cnt = self._norm_cnt + 1
            else:
                np.add(self._lat_sum, h, out=self._lat_sum, where=good_h[:, None])
                self._lat_sq = self._lat_sq + np.where(good_h, 2.0 * hs_dot + hh, 0.0)
                self._norm_cnt = self._norm_cnt + good_h
            self._t = t + 1
            ok &= np.isfinite(vals)
            values = np.where(ok, vals, 0.0).T.astype(np.float32, order="C")
        return SignalStep(values=values, valid=np.ascontiguousarray(ok.T))

    def _on_new_chunk(self, rows: np.ndarray, x: dict[str, np.ndarray | None]) -> None:
        """Shift the chunk history of the rows that started a chunk and recompute the held values."""
        chunk, emb, off, cid = x["chunk"], x["obs_embedding"], x["chunk_offset"], x["chunk_id"]
        assert chunk is not None and emb is not None and off is not None and cid is not None
        # every row (always at B = 1, and for lockstep batches): basic slicing, no gathers
        sel: Any = slice(None) if rows.size == self.batch_size else rows
        self._prev_chunk[sel] = self._cur_chunk[sel]
        self._prev_start[sel] = self._cur_start[sel]
        self._cur_chunk[sel] = chunk[sel]
        self._cur_start[sel] = self._t[sel] - off[sel]
        self._cur_id[sel] = cid[sel]
        self._nchunks[sel] += 1
        e_new = emb[sel].astype(np.float64)
        samples = x["samples"]
        inputs = ChunkInputs(
            embedding=e_new,
            prev_embedding=self._cur_emb[sel],  # read by the functions below, overwritten after them
            n_chunks=self._nchunks[sel],
            samples=None if samples is None else samples[sel],
            ood=self.ood,
            cluster_radius=self.cluster_radius,
            config=self.config,
        )
        for j, fn in self._chunk_fns:
            r = fn(inputs)
            if r is None:
                self._held_ok[sel, j] = False
            else:
                self._held[sel, j], self._held_ok[sel, j] = r
        self._cur_emb[sel] = e_new


def _stats_base(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
