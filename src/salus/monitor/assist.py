"""``salus assist``: the closed-loop evaluation of the monitor on fresh episodes (resumable, parallel).

1. Check that the fresh dataset was collected like the benchmark's (policy, tasks, perturbation mix,
   signals) and that none of its seeds occurs in the benchmark dataset.
2. Score every method on the fresh episodes, with thresholds calibrated on the benchmark's
   calibration successes (:func:`salus.predictor.evaluate_detailed` with ``test=``); the selected
   model's bands must equal the ones its checkpoint gives the monitor.
3. Alarm steps per method and alpha (the operating points), and the equal-cost sweep: per group,
   thresholds on the running max at fixed help rates for every method and random requests at
   those rates (:mod:`salus.predictor.closed_loop`).
4. Counterfactual episodes: per fresh episode, the replay of the policy alone (must reproduce the
   recorded outcome; an episode that does not is reported and left out) and a handover to the
   scripted expert at every step some plan or sweep point asks for (but after the failure event:
   late, a failure whatever the person does), plus step 0 (the ceiling), in worker processes; each
   episode's outcomes are appended to ``OUT/handovers.jsonl`` as it finishes, so a killed run
   resumes where it stopped, and a run asking for more steps simulates only the new ones.
5. ``OUT/closed_loop.json``: the metrics (pooled, seen/unseen, per task; per alpha and equal cost).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import DatasetError, InvalidInputError

__all__ = ["run_assist", "check_fresh", "handover_jobs", "HANDOVER_FILE", "RESULT_FILE"]

# The open-loop metrics of the fresh episodes (the confirmation set) reported beside the test set.
OPEN_LOOP_METRICS = ("safe", "at_risk_2s", "at_risk_2s_unperturbed", "safe_prediction")


def _open_loop(report: dict[str, Any]) -> dict[str, Any]:
    """Per method, seen and unseen: the confirmation set's open-loop ROC-AUC (``OPEN_LOOP_METRICS``)
    with its bootstrap interval and episode count, as the protocol scored it."""
    from salus.predictor.evaluate import metric_value

    out: dict[str, Any] = {}
    for m in report["methods"]:
        row: dict[str, Any] = {}
        for g in ("seen", "unseen"):
            res = m.get(g) or {}
            for key in OPEN_LOOP_METRICS:
                try:
                    value = metric_value(res, key)
                except (KeyError, ValueError):
                    continue
                row[f"{g}/{key}"] = {
                    "auroc": value,
                    "ci95": (res.get("ci95") or {}).get(key),
                    "n": res.get("n"),
                }
        out[m["name"]] = row
    return out


HANDOVER_FILE = "handovers.jsonl"
RESULT_FILE = "closed_loop.json"
_SAME = ("policy", "tasks", "mix", "max_steps", "image_size", "num_samples", "signal_stats", "policy_kwargs")


def check_fresh(bench: Any, fresh: Any) -> None:
    """Refuse a fresh dataset collected differently from the benchmark's, or sharing a seed with it."""
    a, b = dict(bench.attrs.get("collect") or {}), dict(fresh.attrs.get("collect") or {})
    if not a or not b:
        raise DatasetError("both datasets must come from `salus collect` (attrs 'collect' missing)")
    from salus.collect.collector import same_setting

    diff = [k for k in _SAME if not same_setting(k, a.get(k), b.get(k))]
    if diff:
        shown = "; ".join(f"{k}: benchmark {a.get(k)!r}, fresh {b.get(k)!r}" for k in diff)
        raise InvalidInputError(f"the fresh episodes were collected differently ({shown})")
    shared = sorted(set(np.asarray(bench.seed).tolist()) & set(np.asarray(fresh.seed).tolist()))
    if shared:
        raise InvalidInputError(
            f"{len(shared)} fresh episode seed(s) also occur in the benchmark dataset (e.g. {shared[:5]}); "
            "collect the fresh episodes with another --seed"
        )


