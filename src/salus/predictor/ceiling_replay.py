"""The Monte-Carlo ceiling of at-risk failure prediction (``salus ceiling``).

At elapsed time s (step t = s x control rate) the at-risk metric ranks the episodes still running
with no failure event yet by whether they fail later. No predictor can do better than one that
knows each episode's probability of failing given everything that happened up to t; this module
estimates that probability and reports the ROC-AUC it reaches, the **ceiling** of the metric:

1. For a sample of at-risk episodes (random, seeded, at most ``sample`` per time, drawn from all
   episodes or from the test part of a split), replay the episode's recorded actions up to t in our
   simulator (deterministic given the reset seed and the actions, see
   :func:`salus.sim.handover.replay_handovers`), so the scene, the robot and every perturbation are
   exactly where they were, and the policy receives exactly the observation it received then
   (checked: the state it sees at t must equal the recorded one, bit for bit).
2. Let **the same policy** continue K times (lockstep, one batched call per step), each with a fresh
   chunk started at t and its own noise seed (never the recording's: collection seeds the policy
   with the episode's environment seed), and with the observation- and action-noise wrappers
   re-seeded at t (:func:`salus.sim.perturbations.reseed_noise`).
3. P(fail) = the share of failed continuations; its ROC-AUC against the recorded outcome, with a 95%
   bootstrap interval over episodes (:mod:`salus.predictor.protocol`'s ``roc_auc``,
   ``bootstrap_auroc``, ``ci95``), overall, per task, seen/unseen (with a split) and on unperturbed
   episodes.

Checks: the plain replay of all recorded actions must reproduce the recorded outcome (an episode
that does not is reported and left out). Exogenous events drawn at reset cannot be redrawn after
the fact: a push whose step lies at or after t (or has not come yet) would hit every continuation
in the same way, so those episodes are flagged and the main view leaves them out
(``with_push_pending`` keeps them).

Resumable and parallel: each episode's continuations are appended to ``OUT/continuations.jsonl`` as
they finish (:mod:`salus.collect.jobs`); a rerun computes only what is missing, and a record made
with other settings (K, seed, policy) stays in the file, unused. Deterministic: a job's result
depends only on the episode, its steps and the seeds, so any number of workers gives the same bits.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus._checks import SEED_MAX
from salus.errors import DatasetError, InvalidInputError

from . import protocol
from .ceiling import CEILING_FILE, ceiling_auroc, episode_key
from .config import SplitConfig, holdout_for_seed
from .episodes import episodes_from_dataset, split_episodes

__all__ = [
    "CeilingConfig",
    "CeilingJob",
    "CeilingResult",
    "run_ceiling",
    "run_ceiling_job",
    "continuation_seeds",
    "draw_sample",
    "prediction_step",
    "summarize",
    "CEILING_FILE",
    "RECORDS_FILE",
    "DEFAULT_TIMES_S",
    "DEFAULT_K",
    "DEFAULT_SAMPLE",
]

RECORDS_FILE = "continuations.jsonl"
DEFAULT_TIMES_S = (1.0, 2.0, 3.0)
DEFAULT_K = 8
DEFAULT_SAMPLE = 200
_CONTINUATION_TAG = 0xCE11  # separates the continuation seed streams from every other use of a seed
_SAMPLE_TAG = 0x5A3E

SAMPLE_RULE = (
    "per time: the episodes at risk at that step (still running, no failure event yet; "
    "salus.predictor.protocol.at_risk_scores) among the pool, drawn uniformly without replacement "
    "with numpy default_rng(SeedSequence([seed, step, 0x5A3E])), at most `cap` of them"
)
SEED_RULE = (
    "continuation k of an episode at step t: policy noise seed and world noise seed from "
    "SeedSequence([seed, episode seed, t, 0xCE11]).generate_state(2K), policy seeds kept distinct "
    "from each other and from the episode seed (the recording's policy seed)"
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class CeilingConfig:
    """What :func:`run_ceiling` measures.

    ``times_s``: at-risk times in seconds (step = round(s x control rate)); ``at_T``: also the time of
    the protocol's "SAFE prediction" view, keyed ``"T"`` (its step is T - 2 for T the shortest
    rollout of the dataset, the step whose score that view reads; :func:`prediction_step`);
    ``k``: continuations per episode and time; ``sample``: at most this many at-risk episodes per time; ``seed``: the sample,
    the continuation seeds and the bootstrap; ``workers``: processes; ``policy``: the policy spec
    (None: the dataset's own); ``split_seed``: draw from the test part of that split
    (:class:`salus.predictor.config.SplitConfig` defaults, ``holdout_tasks`` unseen) instead of
    from every episode; ``n_boot``: bootstrap resamples of the intervals.
    """

    times_s: tuple[float, ...] = DEFAULT_TIMES_S
    k: int = DEFAULT_K
    sample: int = DEFAULT_SAMPLE
    seed: int = 0
    workers: int = 1
    policy: str | None = None
    split_seed: int | None = None
    holdout_tasks: tuple[str, ...] = ()
    n_boot: int = 1000
    at_T: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "times_s", tuple(self.times_s))
        object.__setattr__(self, "holdout_tasks", tuple(self.holdout_tasks))
        if not self.times_s:
            raise InvalidInputError("times_s needs at least one time in seconds (> 0), e.g. (1, 2, 3)")
        for t in self.times_s:
            if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
                raise InvalidInputError(
                    f"every at-risk time must be a finite number of seconds > 0, got {t!r}"
                )
        if len(set(self.times_s)) != len(self.times_s):
            raise InvalidInputError(f"at-risk times must be distinct, got {list(self.times_s)}")
        for name, lo in (("k", 1), ("sample", 1), ("workers", 1), ("n_boot", 0)):
            value = getattr(self, name)
            if not _is_int(value) or value < lo:
                raise InvalidInputError(f"{name} must be an integer >= {lo}, got {value!r}")
        if not _is_int(self.seed) or not 0 <= self.seed <= SEED_MAX:
            raise InvalidInputError(f"seed must be an integer in [0, {SEED_MAX}], got {self.seed!r}")
        if self.split_seed is not None and (
            not _is_int(self.split_seed) or not 0 <= self.split_seed <= SEED_MAX
        ):
            raise InvalidInputError(
                f"split_seed must be None or an integer in [0, {SEED_MAX}], got {self.split_seed!r}"
            )
        if self.holdout_tasks and self.split_seed is None:
            raise InvalidInputError("holdout tasks define the unseen part of a split: give a split seed too")
        if not isinstance(self.at_T, bool):
            raise InvalidInputError(f"at_T must be True or False, got {self.at_T!r}")
        if self.policy is not None and (not isinstance(self.policy, str) or not self.policy):
            raise InvalidInputError(f"policy must be a spec such as 'builtin' or None, got {self.policy!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CeilingJob:
    """One recorded episode and the steps to continue it from (picklable: runs in a worker)."""

    key: str
    task: str
    seed: int  # the environment's reset seed (also the recording's policy noise seed)
    perturbations: tuple[tuple[str, float], ...]
    actions: np.ndarray  # (T, A) the recorded actions
    recorded: tuple[bool, int, str]  # (success, failure_step, failure_type) as recorded
    steps: tuple[int, ...]
    k: int
    mc_seed: int
    policy: str
    policy_kwargs: Mapping[str, Any] = field(default_factory=dict)
    states: np.ndarray | None = None  # (T, D) the states the policy acted on, as recorded
    image_size: int = 96
    max_steps: int | None = None


def continuation_seeds(mc_seed: int, episode_seed: int, step: int, k: int) -> list[tuple[int, int]]:
    """(policy noise seed, world noise seed) of each of the ``k`` continuations of an episode at
    ``step``: a pure function of the arguments; the policy seeds are distinct and never the
    episode's seed (the one its recording's policy noise was seeded with)."""
    words = np.random.SeedSequence([int(mc_seed), int(episode_seed), int(step), _CONTINUATION_TAG])
    state = words.generate_state(2 * k, dtype=np.uint64)
    policy: list[int] = []
    for i in range(k):
        s = int(state[2 * i] % (2**31))
        while s == int(episode_seed) or s in policy:
            s = (s + 1) % (2**31)
        policy.append(s)
    return [(policy[i], int(state[2 * i + 1] % (2**31))) for i in range(k)]


# ------------------------------------------------------------------------------------ the worker
_POLICIES: dict[str, Any] = {}


def _policy(spec: str, kwargs: Mapping[str, Any], rows: int) -> Any:
    """The policy of a worker process, built once per (spec, kwargs, rows)."""
    key = json.dumps([spec, dict(kwargs), rows], sort_keys=True, default=str)
    if key not in _POLICIES:
        from salus.policies import load_policy

        _POLICIES.clear()
        policy = load_policy(spec, **dict(kwargs))
        set_rows = getattr(policy, "set_compute_batch", None)
        if set_rows is not None:
            set_rows(rows)  # every forward pass on exactly K rows: a row's bits never depend on the others
        _POLICIES[key] = policy
    return _POLICIES[key]


_SOURCES: dict[tuple[Any, ...], Any] = {}


def _source(image_size: int, cameras: tuple[str, ...], max_steps: int | None) -> Any:
    """The worker's simulators, as collection keeps them (:class:`~salus.collect.envs.SimSource`:
    one per task and lockstep slot for unperturbed episodes, kept across jobs; a fresh wrapped one
    per perturbed episode): building a renderer costs more than a whole continuation's physics."""
    from salus.collect.envs import SimSource

    key = (image_size, cameras, max_steps)
    if key not in _SOURCES:
        for old in _SOURCES.values():
            old.close()
        _SOURCES.clear()
        _SOURCES[key] = SimSource(image_size=image_size, cameras=cameras, max_steps=max_steps)
    return _SOURCES[key]


