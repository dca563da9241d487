"""The collection loop: plan episodes, run them on a backend, commit them in episode order.

Resumable: episode i is a pure function of (config, i), so a rerun of the same command continues
at the first uncommitted episode and ends with the dataset an uninterrupted run would have made.
Episodes that finish before an earlier one are spilled to ``DATA.zarr.pending/`` (atomic file
writes) until their turn, so a kill loses no finished episode either.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus.collect.config import CollectConfig
from salus.collect.envs import GymSource
from salus.collect.plan import EpisodeSpec, plan_episode
from salus.data.format import pending_dir
from salus.data.record import EpisodeRecord
from salus.errors import DatasetError, InvalidInputError, SalusError

__all__ = [
    "CollectStats",
    "CollectResult",
    "collect",
    "collection_attrs",
    "probe_env",
    "resolve_signal_stats",
    "same_setting",
]


@dataclass
class CollectStats:
    """Progress of a run (passed to the ``on_progress`` callback after every commit)."""

    total: int
    committed: int  # episodes in the dataset
    resumed_from: int  # episodes already there when this run started
    steps: int = 0  # steps committed by this run
    successes: int = 0
    failure_types: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    @property
    def new_episodes(self) -> int:
        return self.committed - self.resumed_from

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def steps_per_second(self) -> float:
        return self.steps / max(self.elapsed, 1e-9)

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.new_episodes if self.new_episodes else None


@dataclass
class CollectResult:
    path: str
    episodes: int  # in the dataset at the end
    new_episodes: int
    steps: int  # committed by this run
    seconds: float
    interrupted: bool
    success_rate: float | None
    failure_types: dict[str, int]
    backend: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def resolve_signal_stats(config: CollectConfig) -> CollectConfig:
    """Fill ``signal_stats`` from the statistics shipped beside the policy's weights when the config
    leaves it unset (``None``); ``"none"`` keeps the extractor unfitted (OOD signal invalid)."""
    from dataclasses import replace

    if config.signal_stats is not None:
        return replace(config, signal_stats=None) if config.signal_stats == "none" else config
    try:
        from salus.signals import signal_stats_path

        base = signal_stats_path(config.policy)
    except SalusError:
        return config
    if base.with_suffix(".json").is_file() and base.with_suffix(".safetensors").is_file():
        return replace(config, signal_stats=str(base.resolve()))
    return config


def collection_attrs(config: CollectConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Root attributes and fitted state (``{"extractor": ...}``) of a dataset collected with ``config``."""
    from salus._version import __version__
    from salus.collect.worker import build_extractor
    from salus.signals import ONLINE_BASELINE_NAMES, SIGNAL_NAMES
    from salus.sim import CONTROL_HZ

    extractor = build_extractor(config)
    env: dict[str, Any] = {
        "simulator": "salus.sim",
        "tasks": list(config.task_list),
        "max_steps": config.max_steps,
        "control_hz": CONTROL_HZ,
        "image_size": config.image_size,
        "perturbation_mix": config.mix.to_obj() if config.mix is not None else None,
    }
    if config.env is not None:
        env = probe_env(config)
        config = _with_env_task(config, env)
    attrs = {
        "salus_version": __version__,
        "signal_names": list(SIGNAL_NAMES),
        "baseline_names": list(ONLINE_BASELINE_NAMES),
        "control_hz": env["control_hz"],
        "env": env,
        "policy": {"spec": config.policy, "num_samples": config.num_samples, "kwargs": config.policy_kwargs},
        "extractor": {"config": extractor.config.to_dict(), "fitted": bool(extractor.fitted)},
        "collect": {**config.spec_dict(), "episodes": config.episodes},
    }
    if config.robot is not None:  # where the Recorder stores it (read by salus.data.robot_from_attrs)
        attrs["robot"] = config.robot.to_dict()
    return attrs, {"extractor": extractor.state_dict()}


