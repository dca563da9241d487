"""The collect job: a policy in the simulator (or any Gymnasium environment), episodes into a zarr dataset.

``salus collect`` builds a :class:`CollectJob` from its options and runs :func:`run_collect`;
``salus demo`` and ``salus benchmark`` run the same job as a stage. The dataset resumes: a rerun
continues at the first episode not yet committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salus.collect.config import DEFAULT_BATCH_SIZE
from salus.errors import InvalidInputError
from salus.jobs.stages import coerce_fields
from salus.policies.spec import DEFAULT_POLICY

if TYPE_CHECKING:
    from salus.collect.collector import CollectResult, CollectStats
    from salus.collect.config import CollectConfig
    from salus.jobs.stages import Reporter

__all__ = ["CollectJob", "run_collect", "unfitted_warning", "failure_text"]

# CollectJob field -> salus collect option (the policy is always written: it says what was collected)
_FLAGS = {
    "episodes": "--episodes",
    "tasks": "--tasks",
    "seed": "--seed",
    "max_steps": "--max-steps",
    "perturb": "--perturb",
    "perturb_mix": "--perturb-mix",
    "workers": "--workers",
    "batch_size": "--batch-size",
    "ray": "--ray",
    "save_images": "--save-images",
    "save_hidden": "--save-hidden",
    "samples": "--samples",
    "signal_stats": "--signal-stats",
    "env": "--env",
    "env_kwargs": "--env-kwargs",
    "obs": "--obs",
    "task_text": "--task-text",
    "success": "--success",
    "failure": "--failure",
    "robot": "--robot",
    "overwrite": "--overwrite",
    "out": "--out",
}
_ENV_ONLY = ("obs", "task_text", "env_kwargs", "failure", "success", "robot")


@dataclass(frozen=True)
class CollectJob:
    """What ``salus collect`` collects (each field is the option of the same name; see ``salus
    collect --help``): ``tasks``, ``perturb`` (``NAME=STRENGTH``) and ``obs`` (``KEY=SOURCE``) are
    tuples of single values; ``perturb`` or ``perturb_mix`` (a JSON file) replace the default
    perturbation mix; ``env`` and the options after it run any Gymnasium environment instead of our
    tasks; ``ray``: a Ray address (``local`` for a local cluster)."""

    out: Path
    policy: str = DEFAULT_POLICY
    episodes: int = 24
    tasks: tuple[str, ...] = ()
    seed: int = 0
    max_steps: int | None = None
    perturb: tuple[str, ...] = ()
    perturb_mix: Path | None = None
    workers: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    ray: str | None = None
    save_images: bool = False
    save_hidden: bool = False
    samples: int = 4
    signal_stats: str | None = None
    env: str | None = None
    env_kwargs: str | None = None
    obs: tuple[str, ...] = ()
    task_text: str = ""
    success: str = "is_success"
    failure: str | None = None
    robot: Path | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        coerce_fields(self)
        if self.perturb and self.perturb_mix is not None:
            raise InvalidInputError("use either --perturb NAME=STRENGTH or --perturb-mix FILE, not both")
        if self.env is not None and (self.perturb or self.perturb_mix is not None):
            raise InvalidInputError(
                "--perturb / --perturb-mix are salus.sim wrappers; an --env environment runs unperturbed"
            )
        defaults = {f.name: f.default for f in fields(self)}
        if self.env is None and any(getattr(self, n) != defaults[n] for n in _ENV_ONLY):
            raise InvalidInputError(
                "--obs, --task-text, --env-kwargs, --success, --failure and --robot go with --env"
            )
        if self.workers < 1:
            raise InvalidInputError(f"--workers must be >= 1, got {self.workers}")
        self.config()  # every other option is checked where the configuration is built

    def argv(self) -> list[str]:
        """The ``salus collect`` arguments that run this job."""
        from salus.jobs.stages import option_words

        return ["collect", "--policy", self.policy, *option_words(self, _FLAGS)]

    def config(self) -> CollectConfig:
        """The collection's configuration (the perturbation mix and the environment options read)."""
        from salus.collect import CollectConfig, PerturbationMix, parse_perturb_arg

        mix = None
        if self.perturb:
            mix = PerturbationMix.fixed([parse_perturb_arg(p) for p in self.perturb])
        elif self.perturb_mix is not None:
            mix = PerturbationMix.load(self.perturb_mix)
        return CollectConfig(
            **self._env_options(),
            policy=self.policy,
            episodes=self.episodes,
            tasks=self.tasks,
            seed=self.seed,
            max_steps=self.max_steps,
            mix=mix,
            save_images=self.save_images,
            save_hidden=self.save_hidden,
            num_samples=self.samples,
            signal_stats=self.signal_stats,
        )

    def _env_options(self) -> dict[str, Any]:
        if self.env is None:
            return {}
        from salus.collect.envs import ObservationMap

        kwargs: Any = {}
        if self.env_kwargs:
            try:
                kwargs = json.loads(self.env_kwargs)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"--env-kwargs is not valid JSON: {exc}") from None
            if not isinstance(kwargs, dict):
                raise InvalidInputError(f"--env-kwargs must be a JSON object, got {self.env_kwargs!r}")
        options: dict[str, Any] = {
            "env": self.env,
            "env_kwargs": kwargs,
            "observation": ObservationMap.parse(list(self.obs), self.task_text),
            "success": self.success,
            "failure": self.failure,
        }
        if self.robot is not None:
            from salus.data.robot import load_robot

            try:
                options["robot"] = load_robot(self.robot)
            except InvalidInputError as exc:
                raise InvalidInputError(f"--robot {self.robot}: {exc}") from None
        return options

    def run(self, reporter: Reporter) -> CollectResult:
        def show(stats: CollectStats) -> None:
            rate = stats.success_rate
            info = (
                f"{stats.steps_per_second:.0f} steps/s, success {'-' if rate is None else f'{rate:.0%}'}, "
                f"failures {failure_text(stats.failure_types)}"
            )
            reporter.progress("collect", stats.committed, self.episodes, info)

        return run_collect(
            self,
            on_start=lambda s: reporter.progress("collect", s.committed, self.episodes, ""),
            on_progress=show,
            say=reporter.say,
        )


