"""The evaluate job: checkpoints scored on a dataset under the protocol, one seed or every split seed.

``salus evaluate``, ``salus report`` (the first seed's evaluation, drawn) and the benchmark's evaluate
stage all run :func:`run_evaluate`. MODEL_DIR is a checkpoint, a directory of checkpoints (``salus
train --model all``) or a directory of ``seed<S>/`` directories (``salus train --split-seeds``): then
every seed is evaluated (or only the first, ``first_seed_only``) and the seeds are aggregated (mean
and spread over seeds, headline differences with intervals).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salus._json import to_json
from salus.errors import InvalidInputError
from salus.jobs.options import argument, option, option_words
from salus.jobs.stages import coerce_fields
from salus.predictor.config import DEFAULT_ALPHAS

if TYPE_CHECKING:
    from salus.jobs.stages import Reporter
    from salus.predictor.episodes import EpisodeSet
    from salus.predictor.evaluate import Evaluation

__all__ = ["EvaluateJob", "EvaluateResult", "run_evaluate"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EvaluateJob:
    """What to evaluate: ``model_dir`` on the dataset ``data`` at the conformal ``alphas``.

    ``workers`` > 1 evaluates split seeds in forked processes (the same numbers as one process);
    ``first_seed_only`` evaluates only the first ``seed<S>/`` directory (what the report draws; not
    an option of ``salus evaluate``). ``out``: where :meth:`run` writes ``results.json`` and
    ``results.md``.
    ``transfer_from``: the models trained on another policy's episodes (the same layout as
    ``model_dir``: seed ``<S>``'s are matched with seed ``<S>``'s); their signal models are scored on
    these episodes as ``transfer:<transfer_label>:<model>`` (the cross-policy check).
    """

    model_dir: Path = argument(
        "A checkpoint, a directory of checkpoints (`salus train --model all`), or of seed<S>/ directories "
        "(`salus train --split-seeds`)."
    )
    data: Path = argument("The dataset the checkpoints were trained on.")
    alphas: tuple[float, ...] = option(
        DEFAULT_ALPHAS,
        "--alpha",
        f"Conformal alpha; repeatable (default {' '.join(map(str, DEFAULT_ALPHAS))}).",
        lo=0,
        hi=1,
        lo_open=True,
        hi_open=True,
    )
    workers: int = option(
        1,
        "--workers",
        "Processes for the split seeds (forked; the same numbers as one process).",
        lo=1,
        aliases=("-w",),
    )
    first_seed_only: bool = False
    transfer_from: Path | None = option(
        None,
        "--transfer-from",
        "Models trained on another policy's episodes (the same --split-seeds layout): their signal models "
        "are scored on DATA as comparators transfer:LABEL:MODEL (is the monitor specific to the policy it "
        "watched?).",
    )
    transfer_label: str = option(
        "transfer", "--transfer-label", "LABEL of the --transfer-from rows (e.g. the other policy's name)."
    )
    out: Path | None = option(
        None, "--out", "Also write results.json and results.md into this directory.", out_dir=True
    )

    def __post_init__(self) -> None:
        coerce_fields(self)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.transfer_label):
            raise InvalidInputError(
                f"the transfer label must be letters, digits, '_', '.' or '-', got {self.transfer_label!r}"
            )
        alphas = tuple(sorted({float(a) for a in self.alphas}))
        bad = [a for a in alphas if not (math.isfinite(a) and 0.0 < a < 1.0)]
        if not alphas or bad:
            raise InvalidInputError(f"alphas must be in (0, 1), got {list(self.alphas)}")
        object.__setattr__(self, "alphas", alphas)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise InvalidInputError(f"workers must be an int >= 1, got {self.workers!r}")

    def argv(self) -> list[str]:
        """The ``salus evaluate`` arguments that run this job (``first_seed_only`` has none)."""
        return ["evaluate", str(self.model_dir), str(self.data), *option_words(self)]

    def run(self, reporter: Reporter) -> EvaluateResult:
        """Evaluate; with ``out``, write the results there (headed by this job's command line)."""
        from salus.jobs.stages import command_line

        result = run_evaluate(self, progress=lambda m: reporter.progress("evaluate", 0, None, m))
        if self.out is not None:
            result.write(self.out, [command_line(self)])
        return result


@dataclass
class EvaluateResult:
    """The evaluations (one per seed directory, or one), their aggregate (None for one), the
    training commands the checkpoints recorded, and what was evaluated (``meta``)."""

    evaluations: list[Evaluation]
    aggregate: dict[str, Any] | None
    commands: list[str]
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def reports(self) -> list[dict[str, Any]]:
        return [e.report for e in self.evaluations]

    def payload(self, commands: Sequence[str] = ()) -> dict[str, Any]:
        """The JSON document of ``salus evaluate --json`` (strict JSON: NaN -> null)."""
        every = [*self.commands, *commands]
        if self.aggregate is None:
            return to_json({**self.reports[0], "commands": every}, non_finite="null")  # type: ignore[no-any-return]
        doc = {"aggregate": self.aggregate, "seeds": self.reports, "commands": every}
        return to_json(doc, non_finite="null")  # type: ignore[no-any-return]

    def markdown(self, commands: Sequence[str] = ()) -> str:
        from salus.predictor.tables import format_benchmark, format_markdown

        every = [*self.commands, *commands]
        if self.aggregate is None:
            return format_markdown(self.reports[0], commands=every)
        return format_benchmark(self.aggregate, self.reports, commands=every)

    def write(self, out: Path, commands: Sequence[str] = ()) -> None:
        """``results.json`` and ``results.md`` in ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(self.payload(commands), indent=1) + "\n")
        (out / "results.md").write_text(self.markdown(commands))


def run_evaluate(
    job: EvaluateJob, *, progress: Progress | None = None, episodes: EpisodeSet | None = None
) -> EvaluateResult:
    """Run ``job``; ``episodes``: the dataset already read (``episodes_from_dataset(SalusDataset(job.data))``)."""
    from salus.data import SalusDataset
    from salus.predictor import aggregate_seeds, episodes_from_dataset
    from salus.predictor.discovery import checkpoint_dirs, seed_dirs

    if episodes is None:
        episodes = episodes_from_dataset(SalusDataset(job.data), embeddings=True)
    seeds = seed_dirs(job.model_dir)
    dirs = [d for _, d in seeds] or [job.model_dir]
    if job.first_seed_only:
        dirs = dirs[:1]
    pairs = [(d, _transfer_dir(job, d, seeds)) for d in dirs]
    if job.workers > 1 and len(dirs) > 1:
        evals = _evaluate_parallel(pairs, episodes, job.alphas, progress, job.workers, job.transfer_label)
    else:
        evals = [_evaluate_dir(d, episodes, job.alphas, progress, t, job.transfer_label) for d, t in pairs]
    agg = None
    if seeds and not job.first_seed_only:
        agg = aggregate_seeds([e.report for e in evals], [e.samples for e in evals])
    commands = [p.get("command") for e in evals for p in e.report.get("predictors", []) if p.get("command")]
    meta = {
        ("checkpoints (the first seed's)" if seeds else "checkpoints"): ", ".join(
            str(d) for d in checkpoint_dirs(job.model_dir)
        ),
        "dataset": f"{job.data} ({len(episodes)} episodes, fingerprint {episodes.fingerprint()})",
    }
    if seeds:
        meta["split seed"] = (
            f"{seeds[0][0]} (the first of {len(seeds)} seed directories)"
            if job.first_seed_only
            else ", ".join(str(s) for s, _ in seeds)
        )
    return EvaluateResult(evals, agg, list(dict.fromkeys(str(c) for c in commands)), meta)


def _transfer_dir(job: EvaluateJob, d: Path, seeds: list[tuple[int, Path]]) -> Path | None:
    """The directory of ``job.transfer_from`` that matches ``d`` (the same ``seed<S>/``)."""
    from salus.predictor.discovery import seed_dirs

    if job.transfer_from is None:
        return None
    if not seeds:
        return job.transfer_from
    theirs = dict(seed_dirs(job.transfer_from))
    seed = next(s for s, p in seeds if p == d)
    if seed not in theirs:
        raise InvalidInputError(
            f"--transfer-from {job.transfer_from} has no seed{seed}/ to match {d}; it has "
            f"{sorted(theirs) or 'no seed directories'}: train both with the same --split-seeds"
        )
    return theirs[seed]


def _transfer_predictors(directory: Path) -> list[Any]:
    """The signal models among ``directory``'s checkpoints (the others read policy-specific inputs)."""
    from salus.predictor.discovery import load_checkpoints

    preds = [p for p in load_checkpoints(directory) if p.input_kind == "signals" and not p.meta.get("label")]
    if not preds:
        raise InvalidInputError(
            f"{directory} holds no signal model (salus-mlp, salus-tcn, ...); only those transfer across policies"
        )
    return preds


def _evaluate_dir(
    d: Path,
    episodes: EpisodeSet,
    alphas: Sequence[float],
    progress: Progress | None = None,
    transfer: Path | None = None,
    transfer_label: str = "transfer",
) -> Any:
    from salus.predictor import evaluate_detailed
    from salus.predictor.discovery import load_checkpoints, read_selection_record

    preds = load_checkpoints(d)
    record = read_selection_record(d) if not (d / "predictor.json").is_file() else None
    moved = _transfer_predictors(transfer) if transfer is not None else []
    return evaluate_detailed(
        episodes, preds, alphas=alphas, progress=progress, selection=record, transfer=moved,
        transfer_label=transfer_label,
    )  # fmt: skip


_FORKED: dict[str, Any] = {}  # what a forked worker inherits (episodes are large: never pickled)


def _evaluate_forked(pairs: list[tuple[Path, Path | None]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    import torch

    torch.set_num_threads(1)
    out = []
    for d, t in pairs:
        ev = _evaluate_dir(d, _FORKED["episodes"], _FORKED["alphas"], None, t, _FORKED["label"])
        out.append((ev.report, ev.samples))
    return out


def _evaluate_parallel(
    pairs: list[tuple[Path, Path | None]],
    episodes: EpisodeSet,
    alphas: Sequence[float],
    progress: Progress | None,
    workers: int,
    label: str,
) -> list[Any]:
    """Seeds dealt round-robin to this process (which takes the first) and workers - 1 forks.

    Each seed's evaluation is deterministic, so the numbers are those of one process. Seeds
    evaluated in a fork come back as their ``report`` and ``samples`` only (what the aggregate and
    the tables read); the first seed's evaluation is whole (the report page draws it)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    share = [list(range(i, len(pairs), workers)) for i in range(min(workers, len(pairs)))]
    _FORKED.update(episodes=episodes, alphas=alphas, label=label)
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=len(share) - 1, mp_context=ctx) as pool:
            futures = [pool.submit(_evaluate_forked, [pairs[i] for i in idx]) for idx in share[1:]]
            mine = [
                _evaluate_dir(pairs[i][0], episodes, alphas, progress, pairs[i][1], label) for i in share[0]
            ]
            theirs = [f.result() for f in futures]
    finally:
        _FORKED.clear()
    evals: list[Any] = [None] * len(pairs)
    for i, ev in zip(share[0], mine, strict=True):
        evals[i] = ev
    first = evals[0]
    for idx, results in zip(share[1:], theirs, strict=True):
        for i, (report, samples) in zip(idx, results, strict=True):
            evals[i] = replace(first, report=report, samples=samples, methods=[], bands={}, boot={})
    return evals