def _with_env_task(config: CollectConfig, env_attrs: dict[str, Any]) -> CollectConfig:
    """``config`` naming the task ``probe_env`` resolved (``env_attrs["tasks"]``) for an ``--env``
    run that gave none: it is part of the run's settings (resume) and every episode stores it."""
    from dataclasses import replace

    if config.env is None or config.tasks:
        return config
    return replace(config, tasks=tuple(env_attrs["tasks"]))


def legacy_env_task(env: str) -> str:
    """The task name ``--env`` runs stored before it was the environment's id: the factory's module
    (``examples/byo_pusht.py:make_env`` -> ``byo_pusht``) or the id's last part (``PushT-v0``).
    Resuming such a dataset without ``--tasks`` keeps it."""
    from salus._lazy import is_object_spec

    if is_object_spec(env):
        return env.rpartition(":")[0].rsplit("/", 1)[-1].removesuffix(".py").rsplit(".", 1)[-1]
    return env.rsplit("/", 1)[-1]


def check_factories(config: CollectConfig) -> None:
    """Resolve the ``--success`` / ``--failure`` callables a run names, before anything is created:
    they must exist and be callable (the ``python:`` policy factory is checked by
    :meth:`~salus.policies.PolicySpec.check`, the ``--env`` factory built by :func:`probe_env`).
    InvalidInputError otherwise."""
    from salus._lazy import is_object_spec, load_object

    if config.env is None:
        return
    for what, spec in (("success rule", config.success), ("failure rule", config.failure)):
        if spec is not None and is_object_spec(spec) and not callable(load_object(spec, what)):
            raise InvalidInputError(f"the {what} {spec!r} is not callable")


def _probe_action(space: Any) -> Any:
    """A neutral action for the probe: zeros clipped into a ``Box``, the first of a ``Discrete``;
    None for other spaces (the probe then does not step)."""
    try:
        from gymnasium import spaces
    except ImportError:  # pragma: no cover - gymnasium is a dependency
        return None
    if isinstance(space, spaces.Box):
        return np.clip(np.zeros(space.shape, space.dtype), space.low, space.high).astype(space.dtype)
    if isinstance(space, spaces.Discrete):
        return np.int64(space.start)
    return None


def _probe_outcome(env: Any, config: CollectConfig, limit: int) -> int:
    """Step the environment with a neutral action until the outcome rules can be evaluated (at once
    for a ``--success`` callable, else at the first step whose ``info`` holds the success key, at
    the latest when the episode ends) and evaluate them there, as at the end of an episode: a
    missing success key, or a rule that fails on this environment's ``info`` / observation, is
    reported before the dataset exists. Returns the steps taken (0: the action space is unknown,
    the first episode checks the rules)."""
    from salus._lazy import is_object_spec

    assert config.observation is not None
    action = _probe_action(getattr(env, "action_space", None))
    if action is None:
        return 0
    rule = config.outcome
    for t in range(1, max(1, limit) + 1):
        obs, _reward, terminated, truncated, info = env.step(action)
        config.observation.apply(obs, None if config.robot is None else config.robot.state_dim)
        if is_object_spec(rule.success) or rule.success in info or terminated or truncated or t >= limit:
            where = f"--env {config.env!r} (probed before the dataset is created: {t} step(s) of a neutral action)"
            rule.label(info, obs, t, where=where)
            return t
    return limit  # pragma: no cover - the loop always returns


