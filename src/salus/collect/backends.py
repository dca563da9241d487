"""Where episodes run: in-process, in W spawned local processes, or on W Ray actors.

Every backend takes an iterable of :class:`EpisodeSpec` and yields ``(spec, EpisodeRecord)`` as
episodes finish (in any order), keeping at most ``2 W`` episodes in flight.
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

    def __init__(self, config: CollectConfig):
        from salus.collect.worker import EpisodeWorker

        self.worker = EpisodeWorker(config)

    def run(self, specs: Iterable[EpisodeSpec]) -> Iterator[Result]:
        for spec in specs:
            yield spec, self.worker.run(spec)

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


def _init_process(config: CollectConfig) -> None:
    import os
    import threading

    # The parent handles Ctrl-C and stops the pool; workers must not die half-way on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    global _WORKER
    from salus.collect.worker import EpisodeWorker

    _WORKER = EpisodeWorker(config)


def _run_in_process(spec: EpisodeSpec) -> Result:
    assert _WORKER is not None
    return spec, _WORKER.run(spec)


class ProcessBackend(Backend):
    """W spawned processes, each with its own simulator and policy (single-threaded torch)."""

    name = "processes"

    def __init__(self, config: CollectConfig, workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        if workers < 1:
            raise InvalidInputError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool: Any = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=mp.get_context("spawn"),
            initializer=_init_process,
            initargs=(config,),
        )

    def run(self, specs: Iterable[EpisodeSpec]) -> Iterator[Result]:
        from concurrent.futures import FIRST_COMPLETED, wait

        pending: set[Any] = set()
        it = iter(specs)
        exhausted = False
        while True:
            while not exhausted and len(pending) < 2 * self.workers:
                spec = next(it, None)
                if spec is None:
                    exhausted = True
                    break
                pending.add(self._pool.submit(_run_in_process, spec))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: f.result()[0].index if f.exception() is None else -1):
                yield fut.result()

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

    def __init__(self, config: CollectConfig, workers: int, address: str | None = None):
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
        self._actors = [actor_cls.remote(config) for _ in range(workers)]

    def run(self, specs: Iterable[EpisodeSpec]) -> Iterator[Result]:
        ray = self._ray
        it = iter(specs)
        idle = list(self._actors)
        inflight: dict[Any, tuple[Any, EpisodeSpec]] = {}
        exhausted = False
        while True:
            while not exhausted and idle:
                spec = next(it, None)
                if spec is None:
                    exhausted = True
                    break
                actor = idle.pop()
                inflight[actor.run.remote(spec)] = (actor, spec)
            if not inflight:
                return
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                actor, spec = inflight.pop(ref)
                idle.append(actor)
                yield spec, ray.get(ref)

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

    def __init__(self, config: CollectConfig):
        import contextlib
        import signal as _signal

        with contextlib.suppress(ValueError):  # only possible on the main thread
            _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        from salus.collect.worker import EpisodeWorker

        self.worker = EpisodeWorker(config)

    def run(self, spec: EpisodeSpec) -> EpisodeRecord:
        return self.worker.run(spec)


def make_backend(
    config: CollectConfig, workers: int = 1, ray_address: str | None = None, use_ray: bool = False
) -> Backend:
    """Serial for one local worker, processes for several, Ray actors with ``use_ray``."""
    if use_ray:
        return RayBackend(config, workers, ray_address)
    if workers == 1:
        return SerialBackend(config)
    return ProcessBackend(config, workers)