def _continue(job: CeilingJob, envs: list[Any], policy: Any, t: int) -> dict[str, Any]:
    """The K continuations of ``job`` from step ``t``: lockstep replay of the recorded actions up to
    t, then the policy with fresh noise (policy and world) in every environment."""
    from salus.policies.harness import stack_observations
    from salus.sim.handover import episode_outcome
    from salus.sim.perturbations import reseed_noise
    from salus.sim.rollout import run_lockstep

    k, actions = job.k, job.actions
    seeds = continuation_seeds(job.mc_seed, job.seed, t, k)
    count = [0]
    # No camera images before the one observation of the prefix the policy sees (the one at t):
    # the prefix's actions are recorded, and rendering costs most of a step. Not when observation
    # noise is on, whose generator also draws the images' noise (the state check at t proves it).
    bases = [env.unwrapped for env in envs]
    cameras = [base.cameras for base in bases]
    blind = not any(name == "obs_noise" and strength > 0 for name, strength in job.perturbations)
    if blind:
        for base in bases:
            base.cameras = ()
    seen_at_t: list[np.ndarray] = []
    executed: list[list[np.ndarray]] = [[] for _ in range(k)]
    alive = [True] * k

    def act(obs: list[Any]) -> np.ndarray:
        s = count[0]
        count[0] += 1
        if s == t - 1 and blind:
            for base, cams in zip(bases, cameras, strict=True):
                base.cameras = cams
        if s < t:
            return np.repeat(actions[s][None], k, axis=0)
        if s == t:  # the fork: a fresh chunk and fresh noise in every continuation
            policy.reset()
            for b, (policy_seed, world_seed) in enumerate(seeds):
                policy.reset(env_index=b, seed=policy_seed)
                reseed_noise(envs[b], world_seed)
            seen_at_t.extend(np.asarray(o["state"], dtype=np.float32) for o in obs)
        a = np.asarray(policy.act(stack_observations(obs)), dtype=np.float32)
        for b in range(k):
            if alive[b]:
                executed[b].append(a[b])
        return a

    def on_done(b: int, _end: Any) -> None:
        alive[b] = False

    try:
        ends = run_lockstep(envs, act, [int(job.seed)] * k, on_done=on_done)
    finally:
        for base, cams in zip(bases, cameras, strict=True):
            base.cameras = cams
    short = [b for b, end in enumerate(ends) if end.steps <= t]
    if short:
        raise InvalidInputError(
            f"{job.key}: the replay ended before step {t} in continuation(s) {short}; "
            "the episode does not replay deterministically"
        )
    state_match = None
    if job.states is not None:
        state_match = all(np.array_equal(s, job.states[t]) for s in seen_at_t)
    out = []
    for b, end in enumerate(ends):
        done = np.stack(executed[b]) if executed[b] else np.zeros((0, actions.shape[1]), np.float32)
        out.append(
            {
                **episode_outcome(end),
                "policy_seed": seeds[b][0],
                "world_seed": seeds[b][1],
                "actions_sha1": hashlib.sha1(done.tobytes()).hexdigest()[:16],
            }
        )
    return {"step": int(t), "state_match": state_match, "continuations": out}


