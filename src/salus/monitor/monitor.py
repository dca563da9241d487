"""The runtime monitor: one call per control step in the user's own loop.

``Monitor.load(MODEL_DIR, policy=adapter)`` loads a trained predictor checkpoint (weights, feature
normalisation, the signal extractor's fitted statistics, horizons and calibrated conformal bands)
and wraps any :class:`~salus.policies.base.PolicyAdapter`::

    monitor = Monitor.load("runs/model", policy=load_policy("builtin"))
    monitor.reset()
    action, risk = monitor.step(observation)          # the monitor calls the policy
    risk = monitor.observe(observation, action)       # or: you called the policy yourself

Each step runs the extractor (12 signals from the policy's internals and the robot state), the
predictor's streaming step (per-environment state) and the band test: the per-step score's running
maximum against the band's upper edge at this step of the episode (the protocol ``salus evaluate``
uses). The monitor never raises into the control loop for a run-time fault: any internal error
(an unreadable observation, NaN, missing or stale internals, a failing policy call, an action the
policy returns that cannot be executed) puts the affected environments into a fail-safe state,
sticky until their ``reset``, that reports the reason; ``MonitorConfig.failsafe_alarm`` chooses
whether fail-safe also counts as an alarm. Inputs of the wrong shape (a wiring mistake that would
repeat at every step) raise ``InvalidInputError`` naming the expected and received shapes.
"""

from __future__ import annotations

import math
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from salus.data.format import as_recorded
from salus.errors import CheckpointError, InvalidInputError
from salus.monitor.config import ATTRIBUTION_MODES, MonitorConfig, hold_action
from salus.monitor.offline import offline_risk
from salus.monitor.risk import Risk, SignalContribution
from salus.predictor.checkpoint import embedding_features, signal_features
from salus.predictor.discovery import choose_checkpoint
from salus.predictor.streaming import StreamingScorer

if TYPE_CHECKING:
    from salus.policies.base import PolicyAdapter
    from salus.predictor.checkpoint import TrainedPredictor

__all__ = [
    "ATTRIBUTION_MODES",
    "MonitorConfig",
    "SignalContribution",
    "Risk",
    "Monitor",
    "hold_action",
    "offline_risk",
    "choose_checkpoint",
]


class _ShapeError(InvalidInputError):
    """An input of the wrong shape (a wiring mistake, not a run-time fault): raised to the caller
    with the expected and received shapes, never turned into fail-safe."""


def _numbers(value: Any) -> np.ndarray | None:
    """``value`` as a float32 array, or None when it is None or not numbers."""
    if value is None or isinstance(value, str | bytes):
        return None
    try:
        arr = np.asarray(value)
    except Exception:
        return None
    if arr.dtype.kind not in "biuf":
        return None
    return arr.astype(np.float32, copy=False)


