"""Where episodes run: in-process, in W spawned local processes, or on W Ray actors.

Every backend takes an iterable of :class:`EpisodeSpec` and yields ``(spec, EpisodeRecord)`` as
episodes finish (in any order). A worker runs a job of :func:`job_size` consecutive episodes at a
time through its ``batch_size`` lockstep slots; at most ``2 W`` jobs are in flight.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterable, Iterator
from typing import Any

from salus.collect.config import CollectConfig
from salus.collect.plan import EpisodeSpec
from salus.data.record import EpisodeRecord
from salus.errors import InvalidInputError

__all__ = ["Backend", "SerialBackend", "ProcessBackend", "RayBackend", "make_backend"]

Result = tuple[EpisodeSpec, EpisodeRecord]


def job_size(batch_size: int) -> int:
    """Episodes a worker runs per job: one at B = 1, else four per slot (a slot that finishes
    takes the job's next episode, so only the job's end runs with slots idle)."""
    return 1 if batch_size == 1 else 4 * batch_size


def _jobs(specs: Iterable[EpisodeSpec], size: int) -> Iterator[list[EpisodeSpec]]:
    job: list[EpisodeSpec] = []
    for spec in specs:
        job.append(spec)
        if len(job) == size:
            yield job
            job = []
    if job:
        yield job


class Backend:
    """Runs episode specs; ``close()`` stops any workers (also on Ctrl-C)."""

    workers: int = 1
    name: str = "backend"

    def run(self, specs: Iterable[EpisodeSpec]) -> Iterator[Result]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialBackend(Backend):
    """Episodes one after another in this process."""

    name = "serial"

    def __init__(self, config: CollectConfig, batch_size: int = 1):
        from salus.collect.worker import EpisodeWorker

        self.worker = EpisodeWorker(config, batch_size)

    def run(self, specs: Iterable[EpisodeSpec]) -> Iterator[Result]:
        for job in _jobs(specs, job_size(self.worker.batch_size)):
            yield from self.worker.run_many(job)

    def close(self) -> None:
        self.worker.close()


# --------------------------------------------------------------------------- local processes
_WORKER: Any = None


def _exit_with_parent(parent: int, period_s: float = 0.5) -> None:
    """Exit when the collector that started this worker is gone (e.g. killed with SIGKILL)."""
    import os
    import time

    while True:
        time.sleep(period_s)
        if os.getppid() != parent:
            os._exit(1)


def _init_process(config: CollectConfig, batch_size: int) -> None:
    import os
    import threading

    # The parent handles Ctrl-C and stops the pool; workers must not die half-way on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    global _WORKER
    from salus.collect.worker import EpisodeWorker

    _WORKER = EpisodeWorker(config, batch_size)


def _run_in_process(job: list[EpisodeSpec]) -> list[Result]:
    assert _WORKER is not None
    return _WORKER.run_many(job)


class ProcessBackend(Backend):
    """W spawned processes, each with its own simulator and policy (single-threaded torch)."""

    name = "processes"

    def __init__(self, config: CollectConfig, workers: int, batch_size: int = 1):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        if workers < 1:
            raise InvalidInputError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.batch_size = batch_size
        self._pool: Any = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=mp.get_context("spawn"),
            initializer=_init_process,
            initargs=(config, batch_size),
        )

    def run(self, specs: Iterable[EpisodeSpec]) -> Iterator[Result]:
        from concurrent.futures import FIRST_COMPLETED, wait

        pending: set[Any] = set()
        it = _jobs(specs, job_size(self.batch_size))
        exhausted = False
        while True:
            while not exhausted and len(pending) < 2 * self.workers:
                job = next(it, None)
                if job is None:
                    exhausted = True
                    break
                pending.add(self._pool.submit(_run_in_process, job))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            results = [r for fut in done for r in fut.result()]
            yield from sorted(results, key=lambda r: r[0].index)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:  # running episodes are abandoned: they were not committed
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)


# --------------------------------------------------------------------------- Ray
class RayBackend(Backend):
    """W Ray actors running :class:`EpisodeWorker`; ``address`` None or "local" starts a local Ray
    instance with ``num_cpus=W``, anything else (e.g. ``auto``, ``ray://host:10001``) connects."""

    name = "ray"

    def __init__(self, config: CollectConfig, workers: int, address: str | None = None, batch_size: int = 1):
        from salus.errors import require_package

        ray = require_package("ray", "ray")
        if workers < 1:
            raise InvalidInputError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address in (None, "", "local"):
                kwargs["num_cpus"] = workers
            else:
                kwargs["address"] = address
            ray.init(**kwargs)
            self._started = True
        actor_cls = ray.remote(num_cpus=1)(_RayWorker)
        self.batch_size = batch_size
        self._actors = [actor_cls.remote(config, batch_size) for _ in range(workers)]

    def run(self, specs: Iterable[EpisodeSpec]) -> Iterator[Result]:
        ray = self._ray
        it = _jobs(specs, job_size(self.batch_size))
        idle = list(self._actors)
        inflight: dict[Any, Any] = {}
        exhausted = False
        while True:
            while not exhausted and idle:
                job = next(it, None)
                if job is None:
                    exhausted = True
                    break
                actor = idle.pop()
                inflight[actor.run_many.remote(job)] = actor
            if not inflight:
                return
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                idle.append(inflight.pop(ref))
                yield from ray.get(ref)

    def close(self) -> None:
        ray = self._ray
        for actor in getattr(self, "_actors", []):
            with contextlib.suppress(Exception):  # actor already gone
                ray.kill(actor)
        self._actors = []
        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False


class _RayWorker:
    """Ray actor body (kept as a plain class; ``ray.remote`` wraps it at run time)."""

    def __init__(self, config: CollectConfig, batch_size: int = 1):
        import contextlib
        import signal as _signal

        with contextlib.suppress(ValueError):  # only possible on the main thread
            _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        from salus.collect.worker import EpisodeWorker

        self.worker = EpisodeWorker(config, batch_size)

    def run_many(self, job: list[EpisodeSpec]) -> list[Result]:
        return self.worker.run_many(job)


def make_backend(
    config: CollectConfig,
    workers: int = 1,
    ray_address: str | None = None,
    use_ray: bool = False,
    batch_size: int = 1,
) -> Backend:
    """Serial for one local worker, processes for several, Ray actors with ``use_ray``; each
    worker runs ``batch_size`` environments in lockstep."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if use_ray:
        return RayBackend(config, workers, ray_address, batch_size)
    if workers == 1:
        return SerialBackend(config, batch_size)
    return ProcessBackend(config, workers, batch_size)
