"""A collection worker: one policy, one signal extractor and baselines, a fresh simulator per episode.

The same class runs in-process (serial), in a spawned local process (``--workers``) and as a Ray
actor (``--ray``), so every backend produces bit-identical episodes for the same spec.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from salus.collect.config import CollectConfig
from salus.collect.plan import EpisodeSpec
from salus.data.record import EpisodeRecord

__all__ = ["EpisodeWorker", "limit_threads", "build_extractor"]


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
    from dataclasses import replace

    from salus.signals import SignalConfig, SignalExtractor

    if config.signal_stats and config.signal_stats != "none":
        return SignalExtractor.load(config.signal_stats, batch_size=1)
    return SignalExtractor(1, replace(SignalConfig(), require_fitted=False))


class EpisodeWorker:
    """Runs episodes from :class:`EpisodeSpec` s.

    The policy is built once. Unperturbed episodes reuse one simulator per task (building one
    costs several times a reset); perturbed episodes get a fresh, wrapped simulator, since the
    perturbation wrappers install hooks that cannot be removed. ``reset(seed)`` restores the whole
    simulator state, so an episode does not depend on what ran before it (tested).
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
        self.cameras = tuple(getattr(pconf, "cameras", None) or ("front", "wrist"))
        self.image_size = int(getattr(pconf, "image_size", None) or config.image_size)
        self._envs: dict[str, Any] = {}

    def _make_env(self, spec: EpisodeSpec) -> tuple[Any, bool]:
        """(env, reused): the task's cached simulator for an unperturbed episode, else a new one."""
        from salus.sim import make_env

        if not spec.perturbations and spec.task in self._envs:
            return self._envs[spec.task], True
        env = make_env(
            spec.task,
            image_size=self.image_size,
            cameras=self.cameras,
            max_steps=self.config.max_steps,
            perturbations=list(spec.perturbations) or None,
        )
        if not spec.perturbations:
            self._envs[spec.task] = env
            return env, True
        return env, False

    def run(self, spec: EpisodeSpec) -> EpisodeRecord:
        from salus.collect.runner import run_episode

        env, cached = self._make_env(spec)
        with contextlib.ExitStack() as stack:
            if not cached:
                stack.callback(env.close)
            stack.enter_context(_blas_single_thread())
            limit = int(getattr(env.unwrapped, "max_steps", self.config.max_steps or 10_000))
            record = run_episode(
                env,
                self.policy,
                self.extractor,
                self.baselines,
                spec.seed,
                limit,
                save_images=self.config.save_images,
                save_hidden=self.config.save_hidden,
                cameras=self.cameras,
                perturbations=spec.perturbations,
                task=spec.task,
            )
        record.episode_index = spec.index
        return record

    def close(self) -> None:
        """Close the cached simulators."""
        envs, self._envs = self._envs, {}
        for env in envs.values():
            env.close()
