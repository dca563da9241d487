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

from salus._checks import SEED_MAX
from salus.collect.config import DEFAULT_BATCH_SIZE
from salus.errors import InvalidInputError
from salus.jobs.options import REQUIRED, check_options, job_options, option, option_words
from salus.jobs.stages import coerce_fields
from salus.policies.spec import DEFAULT_POLICY, POLICY_SPEC_HELP

if TYPE_CHECKING:
    from salus.collect.collector import CollectResult, CollectStats
    from salus.collect.config import CollectConfig
    from salus.jobs.stages import Reporter

__all__ = ["CollectJob", "run_collect", "unfitted_warning", "failure_text"]

_ENV_ONLY = ("obs", "task_text", "env_kwargs", "failure", "success", "robot")


@dataclass(frozen=True)
class CollectJob:
    """What ``salus collect`` collects (each field is the option of the same name; see ``salus
    collect --help``): ``tasks``, ``perturb`` (``NAME=STRENGTH``) and ``obs`` (``KEY=SOURCE``) are
    tuples of single values; ``perturb`` or ``perturb_mix`` (a JSON file) replace the default
    perturbation mix; ``env`` and the options after it run any Gymnasium environment instead of our
    tasks; ``ray``: a Ray address (``local`` for a local cluster)."""

    out: Path = option(
        REQUIRED,
        "--out",
        "Dataset to write (DATA.zarr); an existing one is resumed.",
        aliases=("-o",),
        out_dir=True,
    )
    policy: str = option(DEFAULT_POLICY, "--policy", POLICY_SPEC_HELP)
    episodes: int = option(
        24, "--episodes", "Episodes the dataset should hold at the end.", lo=1, aliases=("-n",)
    )
    tasks: tuple[str, ...] = option(
        (),
        "--tasks",
        "Tasks (repeat or comma-separate); default: all tasks, rotating. With --env: the one task name the "
        "dataset stores (default: the environment's Gymnasium id, env.spec.id, else the factory's function name).",
    )
    seed: int = option(
        0, "--seed", "Base seed: episode i's seed, task and perturbations derive from it.", lo=0, hi=SEED_MAX
    )
    max_steps: int | None = option(
        None, "--max-steps", "Control steps per episode; default: the simulator's limit per task.", lo=1
    )
    perturb: tuple[str, ...] = option(
        (), "--perturb", "NAME=STRENGTH applied to every episode (repeatable); replaces the default mix."
    )
    perturb_mix: Path | None = option(
        None,
        "--perturb-mix",
        'JSON file: a list of {"weight": w, "perturb": {NAME: STRENGTH or a lo-hi pair}} (docs/dataset.md).',
    )
    workers: int = option(
        1, "--workers", "Local worker processes (or Ray actors with --ray).", lo=1, aliases=("-w",)
    )
    batch_size: int = option(
        DEFAULT_BATCH_SIZE,
        "--batch-size",
        "Environments each worker runs in lockstep (one batched policy call per step). The dataset is the "
        "same for any value; larger is faster until memory or cores run out.",
        lo=1,
        aliases=("-b",),
    )
    ray: str | None = option(
        None,
        "--ray",
        "Run workers as Ray actors: bare --ray starts a local Ray instance, --ray ADDRESS joins a cluster.",
    )
    save_images: bool = option(False, "--save-images", "Store camera images (uint8) per step.")
    save_hidden: bool = option(
        False,
        "--save-hidden",
        "Store the policy's hidden state (f16) per step: hidden (this position) and hidden_mean (averaged over "
        "the chunk: SAFE's feature, which the SAFE models then read).",
    )
    samples: int = option(
        4, "--samples", "K chunks sampled per computed chunk (K >= 2 for sample signals).", lo=1
    )
    signal_stats: str | None = option(
        None,
        "--signal-stats",
        "Fitted signal statistics (PATH for PATH.json + PATH.safetensors), or 'none'; default: the "
        "statistics beside the policy's weights if there are any.",
    )
    env: str | None = option(
        None,
        "--env",
        "Any Gymnasium environment instead of our tasks: a registered id (gym_pusht/PushT-v0) or a factory "
        "MODULE:FUNC / FILE.py:FUNC (docs/byo-robot.md).",
    )
    env_kwargs: str | None = option(
        None, "--env-kwargs", "JSON object of keyword arguments for the --env factory or gymnasium.make."
    )
    obs: tuple[str, ...] = option(
        (),
        "--obs",
        "--env observation -> policy input: state=KEY[,KEY], image_<camera>=KEY, task=KEY, robot_state=KEY "
        "(repeatable; default state=state).",
        commas=False,
    )
    task_text: str = option("", "--task-text", "--env: the instruction when the observation has none.")
    success: str = option(
        "is_success",
        "--success",
        "--env: info key (bool) or MODULE:FUNC(info, obs) -> bool deciding success.",
    )
    failure: str | None = option(
        None,
        "--failure",
        "--env: MODULE:FUNC(info, obs, steps) -> (failure_step, failure_type); default: last step, 'unknown'.",
    )
    robot: Path | None = option(
        None,
        "--robot",
        "--env: the robot description (salus.data.RobotSpec JSON, docs/byo-robot.md) of the mapped state; "
        "stored in the dataset, and the robot-state signals read the state through it.",
    )
    overwrite: bool = option(False, "--overwrite", "Delete an existing dataset at --out first.")

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_options(self)
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
        self.config()  # every other option is checked where the configuration is built

    def argv(self) -> list[str]:
        """The ``salus collect`` arguments that run this job."""
        flags = {n: o.flag for n, o in job_options(self).items() if n != "policy"}  # always written
        return ["collect", "--policy", self.policy, *option_words(self, flags)]

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