def failure_text(counter: Any) -> str:
    """Failure counts as ``type:count`` words, ``-`` for none."""
    if not counter:
        return "-"
    return " ".join(f"{k}:{v}" for k, v in sorted(counter.items()))


def unfitted_warning(config: CollectConfig) -> str | None:
    """What to say when no fitted signal statistics will be used (and how to fit them), else None."""
    from salus.collect.collector import resolve_signal_stats
    from salus.errors import SalusError

    if config.signal_stats is not None or resolve_signal_stats(config).signal_stats is not None:
        return None  # statistics given, found beside the weights, or explicitly 'none'
    try:
        from salus.signals import signal_stats_path

        where = f" (looked for {signal_stats_path(config.policy)}.json / .safetensors)"
    except SalusError:
        where = ""
    return (
        f"warning: policy {config.policy!r} has no fitted signal statistics{where}: the OOD signal "
        "and the sample signals without a cluster radius are recorded as invalid. Fit them first with "
        f"`salus signals fit --policy '{config.policy}'` (writes them beside the weights), or pass "
        "--signal-stats PATH; --signal-stats none collects without and silences this warning."
    )


def run_collect(
    job: CollectJob,
    *,
    on_start: Callable[[CollectStats], None] | None = None,
    on_progress: Callable[[CollectStats], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> CollectResult:
    """Run ``job`` (resumes an existing dataset at ``job.out``); the policy spec is checked before
    the dataset exists, so a typo leaves nothing behind (and before ``say`` hears whether the
    policy has fitted signal statistics)."""
    from salus.collect.collector import collect
    from salus.policies import PolicySpec

    config = job.config()
    PolicySpec.parse(config.policy).check()
    if say is not None and (warning := unfitted_warning(config)):
        say(warning)
    return collect(
        config,
        job.out,
        workers=job.workers,
        batch_size=job.batch_size,
        use_ray=job.ray is not None,
        ray_address=job.ray,
        overwrite=job.overwrite,
        on_progress=on_progress,
        on_start=on_start,
    )