def _as_numpy_state(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The extractor's ``state_dict`` from checkpoint JSON (tensors stored as nested lists)."""
    state = dict(stats)
    tensors = state.get("tensors")
    if isinstance(tensors, Mapping):
        state["tensors"] = {k: np.asarray(v, dtype=np.float64) for k, v in tensors.items()}
    return state


class Monitor:
    """Failure monitor for B parallel environments (see the module docstring).

    Construct with :meth:`load`. ``policy`` may be None when the caller passes ``internals`` to
    :meth:`observe` itself.
    """

    def __init__(
        self,
        predictor: TrainedPredictor,
        *,
        policy: PolicyAdapter | None = None,
        config: MonitorConfig | None = None,
    ) -> None:
        from salus.signals import SIGNAL_NAMES, SignalExtractor

        self.config = config or MonitorConfig()
        self.policy = policy
        self.predictor = predictor
        #: the streaming scorer: network state, elapsed steps, running max and band per environment
        self.scorer = StreamingScorer(predictor, self.config.alpha)
        self.model = self.scorer.model
        meta = predictor.meta
        self.input_kind: str = predictor.input_kind
        self.signal_names: tuple[str, ...] = tuple(meta.get("signal_names") or SIGNAL_NAMES)
        norm = meta["normalization"]
        self._mean = np.asarray(norm["mean"], dtype=np.float32)
        self._std = np.asarray(norm["std"], dtype=np.float32)
        from salus.predictor.checkpoint import embedding_source

        self._embedding_source = embedding_source(norm) if self.input_kind == "embedding" else ""
        from salus.data.robot import panda_robot

        #: the robot description of the training data (salus.data.RobotSpec): the state layout read
        self.robot: Any = getattr(predictor, "robot", None) or panda_robot()
        self._state_dim: int = int(self.robot.state_dim)
        #: robot-state signals this robot's description cannot support, with the reason
        self.invalid_signals: dict[str, str] = dict(self.robot.invalid_signals())
        self.horizons = tuple(int(h) for h in meta["horizons"]) or (0,)
        hz = float(meta["control_hz"])
        self.horizons_s = tuple(h / hz for h in self.horizons) if meta["horizons"] else (math.nan,)
        if meta.get("prob_columns"):  # outcome-hazard models: "by the episode's end", then the horizons
            self.horizons_s = (math.inf, *self.horizons_s)
        self.score_index = self.scorer.score_index
        self.failure_types: tuple[str, ...] = tuple(meta.get("failure_types", ()))
        band = self.scorer.band
        self.alpha = self.scorer.alpha
        self.band = band
        #: per calibrated alpha: can its band fire, how many calibration successes it had and needs
        self.band_status: list[dict[str, Any]] = list(predictor.band_status())
        if not np.isfinite(self.scorer.upper).any():
            firing = [f"{s['alpha']:g}" for s in self.band_status if s["can_fire"]]
            this = next((s for s in self.band_status if abs(s["alpha"] - self.alpha) < 1e-12), None)
            detail = this["text"] if this else f"alpha {self.alpha:g}: cannot fire"
            warnings.warn(
                f"the conformal band at alpha {self.alpha:g} never alarms ({detail}); calibrate on more "
                "successes or use an alpha whose band can fire"
                + (
                    f" (calibrated: {', '.join(firing)})"
                    if firing
                    else " (none of the calibrated alphas can)"
                ),
                UserWarning,
                stacklevel=3,
            )
        self._extractor_state = _as_numpy_state(meta["extractor_statistics"])
        self._extractor_cls = SignalExtractor
        self.features: Any = getattr(predictor, "feature_space", None)  # input kind "features"
        if self.input_kind == "features" and (self.features is None or not self.features.deployable):
            raise CheckpointError(
                f"{predictor.name} has no deployable feature space; it cannot monitor a policy"
            )
        self._baselines: Any = None
        if self.input_kind in ("signals", "features"):
            probe = SignalExtractor(1)
            try:
                probe.load_state_dict(self._extractor_state)
            except Exception as exc:
                raise CheckpointError(
                    f"the checkpoint's signal-extractor statistics do not load: {exc}"
                ) from exc
        self._batch_size = 0
        self._extractor: Any = None
        self._failsafe = np.zeros(0, dtype=bool)
        self._reason: list[str | None] = []
        self._last_good_state = np.zeros((0, self._state_dim), dtype=np.float32)
        self._last_internals_obj: Any = None
        self._last_action: np.ndarray | None = None
        self._pending_failsafe: str | None = None  # a fault before the batch size was known
        self._pending_cleared: set[int] = set()  # environments reset since that fault
        self._last_layout: tuple[bool, int] | None = None  # (single, B) of the last readable observation
        self.last_error: str | None = None  # traceback of the last internal error, for debugging

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        policy: Any = None,
        *,
        model: str | None = None,
        config: MonitorConfig | None = None,
        **overrides: Any,
    ) -> Monitor:
        """Load a predictor checkpoint directory (``salus train --out MODEL_DIR``).

        A directory of several checkpoints (``salus train --model all``) needs ``model`` (a
        checkpoint's folder name), else the model chosen on validation (``selection.json``, written by
        ``salus train``; see ``salus.predictor.discovery.choose_checkpoint``).

        ``overrides`` are ``MonitorConfig`` fields (e.g. ``alpha=0.05``). Load-time problems (missing
        files, statistics that do not load, an uncalibrated alpha) raise ``salus.errors`` errors:
        they happen before the control loop starts.
        """
        from salus.predictor.checkpoint import TrainedPredictor

        if overrides:
            base = config or MonitorConfig()
            config = replace(base, **overrides)
        predictor = TrainedPredictor.load(choose_checkpoint(model_dir, model))
        return cls(predictor, policy=policy, config=config)

    # ------------------------------------------------------------------ episode control
    def _allocate(self, batch_size: int) -> None:
        b = batch_size
        self._batch_size = b
        if self.input_kind in ("signals", "features"):
            self._extractor = self._extractor_cls(b, robot=self.robot.extractor_robot())
            self._extractor.load_state_dict(self._extractor_state)
        if self.input_kind == "baselines" or (
            self.input_kind == "features" and "baselines" in self.features.groups
        ):
            from salus.signals import ONLINE_BASELINE_NAMES, OnlineBaselines

            # a baselines model reads the dataset's baseline vector, in the dataset's order
            self._baselines = OnlineBaselines(
                b, names=tuple(self.predictor.meta.get("baseline_names") or ONLINE_BASELINE_NAMES)
            )
        self.scorer.allocate(b)
        self._failsafe = np.zeros(b, dtype=bool)
        self._reason = [None] * b
        if self._pending_failsafe is not None:  # sticky: every environment stays fail-safe until reset
            self._failsafe[:] = True
            self._reason = [self._pending_failsafe] * b
            for i in self._pending_cleared & set(range(b)):
                self._failsafe[i], self._reason[i] = False, None
            self._pending_failsafe, self._pending_cleared = None, set()
        self._last_good_state = np.zeros((b, self._state_dim), dtype=np.float32)
        self._last_action = None

    def reset(self, env_index: int | None = None, *, reset_policy: bool = True) -> None:
        """Start a new episode for every environment, or for ``env_index``; clears fail-safe.

        Also resets the attached policy unless ``reset_policy`` is False.
        """
        if reset_policy and self.policy is not None:
            self.policy.reset(env_index) if env_index is not None else self.policy.reset()
        if env_index is None:
            self._batch_size = 0  # re-allocated (for any B) at the next step
            self._last_internals_obj = None
            self._pending_failsafe, self._pending_cleared = None, set()
            return
        i = int(env_index)
        if not 0 <= i < max(self._batch_size, 1):
            raise InvalidInputError(f"env_index must be in [0, {max(self._batch_size, 1)}), got {env_index}")
        if self._batch_size == 0:
            if self._pending_failsafe is not None:
                self._pending_cleared.add(i)
            return
        if self._extractor is not None:
            self._extractor.reset(i)
        if self._baselines is not None:
            self._baselines.reset(i)
        self.scorer.reset_env(i)
        self._failsafe[i] = False
        self._reason[i] = None

    # ------------------------------------------------------------------ control step
    def step(self, observation: Mapping[str, Any]) -> tuple[np.ndarray, Risk]:
        """Run the policy on ``observation`` and monitor the step: ``(action, risk)``.

        Environments whose observation is unusable (NaN or inf in ``state``) are fail-safe; the policy
        sees their last good state instead (so the other environments still get the policy's action)
        and they get the safe action. If the policy call itself raises, or returns an action that
        cannot be executed (None, not numbers, not (A,) / (B, A)), every environment gets the safe
        action and is fail-safe; an environment whose action holds NaN or inf gets it alone. The
        returned action is always finite float32. The safe action (``safe_action="hold"``) keeps the
        arm still with the gripper command unchanged; ``safe_action="raise"`` re-raises the policy's
        own exception. An observation of the wrong shape raises ``InvalidInputError`` before the
        policy runs.
        """
        if self.policy is None:
            raise InvalidInputError("Monitor.step needs a policy: Monitor.load(model_dir, policy=adapter)")
        read: tuple[np.ndarray, bool] | None = None
        try:
            read = self._read_state(observation)  # wrong shapes raise here, before the policy runs
        except _ShapeError:
            raise
        except InvalidInputError:
            pass  # unreadable (None, no state, not numbers): the step below ends fail-safe
        layout = _layout(observation, self.config.robot_state)
        if layout is not None:
            self._last_layout = layout
        if read is not None and _all_finite(read[0]):
            obs, pre_bad = observation, None  # nothing to replace
        else:
            obs, pre_bad = self._sanitize(observation)
        try:
            returned = self.policy.act(obs)
        except Exception as exc:
            if self.config.safe_action == "raise":
                raise
            self.last_error = traceback.format_exc()
            return self._hold_all(observation, layout, f"policy raised {type(exc).__name__}: {exc}")
        single, b = layout or self._last_layout or (False, 1)
        action, problem = self._policy_action(returned, single, b)
        if action is None:  # None, not numbers or the wrong shape: nothing of it can be executed
            return self._hold_all(observation, layout, problem or "the policy returned an unusable action")
        act2 = action.reshape(b, -1)
        reasons: list[str | None] = list(pre_bad) if pre_bad is not None and len(pre_bad) == b else [None] * b
        if not _all_finite(act2):
            for i in np.flatnonzero(~np.isfinite(act2).all(axis=1)).tolist():
                reasons[i] = reasons[i] or "the policy returned a NaN or inf action"
        if any(r is not None for r in reasons):
            rows = np.array([r is not None for r in reasons])
            prev = (
                self._last_action
                if self._last_action is not None and self._last_action.shape == act2.shape
                else None
            )
            act2[rows] = hold_action(None if prev is None else prev[rows], act2.shape[1])
            action = act2.reshape(action.shape)
        risk = self._observe_safe(
            obs,
            action,
            None,
            reasons if any(r is not None for r in reasons) else None,
            read=read if obs is observation else None,  # already read and checked above
        )
        return action, risk

    def _robot_hint(self) -> str:
        return (
            f" (the checkpoint was trained on robot {self.robot.name!r}, whose state has "
            f"{self._state_dim} values)"
        )

    def _action_dim(self) -> int | None:
        dim = getattr(self.policy, "action_dim", None)
        return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None

    def _hold_all(
        self, observation: Any, layout: tuple[bool, int] | None, reason: str
    ) -> tuple[np.ndarray, Risk]:
        """Every environment fail-safe with ``reason`` and the safe action, in the layout of this
        observation, else of the last readable one."""
        single, b = layout or self._last_layout or (False, 1)
        b = max(self._batch_size, b) if not single else 1
        prev = self._last_action if self._last_action is not None and len(self._last_action) == b else None
        held = hold_action(prev, self._action_dim() or self.robot.action_dim or 4)
        if held.ndim == 1:
            held = np.repeat(held[None], b, axis=0)
        risk = self._failsafe_all(observation, reason)
        return (held[0] if single else held), risk

    def _policy_action(self, returned: Any, single: bool, b: int) -> tuple[np.ndarray | None, str | None]:
        """The policy's action as float32 ``(A,)`` (single) or ``(B, A)``, or ``(None, reason)``
        when it is missing, not numbers or of the wrong shape. Never raises."""
        dim = self._action_dim()
        want = ("A" if dim is None else dim,) if single else (b, "A" if dim is None else dim)
        if returned is None:
            return None, "the policy returned no action (None)"
        try:
            arr = np.asarray(returned)
            if arr.dtype.kind not in "iuf":
                return None, (
                    f"the policy returned an action that is not numbers ({type(returned).__name__}, "
                    f"dtype {arr.dtype})"
                )
            ok = arr.ndim == len(want) and (single or arr.shape[0] == b) and arr.shape[-1] >= 1
            if ok and dim is not None:
                ok = arr.shape[-1] == dim
            if not ok:
                shown = "(" + ", ".join(str(x) for x in want) + ("," if len(want) == 1 else "") + ")"
                return None, f"the policy returned an action of shape {arr.shape}, expected {shown}"
            return np.array(arr, dtype=np.float32, copy=True), None
        except Exception as exc:  # an array-like that does not convert
            return None, f"the policy returned an unusable action ({type(exc).__name__}: {exc})"

    def _sanitize(self, observation: Any) -> tuple[Any, list[str | None] | None]:
        """The observation with non-finite ``state`` rows replaced by the last good state, and the
        per-environment reasons (None when nothing was replaced or the observation is unreadable)."""
        try:
            task = observation.get("task")
            key = self.config.robot_state
            state = np.asarray(observation[key], dtype=np.float32)
            single = isinstance(task, str) or (task is None and state.ndim == 1)
            state2 = state[None] if single else state
            if state2.ndim != 2 or state2.shape[1] != self._state_dim:
                return observation, None
            ok: np.ndarray = np.asarray(np.isfinite(state2).all(axis=1))
            if ok.all():
                return observation, None
            b = state2.shape[0]
            last = (
                self._last_good_state
                if len(self._last_good_state) == b
                else np.zeros((b, self._state_dim), np.float32)
            )
            fixed = np.where(ok[:, None], state2, last).astype(np.float32)
            obs = dict(observation)
            obs[key] = fixed[0] if single else fixed
            reasons: list[str | None] = [
                None if k else f"observation {key!r} contains NaN or inf" for k in ok.tolist()
            ]
            return obs, reasons
        except Exception:
            return observation, None

    def observe(self, observation: Mapping[str, Any], action: Any = None, *, internals: Any = None) -> Risk:
        """Monitor one control step whose action was already computed.

        ``internals`` default to ``policy.last_internals`` (they must be this step's: call the
        policy's ``act`` once before each ``observe``). ``action`` (A,) or (B, A), when given, is
        what was executed (e.g. after a safety filter) and replaces the policy's action in the
        signals. Run-time faults become fail-safe; an observation or ``action`` of the wrong shape
        raises ``InvalidInputError`` naming the expected and received shapes.
        """
        return self._observe_safe(observation, action, internals, None, user_action=True)

    def _observe_safe(
        self,
        observation: Any,
        action: Any,
        internals: Any,
        pre_bad: list[str | None] | None,
        user_action: bool = False,
        read: tuple[np.ndarray, bool] | None = None,
    ) -> Risk:
        try:
            return self._observe(observation, action, internals, pre_bad, user_action, read)
        except _ShapeError:
            raise  # the caller's inputs have the wrong shape: say so, do not hide it in fail-safe
        except Exception as exc:  # the control loop must never see our errors
            self.last_error = traceback.format_exc()
            return self._failsafe_all(observation, _reason(exc))

    def _read_state(self, observation: Any) -> tuple[np.ndarray, bool]:
        """``(state (B, D) float32, single)`` of an observation's robot state (the key
        ``config.robot_state``; D: the checkpoint robot's state width). ``InvalidInputError`` when it
        is unreadable (not a dict, no state, not numbers: fail-safe), :class:`_ShapeError` when the
        state, ``task`` or an image has the wrong shape or the batch size changed (raised)."""
        if not isinstance(observation, Mapping):
            raise InvalidInputError(f"observation must be a dict, got {type(observation).__name__}")
        state_key = self.config.robot_state
        if observation.get(state_key) is None:
            raise InvalidInputError(
                f"observation has no {state_key!r} (the robot state, MonitorConfig.robot_state); keys: "
                f"{sorted(str(k) for k in observation)}"
            )
        raw = observation[state_key]
        arr = _numbers(raw)
        if arr is None:
            raise InvalidInputError(f"observation {state_key!r} is not numbers (got {type(raw).__name__})")
        task = observation.get("task")
        single = isinstance(task, str) or (task is None and arr.ndim == 1)
        if single:
            if arr.shape != (self._state_dim,):
                hint = " ('task' is one string: one environment)" if arr.ndim == 2 else ""
                raise _ShapeError(
                    f"observation {state_key!r} of one environment must have shape ({self._state_dim},), got "
                    f"{arr.shape}{hint}{self._robot_hint()}"
                )
            state = arr[None]
        else:
            if arr.ndim != 2 or arr.shape[1] != self._state_dim:
                raise _ShapeError(
                    f"observation {state_key!r} of a batch must have shape (B, {self._state_dim}), got {arr.shape}"
                    f"{self._robot_hint()}"
                )
            state = arr
            if isinstance(task, Sequence) and len(task) != len(state):
                raise _ShapeError(
                    f"observation 'task' lists {len(task)} environments but {state_key!r} has shape {arr.shape}"
                )
        b = state.shape[0]
        if self._batch_size and b != self._batch_size:
            want = (
                (self._state_dim,)
                if self._batch_size == 1 and single
                else (self._batch_size, self._state_dim)
            )
            raise _ShapeError(
                f"observation {state_key!r} has shape {arr.shape} but the monitor runs {self._batch_size} "
                f"environment(s): expected {want}; call monitor.reset() before changing the batch size"
            )
        for key, value in observation.items():
            if not str(key).startswith("image_") or value is None:
                continue
            shape = np.shape(value)
            want_img = "(H, W, 3)" if single else f"({b}, H, W, 3)"
            ok = len(shape) == (3 if single else 4) and shape[-1] == 3 and (single or shape[0] == b)
            if not ok:
                raise _ShapeError(f"observation {key!r} must have shape {want_img}, got {shape}")
        return state, single

    def _observe(
        self,
        observation: Mapping[str, Any],
        action: Any,
        internals: Any,
        pre_bad: list[str | None] | None,
        user_action: bool = False,
        read: tuple[np.ndarray, bool] | None = None,
    ) -> Risk:
        state, single = read if read is not None else self._read_state(observation)
        b = state.shape[0]
        user_act = None
        if action is not None and user_action:  # what the caller executed: its shape is checked
            user_act = _numbers(action)
            if user_act is None:
                raise InvalidInputError(f"the executed action is not numbers (got {type(action).__name__})")
            if user_act.ndim != (1 if single else 2) or (not single and user_act.shape[0] != b):
                raise _ShapeError(
                    f"the executed action must have shape {'(A,)' if single else f'({b}, A)'} like the "
                    f"observation, got {user_act.shape}"
                )
        if self._batch_size == 0:
            self._allocate(b)
        bad = self._check_observation(observation, state)
        if pre_bad is not None and len(pre_bad) == b:
            bad = [p or q for p, q in zip(pre_bad, bad, strict=True)]
        if internals is None:
            if self.policy is None:
                raise InvalidInputError("no internals: pass internals=... or attach a policy")
            internals = self.policy.last_internals
            if internals is None:
                raise InvalidInputError("the policy has no internals yet (call policy.act before observe)")
            if internals is self._last_internals_obj:
                raise InvalidInputError(
                    "the policy's internals did not change since the last step (call policy.act once per observe)"
                )
        policy_action = internals.action
        if (
            user_act is not None
            and int(policy_action.shape[0]) == b
            and (b, user_act.shape[-1]) != tuple(policy_action.shape)
        ):
            want = tuple(policy_action.shape[1:]) if single else tuple(policy_action.shape)
            raise _ShapeError(
                f"the executed action must have shape {want} like the policy's, got {user_act.shape}"
            )
        self._last_internals_obj = internals
        if int(policy_action.shape[0]) != b:
            raise InvalidInputError(f"internals have batch {policy_action.shape[0]}, observation has {b}")
        if action is not None:
            act = np.asarray(action if user_act is None else user_act, dtype=np.float32).reshape(b, -1)
            if act.shape != policy_action.shape:
                raise InvalidInputError(
                    f"action shape {act.shape} does not match the policy's {policy_action.shape}"
                )
            if not _all_finite(act):
                finite = np.isfinite(act)
                for i in np.flatnonzero(~finite.all(axis=1)).tolist():
                    bad[i] = bad[i] or "the executed action contains NaN or inf"
                act = np.where(finite, act, 0.0).astype(np.float32)
            if not _all(act == policy_action):
                internals = replace(internals, action=act)
            self._last_action = act
        else:
            self._last_action = np.array(policy_action, dtype=np.float32)
        if any(bad):  # bad holds reasons (non-empty strings) or None
            good_rows = np.array([r is None for r in bad])
            self._last_good_state[good_rows] = state[good_rows]
            safe_state = np.where(good_rows[:, None], state, self._last_good_state)
        else:
            self._last_good_state[:] = state
            safe_state = state

        if self.input_kind == "signals":
            sig = self._extractor.step(internals, self.robot.signal_state(safe_state))
            feats = signal_features(sig.values, sig.valid, self._mean, self._std)
            return self._predict(feats, sig.values, bad)
        if self.input_kind == "features":
            return self._predict(*self._feature_step(internals, safe_state), bad)
        if self.input_kind == "baselines":  # a training-free online baseline (STAC, ...)
            return self._predict(self._baseline_step(internals), None, bad)
        source = self._embedding_source  # obs_embedding, or SAFE's hidden_mean (a StepInternals field)
        emb = as_recorded(source, getattr(internals, source))
        if emb.ndim != 2 or emb.shape[1] != self._mean.shape[0]:
            raise InvalidInputError(
                f"{source} {emb.shape} does not match the predictor's width {self._mean.shape[0]}"
            )
        feats = embedding_features(emb, self._mean, self._std)
        return self._predict(feats, None, bad)

    def _feature_step(self, internals: Any, state: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Features (B, D) of a ``features`` predictor from this step's internals and robot state,
        computed exactly as collection records them; and the raw signals (for attribution)."""
        groups = self.features.groups
        inputs: dict[str, Any] = {"state": state}
        raw = None
        if "signals" in groups:
            sig = self._extractor.step(internals, self.robot.signal_state(state))
            inputs["signals"], inputs["valid"] = sig.values, sig.valid
            raw = sig.values
        if "baselines" in groups:
            inputs["baselines"] = self._baseline_step(internals)
        if "embedding" in groups or "knn" in groups:
            inputs["embedding"] = as_recorded("obs_embedding", internals.obs_embedding)
        if "hidden" in groups:
            hidden = getattr(internals, "hidden_step", None)
            if hidden is None:
                raise InvalidInputError(
                    f"{self.predictor.name} reads the policy's hidden state, which it does not report"
                )
            inputs["hidden"] = as_recorded("hidden", hidden)
        return self.features.step(inputs), raw

    def _baseline_step(self, internals: Any) -> np.ndarray:
        """This step's online baseline scores (B, nb) as the dataset records them (NaN where invalid)."""
        base = self._baselines.step(internals)
        return np.where(base.valid, base.values, np.nan).astype(np.float32)

    def observe_signals(self, values: Any, valid: Any = None) -> Risk:
        """Monitor one step from precomputed signals ``values`` (B, 12) or (12,) and ``valid`` (same
        shape, default: finite entries), e.g. signals logged by another process. Signals or flags
        of the wrong shape (or a batch size change without ``reset()``), and a model that reads more
        than the signals (``salus-risk``, SAFE: use :meth:`observe`), raise ``InvalidInputError``;
        anything else that goes wrong is fail-safe."""
        try:
            if self.input_kind != "signals":
                reads = {
                    "embedding": "the observation embedding",
                    "baselines": "the online baseline scores",
                }.get(self.input_kind, "features of every policy internal")
                raise _ShapeError(  # a wiring mistake that would repeat at every step: raised
                    f"{self.predictor.name} reads {reads}, not only signals: call monitor.observe(observation) "
                    "(or monitor.step) instead of observe_signals"
                )
            n = len(self.signal_names)
            v = _numbers(values)
            if v is None:
                raise InvalidInputError(f"signals are not numbers (got {type(values).__name__})")
            if v.ndim not in (1, 2) or v.shape[-1] != n:
                raise _ShapeError(f"signals must have shape ({n},) or (B, {n}), got {v.shape}")
            single = v.ndim == 1
            v = v[None] if single else v
            b = v.shape[0]
            if valid is None:
                ok = np.isfinite(v)
            else:
                flags = _numbers(valid)
                if flags is None:
                    raise InvalidInputError(
                        f"signal valid flags are not booleans (got {type(valid).__name__})"
                    )
                if flags.shape != (v.shape[1:] if single else v.shape):
                    want = (n,) if single else (b, n)
                    raise _ShapeError(f"valid must have the shape of the signals, {want}, got {flags.shape}")
                ok = flags.reshape(v.shape) != 0
            if self._batch_size and b != self._batch_size:
                want = (n,) if self._batch_size == 1 and single else (self._batch_size, n)
                raise _ShapeError(
                    f"signals have shape {np.shape(values)} but the monitor runs {self._batch_size} "
                    f"environment(s): expected {want}; call monitor.reset() before changing the batch size"
                )
            if self._batch_size == 0:
                self._allocate(b)
            finite = np.isfinite(v)
            broken = (ok & ~finite).any(axis=1)
            bad: list[str | None] = [None] * b
            if broken.any():
                for i in np.flatnonzero(broken).tolist():
                    bad[i] = "a signal flagged valid is NaN or inf"
            ok = ok & finite
            feats = signal_features(np.where(ok, v, 0.0), ok, self._mean, self._std)
            return self._predict(feats, np.where(ok, v, 0.0), bad)
        except _ShapeError:
            raise
        except Exception as exc:
            self.last_error = traceback.format_exc()
            return self._failsafe_all({"signals": values}, _reason(exc))

    def _predict(self, feats: np.ndarray, raw: np.ndarray | None, bad: list[str | None]) -> Risk:
        """Predictor step, band test and attribution for features (B, D) of this step.

        Written for few tiny arrays: the common case (no fail-safe) is a handful of numpy calls.
        """
        b = feats.shape[0]
        scorer = self.scorer
        probs = scorer.predict(feats)
        prev_state = scorer.prev_state
        if not _all_finite(probs):
            for k in np.flatnonzero(~np.isfinite(probs).all(axis=1)).tolist():
                bad[k] = bad[k] or "the predictor produced NaN (corrupt input or weights)"
        if any(bad):  # reasons (non-empty strings) or None
            for i, r in enumerate(bad):
                if r is not None and not self._failsafe[i]:
                    self._failsafe[i] = True
                    self._reason[i] = r
        fs = self._failsafe
        any_fs = _any(fs)
        res = scorer.accumulate(probs, fs if any_fs else None)  # fail-safe rows keep their running max
        col, prob, t, threshold, exceeded = res.col, res.prob, res.t, res.threshold, res.exceeded
        types = getattr(scorer.runner, "last_types", None)
        types = (
            None if types is None or types.shape[1] <= col else np.asarray(types[:, col], dtype=np.float64)
        )
        if any_fs:
            exceeded &= ~fs
            alarm = exceeded | (fs & self.config.failsafe_alarm)
        else:
            alarm = exceeded.copy()
        top: list[list[SignalContribution]] = [[] for _ in range(b)]
        mode = self.config.attribution
        if (
            raw is not None
            and mode != "never"
            and self.config.top_k > 0
            and (mode == "always" or _any(exceeded))
        ):
            rows = np.flatnonzero(~fs & (exceeded if mode == "alarm" else True))
            for row in rows.tolist():
                top[row] = self._attribute(row, feats[row], raw[row], prev_state, float(prob[row]))
        return Risk(
            probability=np.where(fs[:, None], np.nan, probs) if any_fs else probs,
            horizons_s=self.horizons_s,
            score=np.where(fs, np.nan, res.running) if any_fs else res.running,
            threshold=threshold,
            exceeded=exceeded,
            alarm=alarm,
            failsafe=fs.copy(),
            reason=list(self._reason),
            top_signals=top,
            step=t,
            alpha=self.alpha,
            failure_types=self.failure_types if types is not None else (),
            type_probability=(np.where(fs[:, None], np.nan, types) if any_fs else types)
            if types is not None
            else None,
        )

    @property
    def runner(self) -> Any:
        """The predictor network's streaming runner (``salus.predictor.runners``)."""
        return self.scorer.runner

    def _model_step(self, feats: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """One predictor step from ``state`` (attribution's re-runs; the scorer's state is untouched):
        features (B, D) -> probabilities (B, P) float64 and the new state."""
        return self.scorer.runner.step(feats, state)  # type: ignore[no-any-return]

    def _check_observation(self, observation: Mapping[str, Any], state: np.ndarray) -> list[str | None]:
        """Per-environment reason the observation is unusable, or None. Shapes were checked by
        :meth:`_read_state`; this looks for NaN / inf in ``state`` and in float images, and for an
        image that is None."""
        b = state.shape[0]
        bad: list[str | None] = [None] * b
        if not _all_finite(state):
            for i in np.flatnonzero(~np.isfinite(state).all(axis=1)).tolist():
                bad[i] = f"observation {self.config.robot_state!r} contains NaN or inf"
        for key, value in observation.items():
            if not str(key).startswith("image_"):
                continue
            if value is None:
                return [f"observation {key!r} has shape (), expected (B, H, W, 3)"] * b
            img = np.asarray(value)
            if img.dtype.kind == "f" and not _all_finite(img):
                ok = np.isfinite(img.reshape(b, -1)).all(axis=1)
                for j in np.flatnonzero(~ok).tolist():
                    bad[j] = bad[j] or f"observation {key!r} contains NaN or inf"
        return bad

    def _attribute(
        self, i: int, feats: np.ndarray, raw: np.ndarray, prev_state: Any, score: float
    ) -> list[SignalContribution]:
        """Leave-one-out on environment i's normalised features: one batched predictor call with
        each valid signal in turn set to its training mean (z = 0), from the state before the step."""
        n = len(self.signal_names)
        valid = feats[n : 2 * n] > 0.5  # signal features lead: n z-scores, n valid flags (then others)
        cols = np.flatnonzero(valid & (feats[:n] != 0.0))
        if cols.size == 0:
            return []
        x = np.repeat(feats[None], cols.size, axis=0)
        x[np.arange(cols.size), cols] = 0.0
        rep = self.runner.repeat_state(prev_state, i, cols.size)
        p, _ = self._model_step(x, rep)
        p = p[:, min(self.score_index, p.shape[1] - 1)]
        contrib = score - p
        order = np.argsort(-contrib)[: self.config.top_k]
        return [
            SignalContribution(
                name=self.signal_names[int(cols[k])],
                contribution=float(contrib[k]),
                value=float(raw[int(cols[k])]),
                z=float(feats[int(cols[k])]),
            )
            for k in order
            if contrib[k] > 0
        ]

    def _failsafe_all(self, observation: Any, reason: str) -> Risk:
        b = (
            self._batch_size
            or (_layout(observation, self.config.robot_state) or self._last_layout or (False, 1))[1]
        )
        if self._batch_size == 0:  # applied to every environment when the batch is allocated
            if self._pending_failsafe is None or self._pending_cleared:
                self._pending_failsafe = reason
            self._pending_cleared = set()
        if self._batch_size == 0 or len(self._failsafe) != b:
            self._failsafe = np.zeros(b, dtype=bool)
            self._reason = [None] * b
        for i in range(b):
            if not self._failsafe[i]:
                self._failsafe[i] = True
                self._reason[i] = reason
        # the step still counts (the band moves on); before allocation every environment is at 0
        t = self.scorer.advance() if self._batch_size else np.zeros(b, dtype=np.int64)
        p = len(self.horizons_s)
        return Risk(
            probability=np.full((b, p), np.nan),
            horizons_s=self.horizons_s,
            score=np.full(b, np.nan),
            threshold=self.scorer.threshold_at(t).astype(np.float64),
            exceeded=np.zeros(b, dtype=bool),
            alarm=np.full(b, self.config.failsafe_alarm),
            failsafe=np.ones(b, dtype=bool),
            reason=list(self._reason),
            top_signals=[[] for _ in range(b)],
            step=t,
            alpha=self.alpha,
        )


def _any(arr: np.ndarray) -> bool:
    """``arr.any()`` without the method's Python wrapper (as ``_all``, ``_all_finite``)."""
    return bool(np.logical_or.reduce(arr, axis=None))


def _all(arr: np.ndarray) -> bool:
    return bool(np.logical_and.reduce(arr, axis=None))


def _all_finite(arr: np.ndarray) -> bool:
    """No NaN or inf in ``arr`` (float): one reduction in the common case (a non-finite entry makes
    the sum non-finite; a sum that overflows only sends the caller to its per-row check)."""
    return bool(np.isfinite(np.add.reduce(arr, axis=None)))


def _reason(exc: BaseException) -> str:
    """The fail-safe reason of an error: an unusable input says what is wrong with it; anything
    else is an internal error (``Monitor.last_error`` keeps the traceback)."""
    if isinstance(exc, InvalidInputError):
        return str(exc)
    return f"internal error {type(exc).__name__}: {exc}"


def _layout(observation: Any, key: str = "state") -> tuple[bool, int] | None:
    """``(single, B)`` of an observation: single when ``task`` is a string or, without ``task``,
    the robot state (``observation[key]``) is 1-D; None when neither tells."""
    try:
        task = observation.get("task")
        if isinstance(task, str):
            return True, 1
        if isinstance(task, Sequence) and len(task):
            return False, len(task)
        state = observation.get(key)
        if state is None or isinstance(state, str):
            return None
        ndim = np.ndim(state)
        if ndim == 1:
            return True, 1
        return (False, int(np.shape(state)[0])) if ndim >= 2 else None
    except Exception:
        return None