def run_ceiling_job(job: CeilingJob) -> dict[str, Any]:
    """One episode: the plain replay of all its recorded actions (must give the recorded outcome;
    if it does not, no continuation is run), then K continuations from each step of ``job.steps``.
    Returns the JSON record appended to ``continuations.jsonl``."""
    from salus.sim.handover import NO_HANDOVER, HandoverJob, replay_handovers

    t0 = time.perf_counter()
    actions = np.asarray(job.actions, dtype=np.float32)
    bad = [t for t in job.steps if not 0 < t < len(actions)]
    if bad:
        raise InvalidInputError(f"{job.key}: continuation steps must be in [1, {len(actions)}), got {bad}")
    try:
        plain = replay_handovers(
            HandoverJob(
                job.key, job.task, job.seed, job.perturbations, actions, (NO_HANDOVER,), job.max_steps
            )
        )[0]
        replay: dict[str, Any] = {
            k: v
            for k, v in plain.to_dict().items()
            if k in ("success", "failure_step", "failure_type", "length")
        }
    except InvalidInputError as exc:
        replay = {"error": str(exc)}
    matched = (replay.get("success"), replay.get("failure_step"), replay.get("failure_type")) == job.recorded
    steps: list[dict[str, Any]] = []
    if matched:
        policy = _policy(job.policy, job.policy_kwargs, job.k)
        config = getattr(policy, "config", None)
        cameras = tuple(getattr(config, "cameras", None) or ("front", "wrist"))
        size = int(getattr(config, "image_size", None) or job.image_size)
        source = _source(size, cameras, job.max_steps)
        made = [source.make(job.task, job.perturbations, slot=b) for b in range(job.k)]
        job = _with_actions(job, actions)
        try:
            steps = [_continue(job, [env for env, _ in made], policy, t) for t in job.steps]
        finally:
            for env, kept in made:
                if not kept:
                    env.close()
    return {
        "key": job.key,
        "seed": int(job.seed),
        "task": job.task,
        "k": int(job.k),
        "mc_seed": int(job.mc_seed),
        "policy": _policy_id(job.policy, job.policy_kwargs),
        "replay": replay,
        "replay_matches": bool(matched),
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _with_actions(job: CeilingJob, actions: np.ndarray) -> CeilingJob:
    from dataclasses import replace

    return replace(job, actions=actions)


def _policy_id(spec: str, kwargs: Mapping[str, Any]) -> str:
    return json.dumps({"spec": spec, "kwargs": dict(kwargs)}, sort_keys=True, default=str)


# ------------------------------------------------------------------------------------ the run
def _check_dataset(ds: Any) -> dict[str, Any]:
    """The dataset's collection settings; refused when the ceiling cannot replay its episodes."""
    attrs = dict(getattr(ds, "attrs", {}) or {})
    collect = attrs.get("collect")
    env = attrs.get("env") or {}
    other = (collect.get("env") if isinstance(collect, Mapping) else None) or (
        env.get("simulator") if env.get("simulator") not in (None, "salus.sim") else None
    )
    if other:
        raise InvalidInputError(
            f"{ds.path} was recorded in {other!r} (`salus collect --env` or a user loop), not in our "
            "simulator: the ceiling needs our simulator (salus.sim), where an episode replays "
            "deterministically from its seed and actions"
        )
    if not isinstance(collect, Mapping):
        raise DatasetError(
            f"{ds.path} carries no collection settings (attrs 'collect'): the ceiling replays episodes "
            "collected by `salus collect` in our simulator"
        )
    if "action" not in ds.keys:
        raise DatasetError(
            f"{ds.path} has no step key 'action' (the recorded actions the ceiling replays); "
            f"step keys: {sorted(ds.keys)}"
        )
    seeds = np.asarray(ds.seed)
    if seeds.size != len(ds) or (seeds.size and int(seeds.min()) < 0):
        raise DatasetError(
            f"{ds.path} lacks the episodes' reset seeds (meta 'seed' must hold one seed >= 0 per episode); "
            "the ceiling replays each episode from its seed"
        )
    return dict(collect)


def _perturbation_pairs(records: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, float], ...]:
    return tuple((str(r["name"]), float(r["strength"])) for r in records)