def probe_env(config: CollectConfig) -> dict[str, Any]:
    """Build the ``--env`` environment once, reset it, map its first observation and step it until
    the success / failure rules can be evaluated (:func:`_probe_outcome`), so a wrong id, factory,
    observation mapping, success key or rule is reported before the dataset exists (the workers
    build their own environment); returns the dataset's ``env`` attributes (control rate from
    ``metadata["render_fps"]``, else the robot description's, else 20 Hz). A robot description
    (``config.robot``) must have the mapped state's width, the action space's width (when it gives
    one), the ``render_fps`` rate (when the environment declares one), and the map's
    ``robot_state`` must hold its ``state_dim`` values. ``tasks``: the run's task name
    (``config.tasks``, else :func:`~salus.collect.envs.env_task_name` of the built environment)."""
    from salus.collect.envs import env_task_name
    from salus.collect.worker import make_source

    assert config.env is not None and config.observation is not None
    source = make_source(config, config.observation.cameras, config.image_size)
    assert isinstance(source, GymSource)
    try:
        env, _ = source.make(config.task_list[0], ())
        obs, _info = env.reset(seed=0)
        robot = config.robot
        policy_obs, _ = config.observation.apply(obs, None if robot is None else robot.state_dim)
        space = getattr(env, "action_space", None)
        hz = source.control_hz(env)
        if robot is not None:
            hz = _check_robot(robot, config, env, int(policy_obs["state"].shape[0]), space, hz)
        _probe_outcome(env, config, source.step_limit(env))
        return {
            "simulator": "gymnasium",
            "env": config.env,
            "env_id": env_task_name(config.env, env),  # the derived robot's name (salus.data.robot)
            "env_kwargs": config.env_kwargs,
            "tasks": list(config.tasks or (env_task_name(config.env, env),)),
            "max_steps": source.step_limit(env),
            "control_hz": hz,
            "observation": config.observation.to_dict(),
            "state_dim": int(policy_obs["state"].shape[0]),
            "action_shape": list(getattr(space, "shape", None) or []),
            "success": config.success,
            "failure": config.failure,
        }
    finally:
        source.close()


def _check_robot(
    robot: Any, config: CollectConfig, env: Any, state_width: int, space: Any, hz: float
) -> float:
    """InvalidInputError unless the robot description fits the probed environment; returns the
    dataset's control rate (the environment's ``render_fps``, else the description's)."""
    where = f"the robot description {robot.name!r} (--robot) does not fit --env {config.env!r}"
    assert config.observation is not None
    if robot.state_dim != state_width:
        raise InvalidInputError(
            f"{where}: its state_dim is {robot.state_dim} but the mapped state "
            f"(--obs state={','.join(config.observation.state)}) has {state_width} values"
        )
    shape = tuple(getattr(space, "shape", None) or ())
    if robot.action_dim is not None and shape != (robot.action_dim,):
        raise InvalidInputError(
            f"{where}: its action_dim is {robot.action_dim} but the action space has shape {shape}"
        )
    fps = (getattr(env, "metadata", None) or {}).get("render_fps")
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps < float("inf"):
        return robot.control_hz  # the environment does not say: the description's rate
    if float(hz) != robot.control_hz:
        raise InvalidInputError(
            f"{where}: its control_hz is {robot.control_hz:g} but the environment runs at {hz:g} Hz "
            "(metadata['render_fps'])"
        )
    return hz


# --------------------------------------------------------------------------- pending episodes
def _pending_file(directory: Path, index: int) -> Path:
    return directory / f"episode_{index:09d}.npz"


def save_pending(directory: Path, record: EpisodeRecord, spec_hash: str) -> Path:
    """Write a finished episode atomically (temporary file + rename); no pickles."""
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "spec_hash": spec_hash,
        "episode_index": record.episode_index,
        "success": record.success,
        "failure_step": record.failure_step,
        "failure_type": record.failure_type,
        "task": record.task,
        "seed": record.seed,
        "perturbations": record.perturbations,
    }
    arrays: dict[str, Any] = {f"step__{k}": v for k, v in record.steps.items()}
    arrays["__meta__"] = np.array(json.dumps(meta))
    path = _pending_file(directory, record.episode_index)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def load_pending(directory: Path, spec_hash: str, start: int, stop: int) -> dict[int, EpisodeRecord]:
    """Finished episodes in ``[start, stop)`` spilled by an earlier run of the same config."""
    out: dict[int, EpisodeRecord] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("episode_*.npz")):
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["__meta__"]))
                steps = {k[len("step__") :]: z[k] for k in z.files if k.startswith("step__")}
        except Exception:  # unreadable leftover: it will simply be re-run
            path.unlink(missing_ok=True)
            continue
        index = int(meta["episode_index"])
        if meta.get("spec_hash") != spec_hash or not start <= index < stop:
            if index < start or meta.get("spec_hash") != spec_hash:
                path.unlink(missing_ok=True)
            continue
        meta.pop("spec_hash")
        out[index] = EpisodeRecord(steps=steps, **meta)
    for tmp in directory.glob("*.tmp"):
        tmp.unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------- Ctrl-C
