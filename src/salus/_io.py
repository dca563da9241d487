"""The one place salus opens files for reading: zarr, JSON and safetensors errors become errors of
the :mod:`salus.errors` family that name the path and what was being read.

``reading(path, what, DatasetError)`` is a context manager for any other read (a zarr chunk
decode, for instance); ``read_json``, ``load_safetensors`` and ``open_zarr_group`` are the common
cases. A :class:`~salus.errors.SalusError` raised inside passes through unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from salus.errors import SalusError

__all__ = ["reading", "read_json", "load_safetensors", "open_zarr_group", "describe_exception"]


def describe_exception(exc: BaseException) -> str:
    """``"TypeName: message"`` on one line (library messages can span lines)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def reading(path: str | os.PathLike[str], what: str, error: type[SalusError]) -> Iterator[None]:
    """Turn any non-salus exception raised inside into ``error("PATH: cannot read WHAT (...)")``."""
    try:
        yield
    except SalusError:
        raise
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:
        if isinstance(exc, FileNotFoundError):
            raise error(f"{path}: cannot read {what}: the file does not exist") from None
        raise error(f"{path}: cannot read {what} ({describe_exception(exc)}); the file is corrupt") from None


def read_json(path: str | os.PathLike[str], what: str, error: type[SalusError]) -> Any:
    """Parse the JSON file at ``path`` (``what`` says what it is, for the message)."""
    with reading(path, what, error):
        return json.loads(Path(path).read_text())


def load_safetensors(
    path: str | os.PathLike[str],
    what: str,
    error: type[SalusError],
    *,
    framework: Literal["numpy", "torch"] = "numpy",
) -> dict[str, Any]:
    """All tensors of a safetensors file (numpy arrays or torch tensors)."""
    with reading(path, what, error):
        if framework == "torch":
            from safetensors.torch import load_file as load_torch

            return dict(load_torch(str(path)))
        from safetensors.numpy import load_file as load_numpy

        return dict(load_numpy(str(path)))


def open_zarr_group(path: str | os.PathLike[str], mode: Literal["r", "r+"], error: type[SalusError]) -> Any:
    """Open the zarr group at ``path`` (its root ``zarr.json`` is parsed here)."""
    import zarr

    with reading(Path(path) / "zarr.json", "the zarr root metadata", error):
        return zarr.open_group(str(path), mode=mode)