def _perturbed(records: Sequence[Mapping[str, Any]]) -> bool:
    return any(float(r.get("strength", 0.0)) > 0.0 for r in records)


def _push_pending(records: Sequence[Mapping[str, Any]], step: int) -> bool:
    """A push that had not happened before ``step`` (its step >= step, or never reached)."""
    for r in records:
        if r.get("name") == "push" and float(r.get("strength", 0.0)) > 0.0:
            at = (r.get("params") or {}).get("step", -1)
            if not isinstance(at, int | float) or at < 0 or at >= step:
                return True
    return False


def prediction_step(episodes: Sequence[Any]) -> int:
    """The step of the ceiling "at T": T - 2 for T the protocol's common T (the shortest rollout,
    :func:`salus.predictor.protocol.safe_times`). Its "SAFE prediction" view reads the running
    score after T - 1 steps (index T - 2) on the episodes with no event before T."""
    times = protocol.safe_times(episodes)
    return min(times.values()) - 2 if times else -1


def draw_sample(episodes: Sequence[Any], pool: Sequence[int], step: int, cap: int, seed: int) -> list[int]:
    """The sample at one ``step`` (see ``SAMPLE_RULE``): indices into ``episodes``, sorted."""
    chosen = [episodes[i] for i in pool]
    pos, _, _ = protocol.at_risk_scores(chosen, [np.zeros(ep.length) for ep in chosen], step)
    candidates = np.asarray(pool, dtype=int)[pos]
    if candidates.size > cap:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(step), _SAMPLE_TAG]))
        candidates = rng.choice(candidates, size=cap, replace=False)
    return sorted(int(i) for i in candidates)