def handover_jobs(fresh: Any, steps: Sequence[set[int]], keys: Sequence[str]) -> list[Any]:
    """One :class:`~salus.sim.handover.HandoverJob` per fresh episode (its plain replay first)."""
    from salus.collect.plan import PerturbationMix, plan_episode
    from salus.sim.handover import NO_HANDOVER, HandoverJob

    attrs = dict(fresh.attrs["collect"])
    mix = PerturbationMix.from_obj(attrs["mix"])
    actions = fresh.episode_arrays("action")
    jobs = []
    for i, key in enumerate(keys):
        spec = plan_episode(int(fresh.episode_index[i]), int(attrs["seed"]), attrs["tasks"], mix)
        if spec.seed != int(fresh.seed[i]) or spec.task != str(fresh.task[i]):
            raise DatasetError(f"{key}: the collection plan does not give this episode's seed and task")
        jobs.append(
            HandoverJob(
                key=key,
                task=spec.task,
                seed=spec.seed,
                perturbations=tuple((str(n), float(s)) for n, s in spec.perturbations),
                actions=np.asarray(actions[i], dtype=np.float32),
                steps=(NO_HANDOVER, *sorted(steps[i])),
                max_steps=attrs.get("max_steps"),
            )
        )
    return jobs


def _init_worker() -> None:
    from salus.collect.worker import limit_threads

    limit_threads()


def _run_job(job: Any) -> list[dict[str, Any]]:
    from salus.sim.handover import replay_handovers

    return [o.to_dict() for o in replay_handovers(job)]