class _DeferSigint:
    """Hold off Ctrl-C while an episode is being committed, then raise KeyboardInterrupt."""

    def __enter__(self) -> _DeferSigint:
        self.received = False
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = True

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self.previous)
            if self.received:
                raise KeyboardInterrupt


# --------------------------------------------------------------------------- the loop
def _resume_diff(key: str, was: Any, now: Any) -> str:
    """One setting a resume changed; for two robot descriptions only the fields that differ."""
    if key == "robot" and isinstance(was, dict) and isinstance(now, dict):
        fields = [f for f in sorted(set(was) | set(now)) if was.get(f) != now.get(f)]
        return "robot: " + ", ".join(f"{f} dataset {was.get(f)!r}, now {now.get(f)!r}" for f in fields)
    return f"{key}: dataset {was!r}, now {now!r}"


def _resume_task(existing: dict[str, Any], config: CollectConfig, named: bool) -> CollectConfig:
    """An ``--env`` dataset collected when the default task name was :func:`legacy_env_task` keeps
    that name when resumed without ``--tasks`` (``named``), so it resumes as it did."""
    from dataclasses import replace

    old = existing.get("collect")
    if named or config.env is None or not isinstance(old, dict):
        return config
    legacy = legacy_env_task(config.env)
    if old.get("tasks") == [legacy] and config.task_list != (legacy,):
        return replace(config, tasks=(legacy,))
    return config


def same_setting(key: str, old: Any, new: Any) -> bool:
    """Whether a recorded collection setting equals this run's. Signal statistics are the same when
    their files hold the same bytes (the packaged ones live under each install's own path, so the
    recorded path differs between checkouts and machines)."""
    if old == new:
        return True
    if key != "signal_stats" or not isinstance(old, str) or not isinstance(new, str):
        return False
    digest = _stats_digest(old)
    return digest is not None and digest == _stats_digest(new)


def _stats_digest(base: str) -> str | None:
    """SHA-256 of the statistics files ``base.json`` + ``base.safetensors``; None if one is missing."""
    import hashlib

    h = hashlib.sha256()
    for suffix in (".json", ".safetensors"):
        f = Path(base).with_suffix(suffix)
        if not f.is_file():
            return None
        h.update(f.read_bytes())
    return h.hexdigest()


def _check_resume(existing: dict[str, Any], config: CollectConfig, path: Path) -> None:
    old = existing.get("collect")
    if not isinstance(old, dict):
        raise DatasetError(
            f"{path} is a salus dataset that was not written by `salus collect`; choose another --out"
        )
    new = {**config.spec_dict(), "episodes": config.episodes}
    new = json.loads(json.dumps(new))
    if "robot" in old and "robot" not in new:  # the spec of a run without --robot has no "robot"
        new["robot"] = None
    diffs = [k for k in new if k != "episodes" and not same_setting(k, old.get(k), new[k])]
    if diffs:
        detail = "; ".join(_resume_diff(k, old.get(k), new[k]) for k in diffs)
        raise DatasetError(
            f"{path} was collected with different settings ({detail}). Resume with the same options, "
            "or write to a new --out (or pass --overwrite to start over)."
        )