def _record_ok(rec: Any) -> bool:
    return (
        isinstance(rec.get("key"), str)
        and isinstance(rec.get("replay"), dict)
        and isinstance(rec.get("steps"), list)
        and all(
            isinstance(s, dict)
            and isinstance(s.get("step"), int)
            and isinstance(s.get("continuations"), list)
            for s in rec["steps"]
        )
    )


@dataclass
class _Done:
    """What the results file already holds for one episode under the current settings."""

    replay: dict[str, Any]
    matches: bool
    steps: dict[int, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def _index(records: Sequence[dict[str, Any]], jobs: Mapping[str, CeilingJob]) -> dict[str, _Done]:
    """The finished continuations usable now: same episode (key, seed, task), K, seed and policy."""
    out: dict[str, _Done] = {}
    for rec in records:
        job = jobs.get(rec["key"])
        if job is None or (
            rec.get("seed"),
            rec.get("task"),
            rec.get("k"),
            rec.get("mc_seed"),
            rec.get("policy"),
        ) != (
            job.seed,
            job.task,
            job.k,
            job.mc_seed,
            _policy_id(job.policy, job.policy_kwargs),
        ):
            continue
        done = out.setdefault(rec["key"], _Done(rec["replay"], bool(rec.get("replay_matches"))))
        done.replay, done.matches = rec["replay"], bool(rec.get("replay_matches"))
        done.seconds += float(rec.get("seconds") or 0.0)
        for entry in rec["steps"]:
            if len(entry["continuations"]) == job.k:
                done.steps[int(entry["step"])] = entry
    return out


def _missing(job: CeilingJob, done: _Done | None) -> CeilingJob | None:
    """``job`` reduced to the steps not computed yet (None: nothing left)."""
    from dataclasses import replace

    if done is None:
        return job
    if not done.matches:
        return None  # the replay does not reproduce the recording: deterministic, no use rerunning
    todo = tuple(t for t in job.steps if t not in done.steps)
    return replace(job, steps=todo) if todo else None


def _view(rows: Sequence[Mapping[str, Any]], n_boot: int, seed: int) -> dict[str, Any]:
    labels = np.array([r["failed"] for r in rows], dtype=bool)
    p = np.array([r["p_fail"] for r in rows], dtype=np.float64)
    if not rows:
        return {"n": 0, "n_failed": 0, "auroc": math.nan, "ci95": [math.nan, math.nan]}
    boot = protocol.bootstrap_auroc(labels, p[None], n_boot, seed)[0]
    return {
        "n": int(labels.size),
        "n_failed": int(labels.sum()),
        "auroc": protocol.roc_auc(labels, p),
        "ci95": list(protocol.ci95(boot)),
        "mean_p_fail": float(p.mean()),
        "failure_rate": float(labels.mean()),
        "brier": float(np.mean((p - labels) ** 2)),
    }


def summarize(
    rows_by_time: Mapping[str, Sequence[Mapping[str, Any]]], *, n_boot: int, seed: int, split: bool
) -> dict[str, dict[str, Any]]:
    """The views of each time from its per-episode rows (``failed``, ``p_fail``, ``task``,
    ``group``, ``perturbed``, ``push_pending``): ``all`` (pending pushes apart), ``with_push_pending``,
    ``unperturbed``, ``seen`` / ``unseen`` (with a split) and ``task:NAME``."""
    out: dict[str, dict[str, Any]] = {}
    for tk, rows in rows_by_time.items():
        clean = [r for r in rows if not r["push_pending"]]
        views = {
            "all": _view(clean, n_boot, seed),
            "with_push_pending": _view(rows, n_boot, seed),
            "unperturbed": _view([r for r in clean if not r["perturbed"]], n_boot, seed),
        }
        if split:
            for g in ("seen", "unseen"):
                views[g] = _view([r for r in clean if r["group"] == g], n_boot, seed)
        for task in sorted({r["task"] for r in rows}):
            views[f"task:{task}"] = _view([r for r in clean if r["task"] == task], n_boot, seed)
        out[tk] = views
    return out


@dataclass
class CeilingResult:
    """The measured ceiling: per time (``"2s"``) the sample and the views' ROC-AUCs with intervals."""

    data: str
    policy: str
    recorded_policy: str | None
    config: CeilingConfig
    control_hz: float
    pool: dict[str, Any]
    times: dict[str, dict[str, Any]]
    replay_mismatches: list[dict[str, Any]]
    continuations: int
    job_s: float  # simulation time of the used records, summed over episodes (one worker's cost)
    wall_s: float  # this run's wall time (all but the records found done)

    def auroc(self, time: float | str = "2s", view: str = "all") -> float:
        return ceiling_auroc(self.to_dict(), time, view)

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": "Monte-Carlo ceiling of the at-risk ROC-AUC (salus.predictor.ceiling_replay)",
            "data": self.data,
            "policy": self.policy,
            "recorded_policy": self.recorded_policy,
            "k": self.config.k,
            "times_s": list(self.config.times_s),
            "at_T": "T: the step of the SAFE-prediction view (T - 2, T the shortest rollout)"
            if self.config.at_T
            else None,
            "control_hz": self.control_hz,
            "config": self.config.to_dict(),
            "sample": {"rule": SAMPLE_RULE, "cap": self.config.sample, **self.pool},
            "seeds": {
                "seed": self.config.seed,
                "continuations": SEED_RULE,
                "bootstrap": f"salus.predictor.protocol.bootstrap_auroc(n_boot={self.config.n_boot}, seed={self.config.seed})",
                "split_seed": self.config.split_seed,
            },
            "times": self.times,
            "replay_mismatches": self.replay_mismatches,
            "continuations": self.continuations,
            "stage": {"job_s": round(self.job_s, 1), "wall_s": round(self.wall_s, 1)},
        }

    def table_lines(self) -> list[str]:
        """A short markdown table: ROC-AUC [95% interval] n (failed) per time and view."""
        views = ["all", "with_push_pending", "unperturbed"]
        if self.config.split_seed is not None:
            views += ["seen", "unseen"]
        head = {
            "all": "all (pending pushes apart)",
            "with_push_pending": "with pending pushes",
            "unperturbed": "unperturbed",
            "seen": "seen tasks",
            "unseen": "unseen tasks",
        }
        lines = [
            f"Monte-Carlo ceiling of the at-risk ROC-AUC: K = {self.config.k} continuations of "
            f"{self.policy}, at most {self.config.sample} episodes per time",
            "",
            "| time | " + " | ".join(head[v] for v in views) + " |",
            "|---|" + "---|" * len(views),
        ]

        def cell(v: Mapping[str, Any]) -> str:
            if not v.get("n"):
                return "-"
            lo, hi = v["ci95"]
            auc = "nan" if not math.isfinite(v["auroc"]) else f"{v['auroc']:.3f}"
            ci = "" if not math.isfinite(lo) else f" [{lo:.2f}, {hi:.2f}]"
            return f"{auc}{ci} n={v['n']} ({v['n_failed']})"

        for tk, entry in self.times.items():
            lines.append(f"| {tk} | " + " | ".join(cell(entry["views"].get(v, {})) for v in views) + " |")
        tasks = sorted({v for e in self.times.values() for v in e["views"] if v.startswith("task:")})
        if tasks:
            lines += [
                "",
                "| time | " + " | ".join(t[5:] for t in tasks) + " |",
                "|---|" + "---|" * len(tasks),
            ]
            for tk, entry in self.times.items():
                lines.append(f"| {tk} | " + " | ".join(cell(entry["views"].get(t, {})) for t in tasks) + " |")
        if self.replay_mismatches:
            lines += [
                "",
                f"left out: {len(self.replay_mismatches)} episode(s) whose replay differs from the recording",
            ]
        return lines


