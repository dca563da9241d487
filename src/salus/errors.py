"""The salus error family: every message says what was wrong and what is allowed."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType

__all__ = [
    "SalusError",
    "InvalidNameError",
    "InvalidInputError",
    "DatasetError",
    "CheckpointError",
    "NotFittedError",
    "MissingDependencyError",
    "require_package",
    "plural",
]


class SalusError(Exception):
    """Base class of every error salus raises on purpose."""


class InvalidNameError(SalusError, ValueError):
    """A name (task, perturbation, signal, model, ...) that is not one of the valid ones."""

    def __init__(self, kind: str, name: object, valid: Iterable[str]):
        self.kind = kind
        self.name = name
        self.valid = sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {plural(kind)}: {', '.join(self.valid)}")


def plural(noun: str) -> str:
    """English plural of a (possibly multi-word) noun: policy -> policies, box -> boxes, task -> tasks."""
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    return noun + "s"


class InvalidInputError(SalusError, ValueError):
    """Bad input data: wrong shape, dtype, range, NaN, missing key."""


class DatasetError(SalusError):
    """A dataset that is missing, truncated, corrupt, locked or not a salus dataset."""


class CheckpointError(SalusError):
    """A checkpoint that is missing a file or a field it needs."""


class NotFittedError(SalusError, RuntimeError):
    """Statistics were needed but have not been fitted (or loaded)."""


class MissingDependencyError(SalusError, ImportError):
    """An optional dependency is not installed."""


def require_package(name: str, extra: str, import_name: str | None = None) -> ModuleType:
    """Import an optional package or raise an error that names the extra to install."""
    module_name = import_name or name
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:  # pragma: no cover - message path tested via fake names
        raise MissingDependencyError(
            f"'{name}' is required for this feature but could not be imported ({exc}). "
            f"Install it with `pip install 'salus[{extra}]'`"
            + (" and `make install-lerobot` (LeRobot is installed --no-deps)" if extra == "lerobot" else "")
            + "."
        ) from exc
