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
    and the sample-based ones without a configured cluster radius, are flagged invalid)."""
    from salus.collect.recorder import make_extractor

    return make_extractor(config.signal_stats)


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
    """Runs episodes from :class:`EpisodeSpec` s.

    The policy is built once, and so is the environment: our simulator keeps one per task for
    unperturbed episodes (building one costs several times a reset) and builds a fresh, wrapped one
    for each perturbed episode (the perturbation wrappers install hooks that cannot be removed); an
    ``--env`` environment is built once. ``reset(seed)`` restores the whole simulator state, so an
    episode does not depend on what ran before it (tested).
    """

    def __init__(self, config: CollectConfig):
        limit_threads()
        from salus.policies import load_policy
        from salus.signals import OnlineBaselines

        self.config = config
        kwargs = dict(config.policy_kwargs)
        if config.num_samples > 1:
            kwargs.setdefault("num_samples", config.num_samples)
        self.policy = load_policy(config.policy, **kwargs)
        self.extractor = build_extractor(config)
        self.baselines = OnlineBaselines(1)
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
        """The simulators kept for unperturbed episodes, by task."""
        return getattr(self.source, "envs", {})

    def run(self, spec: EpisodeSpec) -> EpisodeRecord:
        from salus.collect.runner import run_episode

        env, cached = self.source.make(spec.task, spec.perturbations)
        with contextlib.ExitStack() as stack:
            if not cached:
                stack.callback(env.close)
            stack.enter_context(_blas_single_thread())
            record = run_episode(
                env,
                self.policy,
                self.extractor,
                self.baselines,
                spec.seed,
                self.source.step_limit(env),
                save_images=self.config.save_images,
                save_hidden=self.config.save_hidden,
                cameras=self.cameras,
                perturbations=spec.perturbations,
                task=spec.task,
                observation=self.source.observation,
                outcome=getattr(self.source, "outcome", None),
            )
        record.episode_index = spec.index
        return record

    def close(self) -> None:
        """Close the kept environments."""
        self.source.close()