def _load_done(path: Path, skipped: list[int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Finished episodes of an earlier run. A line that is not a finished record (a torn last line
    from a kill, invalid JSON, or JSON that is not ``{"key": str, "outcomes": [{"step": ...}, ...]}``)
    is ignored, its 1-based number appended to ``skipped``: the file is only a cache of
    deterministic results, so that episode is simulated again rather than the whole run refused."""
    from salus.collect.jobs import read_records

    def finished(rec: Any) -> bool:
        outcomes = rec.get("outcomes")
        return (
            isinstance(rec.get("key"), str)
            and isinstance(outcomes, list)
            and all(isinstance(o, dict) and "step" in o for o in outcomes)
        )

    return {rec["key"]: list(rec["outcomes"]) for rec in read_records(path, finished, skipped)}


def _run_jobs(
    jobs: Sequence[Any],
    path: Path,
    workers: int,
    progress: Callable[[int, int], None] | None,
    note: Callable[[str], None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    skipped: list[int] = []
    done = _load_done(path, skipped)
    if skipped and note is not None:
        note(
            f"{path}: ignored {len(skipped)} line(s) that are no finished record (line {', '.join(map(str, skipped[:5]))}"
            f"{', ...' if len(skipped) > 5 else ''}); their episodes are simulated again"
        )
    if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with path.open("a") as f:  # a torn last line (killed mid-write): later lines start afresh
            f.write("\n")
    from dataclasses import replace

    have = {k: {int(o["step"]) for o in v} for k, v in done.items()}
    # Only the steps not simulated yet (the outcomes are deterministic); a record holds them all.
    todo = [
        replace(j, steps=tuple(s for s in j.steps if s not in have.get(j.key, set())))
        for j in jobs
        if not set(j.steps) <= have.get(j.key, set())
    ]
    total = len(jobs)

    def record(key: str, outcomes: list[dict[str, Any]]) -> None:
        old = [o for o in done.get(key, []) if int(o["step"]) not in {int(x["step"]) for x in outcomes}]
        done[key] = old + outcomes
        with path.open("a") as f:
            f.write(json.dumps({"key": key, "outcomes": done[key]}) + "\n")

    if progress is not None:
        progress(total - len(todo), total)
    if workers <= 1:
        for k, job in enumerate(todo):
            record(job.key, _run_job(job))
            if progress is not None:
                progress(total - len(todo) + k + 1, total)
        return done
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) as pool:
        futures = {pool.submit(_run_job, job): job.key for job in todo}
        for k, fut in enumerate(as_completed(futures)):
            record(futures[fut], fut.result())
            if progress is not None:
                progress(total - len(todo) + k + 1, total)
    return done


def _worked_seconds(out: Path) -> float:
    """Simulation seconds of earlier runs into ``out`` whose counterfactuals are still kept."""
    if not (out / HANDOVER_FILE).is_file() or not (out / RESULT_FILE).is_file():
        return 0.0
    try:
        return float(json.loads((out / RESULT_FILE).read_text()).get("simulation_s") or 0.0)
    except (ValueError, AttributeError):
        return 0.0


def _check_bands(ev: Any, predictor: Any, name: str) -> None:
    """The protocol's bands for ``name`` equal the ones its checkpoint gives the monitor."""
    for key in predictor.meta["conformal"]["bands"]:
        a = float(key)
        ours = next((b for k, b in ev.bands[name]["band"].items() if abs(k - a) < 1e-12), None)
        if ours is None:
            continue
        mon = predictor.band(a)
        if not (
            np.allclose(ours.mu, mon.mu)
            and np.allclose(ours.h, mon.h)
            and np.isclose(ours.half_width, mon.half_width)
        ):
            raise InvalidInputError(
                f"{name}: the band at alpha {a:g} differs from the checkpoint's (the monitor's); "
                "was the checkpoint calibrated on another split?"
            )


def run_assist(
    data: str | Path,
    models: str | Path,
    fresh_path: str | Path,
    out: str | Path,
    *,
    alphas: Sequence[float] | None = None,
    sweep_rates: Sequence[float] | None = None,
    workers: int = 1,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The closed-loop evaluation (see the module docstring); returns and writes ``OUT/closed_loop.json``."""
    from salus._json import to_json
    from salus.data import SalusDataset
    from salus.predictor import TrainedPredictor, episodes_from_dataset, evaluate_detailed
    from salus.predictor.closed_loop import (
        CLOSED_LOOP_ALPHAS,
        CLOSED_LOOP_COMPARATORS,
        SWEEP_RATES,
        FreshEpisode,
        SweepPoint,
        alarm_plan,
        closed_loop_metrics,
        handover_steps,
        sweep_plans,
    )
    from salus.predictor.discovery import checkpoint_dirs, choose_checkpoint
    from salus.predictor.protocol import running_max

    def note(msg: str) -> None:
        if say is not None:
            say(msg)

    t0 = time.perf_counter()
    alphas = tuple(float(a) for a in (alphas or CLOSED_LOOP_ALPHAS))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bench_ds, fresh_ds = SalusDataset(data), SalusDataset(fresh_path)
    check_fresh(bench_ds, fresh_ds)
    bench, fresh = episodes_from_dataset(bench_ds), episodes_from_dataset(fresh_ds)
    dirs = checkpoint_dirs(models)
    preds = [TrainedPredictor.load(d) for d in dirs]
    # The method's name, not its folder's: a single checkpoint folder may be called anything.
    chosen = preds[dirs.index(choose_checkpoint(models))]
    selected = str(chosen.meta.get("label") or chosen.name)
    note(f"scoring {len(fresh)} fresh episodes (thresholds from the benchmark's calibration successes)")
    ev = evaluate_detailed(
        bench,
        preds,
        alphas=alphas,
        include=("salus", "safe", "embedding"),
        test=fresh,
    )
    if selected not in {m.name for m in ev.methods}:
        raise InvalidInputError(
            f"--models {models}: the chosen checkpoint is {selected!r}, which salus assist does not "
            f"compare (it runs our predictors and the published baselines: "
            f"{', '.join(sorted(m.name for m in ev.methods))}); pass a directory holding one of those"
        )
    _check_bands(ev, chosen, selected)
    n0 = len(bench)
    idx = list(range(n0, n0 + len(fresh)))
    unseen = set(ev.split.test_unseen)
    keys = [f"fresh:{int(i)}" for i in np.asarray(fresh_ds.episode_index)]
    episodes = [
        FreshEpisode(k, ep.task, n0 + j in unseen, ep.success, ep.failure_step, ep.failure_type, ep.length)
        for j, (k, ep) in enumerate(zip(keys, fresh.episodes, strict=True))
    ]
    names = [
        selected,
        *[m for m in CLOSED_LOOP_COMPARATORS if m in {x.name for x in ev.methods} and m != selected],
    ]
    plans = alarm_plan(ev, idx, names, alphas)
    rates = tuple(float(q) for q in (sweep_rates or SWEEP_RATES))
    by_name = {m.name: m for m in ev.methods}
    runs = {m: [running_max(by_name[m].scores[i]) for i in idx] for m in names}
    sweeps = sweep_plans(runs, episodes, rates, seed=seed)
    steps = handover_steps(plans, episodes, sweeps)
    jobs = handover_jobs(fresh_ds, steps, keys)
    n_sims = sum(len(j.steps) for j in jobs)
    note(f"{n_sims} counterfactual episodes ({len(jobs)} replays + handovers) on {workers} worker(s)")
    t_sim = time.perf_counter()
    prev = _worked_seconds(out)
    done = _run_jobs(jobs, out / HANDOVER_FILE, workers, progress, note)
    t_sim = prev + time.perf_counter() - t_sim  # over the runs that simulated (resumes add theirs)
    worked = time.perf_counter() - t0 + prev  # this run, plus the simulation of earlier runs
    handover: dict[tuple[str, int], bool] = {}
    mismatched = []
    for ep in episodes:
        outs = {int(o["step"]): o for o in done[ep.key]}
        plain = outs[-1]
        if (bool(plain["success"]), int(plain["failure_step"]), str(plain["failure_type"])) != (
            ep.success,
            ep.failure_step,
            ep.failure_type,
        ):
            mismatched.append(ep.key)
        for t, o in outs.items():
            handover[(ep.key, t)] = bool(o["success"])
    left_out = set(mismatched)
    keep = [k for k, ep in enumerate(episodes) if ep.key not in left_out]
    kept = [episodes[k] for k in keep]
    kept_plans = {m: {a: v[keep] for a, v in by.items()} for m, by in plans.items()}
    # The swept thresholds stay those simulated (chosen with every episode): only the rows go.
    kept_sweeps = {
        m: {g: [SweepPoint(p.level, p.alarms[keep]) for p in pts] for g, pts in by.items()}
        for m, by in sweeps.items()
    }
    metrics = closed_loop_metrics(
        kept, kept_plans, handover, sweeps=kept_sweeps, selected=selected, seed=seed
    )
    result = {
        "selected": selected,
        "alphas": list(alphas),
        "threshold": "one-sided functional band on the benchmark's calibration successes (the monitor's)",
        "data": str(data),
        "models": str(models),
        "fresh": str(fresh_path),
        "fresh_collect": dict(fresh_ds.attrs.get("collect") or {}),
        "fresh_collect_seconds": fresh_ds.attrs.get("collect_seconds"),
        "replay_mismatches": mismatched,
        "counterfactual_episodes": n_sims,
        "simulation_s": round(t_sim, 1),  # over the runs whose counterfactuals are kept
        "total_s": round(worked, 1),
        "sweep_rates": list(rates),
        "open_loop": _open_loop(ev.report),
        **metrics,
        "episodes": [
            {
                "key": e.key,
                "task": e.task,
                "success": e.success,
                "failure_type": e.failure_type,
                "failure_step": e.failure_step,
                "alarms": {m: {f"{a:g}": int(v[k]) for a, v in by.items()} for m, by in plans.items()},
                "handover_steps": sorted(steps[k]),
            }
            for k, e in enumerate(episodes)
        ],
    }
    (out / RESULT_FILE).write_text(json.dumps(to_json(result, non_finite="null"), indent=1) + "\n")
    return result