def run_ceiling(
    data: str | Path,
    out: str | Path,
    config: CeilingConfig | None = None,
    *,
    say: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CeilingResult:
    """Measure the Monte-Carlo ceiling of ``data`` (see the module docstring); appends to
    ``OUT/continuations.jsonl``, writes and returns ``OUT/ceiling.json``'s content.
    ``progress(done, total)`` counts episodes."""
    from salus._json import to_json
    from salus.collect.jobs import read_records, run_jobs
    from salus.data import SalusDataset
    from salus.policies import PolicySpec

    def note(msg: str) -> None:
        if say is not None:
            say(msg)

    t0 = time.perf_counter()
    cfg = config or CeilingConfig()
    out = Path(out)
    ds = SalusDataset(data)
    collect = _check_dataset(ds)
    attrs = dict(ds.attrs)
    recorded = (attrs.get("policy") or {}).get("spec") or collect.get("policy")
    spec = cfg.policy or recorded
    if not spec:
        raise DatasetError(f"{ds.path} does not say which policy collected it; pass --policy SPEC")
    parsed = PolicySpec.parse(spec).check()
    if recorded and spec != recorded:
        note(f"note: continuing with {spec!r}; the episodes were collected with {recorded!r}")
    kwargs = dict(collect.get("policy_kwargs") or {})
    if int(collect.get("num_samples") or 1) > 1 and "num_samples" not in parsed.options:
        kwargs["num_samples"] = 1  # the executed action is sample 0 either way; the others feed signals only

    eps = episodes_from_dataset(ds, embeddings=False, extras=())
    hz = float(eps.control_hz)
    longest = max(ep.length for ep in eps.episodes)
    steps = {}
    for s in cfg.times_s:
        step = int(round(s * hz))
        if step < 1 or step >= longest:
            raise InvalidInputError(
                f"at-risk time {s:g} s is step {step} at {hz:g} Hz, beyond every episode of {ds.path} "
                f"(the longest runs {longest} steps = {longest / hz:g} s); allowed: times whose step is in "
                f"[1, {longest - 1}], i.e. in [{1 / hz:g}, {(longest - 1) / hz:g}] s"
            )
        steps[f"{s:g}s"] = step
    if cfg.at_T:
        step = prediction_step(eps.episodes)
        if step < 1:
            raise InvalidInputError(
                f"the ceiling at T needs T >= 3 steps; the shortest episode of {ds.path} runs {step + 2}"
            )
        steps["T"] = step
    group = {i: "all" for i in range(len(eps))}
    pool: list[int] = list(range(len(eps)))
    pool_info: dict[str, Any] = {"pool": "every episode of the dataset", "pool_size": len(pool)}
    if cfg.split_seed is not None:
        # "rotate": the task the first split seed of `salus train --holdout-task rotate` holds out
        holdout = holdout_for_seed(cfg.holdout_tasks, eps.tasks, 0)
        split = split_episodes(eps, SplitConfig(holdout_tasks=holdout, seed=cfg.split_seed))
        group = {i: "seen" for i in split.test_seen} | {i: "unseen" for i in split.test_unseen}
        pool = sorted(group)
        pool_info = {
            "pool": f"the test episodes of split seed {cfg.split_seed} (SplitConfig defaults, "
            f"holdout tasks {list(holdout)} unseen)",
            "pool_size": len(pool),
        }
    samples = {tk: draw_sample(eps.episodes, pool, step, cfg.sample, cfg.seed) for tk, step in steps.items()}
    by_episode: dict[int, set[int]] = {}
    for tk, idx in samples.items():
        for i in idx:
            by_episode.setdefault(i, set()).add(steps[tk])

    index = np.asarray(ds.episode_index)
    keys = {i: episode_key(index[i]) for i in range(len(eps))}
    actions = ds.episode_arrays("action", sorted(by_episode)) if by_episode else []
    states = (
        ds.episode_arrays("state", sorted(by_episode))
        if by_episode and "state" in ds.keys
        else [None] * len(by_episode)
    )
    jobs: dict[str, CeilingJob] = {}
    for i, act, st in zip(sorted(by_episode), actions, states, strict=True):
        ep = eps.episodes[i]
        jobs[keys[i]] = CeilingJob(
            key=keys[i],
            task=ep.task,
            seed=int(ep.seed),
            perturbations=_perturbation_pairs(ep.perturbations),
            actions=np.asarray(act, dtype=np.float32),
            recorded=(bool(ep.success), int(ep.failure_step), str(ep.failure_type)),
            steps=tuple(sorted(by_episode[i])),
            k=cfg.k,
            mc_seed=cfg.seed,
            policy=spec,
            policy_kwargs=kwargs,
            states=None if st is None else np.asarray(st, dtype=np.float32),
            image_size=int(collect.get("image_size") or 96),
            max_steps=collect.get("max_steps"),
        )

    path = out / RECORDS_FILE
    out.mkdir(parents=True, exist_ok=True)
    skipped: list[int] = []
    done = _index(read_records(path, _record_ok, skipped), jobs)
    if skipped:
        note(
            f"{path}: ignored {len(skipped)} line(s) that are no finished record; their episodes are simulated again"
        )
    todo = [j for j in (_missing(job, done.get(key)) for key, job in jobs.items()) if j is not None]
    total = len(jobs)
    n_sims = sum(len(j.steps) for j in todo) * cfg.k
    note(
        f"{total} episode(s) sampled ({', '.join(f'{tk}: {len(v)}' for tk, v in samples.items())}); "
        f"{len(todo)} to simulate ({n_sims} continuations of K = {cfg.k}) on {cfg.workers} worker(s)"
    )
    finished = [total - len(todo)]
    if progress is not None:
        progress(finished[0], total)

    def on_record(_rec: dict[str, Any]) -> None:
        finished[0] += 1
        if progress is not None:
            progress(finished[0], total)

    run_jobs(todo, run_ceiling_job, path, workers=cfg.workers, on_record=on_record)
    done = _index(read_records(path, _record_ok), jobs)

    mismatches = []
    for key, job in jobs.items():
        d = done[key]
        reason = None
        if not d.matches:
            reason = "replay outcome differs from the recording"
        elif any(d.steps[t].get("state_match") is False for t in job.steps):
            reason = "the replayed observation at the fork differs from the recorded one"
        if reason is not None:
            mismatches.append(
                {
                    "key": key,
                    "reason": reason,
                    "recorded": list(job.recorded),
                    "replay": d.replay,
                }
            )
    left_out = {m["key"] for m in mismatches}
    rows_by_time: dict[str, list[dict[str, Any]]] = {}
    times: dict[str, dict[str, Any]] = {}
    for tk, idx in samples.items():
        step = steps[tk]
        rows = []
        for i in idx:
            key = keys[i]
            if key in left_out:
                continue
            ep = eps.episodes[i]
            conts = done[key].steps[step]["continuations"]
            n_fail = sum(not c["success"] for c in conts)
            rows.append(
                {
                    "key": key,
                    "task": ep.task,
                    "group": group[i],
                    "failed": bool(ep.failed),
                    "failure_type": ep.failure_type,
                    "perturbed": _perturbed(ep.perturbations),
                    "perturbations": [p[0] for p in _perturbation_pairs(ep.perturbations)],
                    "push_pending": _push_pending(ep.perturbations, step),
                    "p_fail": n_fail / len(conts),
                    "n_fail": n_fail,
                }
            )
        rows_by_time[tk] = rows
        times[tk] = {
            "step": step,
            "sampled": len(idx),
            "left_out": sorted(keys[i] for i in idx if keys[i] in left_out),
            "push_pending": sum(r["push_pending"] for r in rows),
            "episodes": rows,
        }
    views = summarize(rows_by_time, n_boot=cfg.n_boot, seed=cfg.seed, split=cfg.split_seed is not None)
    for tk in times:
        times[tk]["views"] = views[tk]
    result = CeilingResult(
        data=str(data),
        policy=spec,
        recorded_policy=recorded,
        config=cfg,
        control_hz=hz,
        pool=pool_info,
        times=times,
        replay_mismatches=mismatches,
        continuations=sum(len(j.steps) for k, j in jobs.items() if k not in left_out) * cfg.k,
        job_s=sum(d.seconds for d in done.values()),
        wall_s=time.perf_counter() - t0,
    )
    (out / CEILING_FILE).write_text(json.dumps(to_json(result.to_dict(), non_finite="null"), indent=1) + "\n")
    return result
