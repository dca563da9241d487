"""Resumable, parallel simulation jobs: each job's result is one JSON line appended to a file as
soon as it finishes, so a killed run loses at most the jobs in flight and a rerun skips what is
there (the pattern of ``salus assist``'s counterfactual replays, made generic for any job).

The file is only a cache of deterministic results: a line that is no finished record (a torn last
line from a kill, invalid JSON, a record of another shape) is skipped and its job simply run again.
Worker processes are spawned (no inherited simulator or GL state) with single-threaded numerical
libraries (:func:`salus.collect.worker.limit_threads`), so a job gives the same bits in any worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["read_records", "run_jobs", "repair_torn_line"]

J = TypeVar("J")


def read_records(
    path: str | Path, valid: Callable[[Any], bool], skipped: list[int] | None = None
) -> list[dict[str, Any]]:
    """The records of a JSONL results file, in order; a line that is not JSON or for which
    ``valid(obj)`` is False is left out, its 1-based number appended to ``skipped``."""
    path = Path(path)
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict) or not valid(rec):
            if skipped is not None:
                skipped.append(n)
            continue
        out.append(rec)
    return out


def repair_torn_line(path: str | Path) -> None:
    """End a file whose last line was torn by a kill with a newline, so later records start afresh."""
    path = Path(path)
    if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with path.open("a") as f:
            f.write("\n")


def _init_worker() -> None:
    from salus.collect.worker import limit_threads

    limit_threads()


def run_jobs(
    jobs: Sequence[J],
    fn: Callable[[J], dict[str, Any]],
    path: str | Path,
    *,
    workers: int = 1,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``fn(job)`` for every job (in ``workers`` spawned processes when > 1; ``fn`` must then be
    a module-level function and the jobs picklable) and append each result to ``path`` as one JSON
    line the moment it is back; ``on_record(result)`` is called after it was written. Returns the
    results in the order they finished."""
    if not isinstance(workers, int) or workers < 1:
        from salus.errors import InvalidInputError

        raise InvalidInputError(f"workers must be an int >= 1, got {workers!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_torn_line(path)
    out: list[dict[str, Any]] = []

    def record(result: dict[str, Any]) -> None:
        with path.open("a") as f:
            f.write(json.dumps(result) + "\n")
        out.append(result)
        if on_record is not None:
            on_record(result)

    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            record(fn(job))
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(
        min(workers, len(jobs)), mp_context=mp.get_context("spawn"), initializer=_init_worker
    ) as pool:
        futures = [pool.submit(fn, job) for job in jobs]
        for fut in as_completed(futures):
            record(fut.result())
    return out
