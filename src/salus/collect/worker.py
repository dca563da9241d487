"""A collection worker: one policy, one signal extractor and baselines, the environments of its episodes.

The same class runs in-process (serial), in a spawned local process (``--workers``) and as a Ray
actor (``--ray``), so every backend produces bit-identical episodes for the same spec.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from salus.collect.config import CollectConfig
from salus.collect.envs import EnvSource, GymSource, SimSource
from salus.collect.plan import EpisodeSpec
from salus.data.record import EpisodeRecord
from salus.errors import InvalidInputError

__all__ = ["EpisodeWorker", "limit_threads", "build_extractor", "make_source"]


def limit_threads() -> None:
    """Single-threaded numerical libraries: parallelism comes from workers, not threads, and a
    BLAS reduction split over threads sums in a different order (results would then depend on the
    backend that ran the episode)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _blas_single_thread() -> contextlib.AbstractContextManager[Any]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def build_extractor(config: CollectConfig) -> Any:
    """The signal extractor of a run: loaded from ``signal_stats``, else unfitted (the OOD signal,
    and the sample-based ones without a configured cluster radius, are flagged invalid). With a
    robot description (``config.robot``) the robot-state signals read the state through it."""
    from salus.collect.recorder import make_extractor

    extractor = make_extractor(config.signal_stats)
    if config.robot is not None:
        extractor.set_robot(config.robot.extractor_robot())
    return extractor


def make_source(config: CollectConfig, cameras: tuple[str, ...], image_size: int) -> EnvSource:
    """Where the run's episodes happen: our simulator's tasks, or the ``--env`` environment."""
    if config.env is None:
        return SimSource(image_size=image_size, cameras=cameras, max_steps=config.max_steps)
    return GymSource(
        spec=config.env,
        kwargs=dict(config.env_kwargs),
        observation=config.observation,
        outcome=config.outcome,
        max_steps=config.max_steps,
    )


class EpisodeWorker:
    """Runs episodes from :class:`EpisodeSpec` s, ``batch_size`` environments in lockstep.

    The policy is built once, and so is the environment: our simulator keeps one per task and slot
    for unperturbed episodes (building one costs several times a reset) and builds a fresh, wrapped
    one for each perturbed episode (the perturbation wrappers install hooks that cannot be
    removed); an ``--env`` environment is built once per slot. ``reset(seed)`` restores the whole
    simulator state, so an episode does not depend on what ran before it, and the policy computes
    in passes of ``config.compute_batch`` rows, so it does not depend on what ran beside it either
    (both tested): any batch size and any number of workers give the same episodes.
    """

    def __init__(self, config: CollectConfig, batch_size: int = 1):
        limit_threads()
        from salus.policies import load_policy
        from salus.signals import OnlineBaselines

        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.config = config
        self.batch_size = batch_size
        kwargs = dict(config.policy_kwargs)
        if config.num_samples > 1:
            kwargs.setdefault("num_samples", config.num_samples)
        self.policy = load_policy(config.policy, **kwargs)
        set_compute_batch = getattr(self.policy, "set_compute_batch", None)
        if set_compute_batch is not None:
            set_compute_batch(config.compute_batch)
        elif batch_size > 1:
            raise InvalidInputError(
                f"policy {config.policy!r} ({type(self.policy).__name__}) has no set_compute_batch, so its "
                "batched results could depend on the batch; collect it with --batch-size 1"
            )
        self.extractor = build_extractor(config)
        self._extractors = {1: self.extractor}
        self._baselines = {1: OnlineBaselines(1)}
        pconf = getattr(self.policy, "config", None)
        if config.env is None:
            self.cameras = tuple(getattr(pconf, "cameras", None) or ("front", "wrist"))
        else:
            assert config.observation is not None
            self.cameras = config.observation.cameras
        self.image_size = int(getattr(pconf, "image_size", None) or config.image_size)
        self.source = make_source(config, self.cameras, self.image_size)

    @property
    def _envs(self) -> dict[str, Any]:
        """The simulators kept for unperturbed episodes, by task (and slot)."""
        return getattr(self.source, "envs", {})

    def _rows(self, b: int) -> tuple[Any, Any]:
        """Signal extractor and online baselines with b rows (the same fitted statistics)."""
        if b not in self._extractors:
            from salus.signals import OnlineBaselines, SignalExtractor

            ex = SignalExtractor(b, self.extractor.config, robot=self.extractor.robot)
            ex.load_state_dict(self.extractor.state_dict())
            self._extractors[b] = ex
            self._baselines[b] = OnlineBaselines(b)
        return self._extractors[b], self._baselines[b]

    def run(self, spec: EpisodeSpec) -> EpisodeRecord:
        """One episode."""
        return self.run_many([spec])[0][1]

    def run_many(self, specs: list[EpisodeSpec]) -> list[tuple[EpisodeSpec, EpisodeRecord]]:
        """Episodes through ``batch_size`` lockstep slots; (spec, record) in the order they finished."""
        from salus.collect.runner import EpisodeJob, run_episodes

        todo = iter(specs)
        results: list[tuple[EpisodeSpec, EpisodeRecord]] = []

        def next_job(slot: int) -> EpisodeJob:
            spec = next(todo)
            env, cached = self.source.make(spec.task, spec.perturbations, slot=slot)
            return EpisodeJob(
                env, spec.seed, self.source.step_limit(env), spec.task, spec.perturbations, (spec, cached)
            )

        def on_record(job: EpisodeJob, record: EpisodeRecord) -> None:
            spec, cached = job.tag
            if not cached:
                job.env.close()
            record.episode_index = spec.index
            results.append((spec, record))

        b = min(self.batch_size, len(specs))
        extractor, baselines = self._rows(b)
        with _blas_single_thread():
            run_episodes(
                next_job,
                self.policy,
                extractor,
                baselines,
                on_record,
                batch_size=b,
                save_images=self.config.save_images,
                save_hidden=self.config.save_hidden,
                cameras=self.cameras,
                observation=self.source.observation,
                outcome=getattr(self.source, "outcome", None),
                robot=self.config.robot,
            )
        return results

    def close(self) -> None:
        """Close the kept environments."""
        self.source.close()