def collect(
    config: CollectConfig,
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    use_ray: bool = False,
    ray_address: str | None = None,
    overwrite: bool = False,
    on_progress: Callable[[CollectStats], None] | None = None,
    on_start: Callable[[CollectStats], None] | None = None,
    batch_size: int = 1,
) -> CollectResult:
    """Collect ``config.episodes`` episodes into the zarr dataset ``out`` (created or resumed).

    Each of the ``workers`` runs ``batch_size`` environments in lockstep (one batched policy call
    per step); the dataset is the same for any ``workers`` and ``batch_size``. Ctrl-C stops after
    committing every finished episode; run the same call again to resume.
    """
    from salus.collect.backends import make_backend
    from salus.data.writer import DatasetWriter
    from salus.policies import PolicySpec

    path = Path(out)
    PolicySpec.parse(config.policy).check(factories=True)  # a typo must not leave an empty dataset behind
    check_factories(config)  # --success / --failure callables
    config = resolve_signal_stats(config)
    named = bool(config.tasks)
    attrs, state = collection_attrs(config)  # --env: builds, maps and steps it (probe_env)
    if config.env is not None:
        config = _with_env_task(config, attrs["env"])
    writer = DatasetWriter(path, attrs, state=state, overwrite=overwrite)
    interrupted = False
    backend_name = "ray" if use_ray else ("serial" if workers == 1 else "processes")
    try:
        if writer.num_episodes == 0 and "collect" not in writer.attrs:
            writer.update_attrs(attrs)  # an empty dataset made by other code: adopt it
        else:
            config = _resume_task(writer.attrs, config, named)
            _check_resume(writer.attrs, config, path)
            old = dict(writer.attrs["collect"])
            if int(old.get("episodes", 0)) < config.episodes:
                writer.update_attrs({"collect": {**old, "episodes": config.episodes}})
        total = config.episodes
        start = writer.num_episodes
        stats = CollectStats(total=total, committed=start, resumed_from=start)
        spec_hash = config.spec_hash()
        pdir = pending_dir(path)
        buffer = load_pending(pdir, spec_hash, start, total)
        if on_start is not None:
            on_start(stats)
        tasks = config.task_list
        assert config.mix is not None
        mix = config.mix

        def specs() -> Iterator[EpisodeSpec]:
            for i in range(start, total):
                if i not in buffer:
                    yield plan_episode(i, config.seed, tasks, mix)

        def commit_ready() -> None:
            while stats.committed in buffer:
                record = buffer.pop(stats.committed)
                with _DeferSigint():
                    writer.append(record)
                    stats.committed += 1
                    stats.steps += record.length
                    stats.successes += int(record.success)
                    if not record.success:
                        stats.failure_types[record.failure_type] += 1
                _pending_file(pdir, record.episode_index).unlink(missing_ok=True)
                if on_progress is not None:
                    on_progress(stats)

        try:
            commit_ready()
            if stats.committed < total:
                with make_backend(config, workers, ray_address, use_ray, batch_size) as backend:
                    backend_name = backend.name
                    for spec, record in backend.run(specs()):
                        record.episode_index = spec.index
                        if record.seed != spec.seed:  # pragma: no cover - a worker bug
                            raise DatasetError(
                                f"episode {spec.index} came back with seed {record.seed} != {spec.seed}"
                            )
                        buffer[spec.index] = record
                        if spec.index != stats.committed:
                            save_pending(pdir, record, spec_hash)
                        commit_ready()
        except KeyboardInterrupt:
            interrupted = True
        if not interrupted and pdir.is_dir():
            with contextlib.suppress(OSError):
                for leftover in pdir.iterdir():
                    leftover.unlink()
                pdir.rmdir()
        if stats.new_episodes:  # wall time of the runs that collected (resumes add theirs)
            worked = float(writer.attrs.get("collect_seconds") or 0.0) + stats.elapsed
            writer.update_attrs({"collect_seconds": round(worked, 1)})
    except BaseException:
        # A run that fails before its first commit removes the empty store it created (an existing
        # one is kept), so the corrected command needs no --overwrite; pending episodes stay.
        writer.discard_if_empty()
        raise
    finally:
        writer.close()
    return CollectResult(
        path=str(path),
        episodes=stats.committed,
        new_episodes=stats.new_episodes,
        steps=stats.steps,
        seconds=stats.elapsed,
        interrupted=interrupted,
        success_rate=stats.success_rate,
        failure_types=dict(stats.failure_types),
        backend=backend_name,
    )
