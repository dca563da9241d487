"""An exclusive writer lock beside a dataset (``DATA.zarr.lock``) so two collectors never share a store.

The lock is an ``fcntl.flock`` on the lock file (released by the kernel when its holder dies, even
by SIGKILL) plus the holder's pid, host and start time in the file for the error message. A lock
file whose flock can be taken is stale and is taken over.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, NoReturn

from salus.errors import DatasetError

__all__ = ["DatasetLock", "lock_path"]


def lock_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".lock")


class DatasetLock:
    """Context manager holding the writer lock of the dataset at ``path``."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.lock_file = lock_path(self.path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> DatasetLock:
        if self._fd is not None:
            return self
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._refuse(fd)
            # The previous holder may have unlinked the file between our open and flock: retry then.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        # The flock is ours: any previous holder is gone (a stale lock file is simply reused).
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def _refuse(self, fd: int) -> NoReturn:
        holder = _read_holder(fd)
        os.close(fd)
        who = (
            f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
            if holder
            else "another process"
        )
        raise DatasetError(
            f"{self.path} is being written by another collector ({who}); two collectors cannot "
            f"write the same dataset. Wait for it to finish, stop it, or choose another --out."
        )

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # Unlink while still holding the flock, so nobody can lock a file that is about to vanish.
            self.lock_file.unlink(missing_ok=True)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DatasetLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        data = json.loads(raw.decode() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
