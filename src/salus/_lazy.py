"""Lazy public names for the sub-packages: heavy modules load on first attribute access."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["load_lazy"]


def load_lazy(package: str, names: Mapping[str, str], name: str) -> Any:
    """Resolve ``name`` from the module ``names[name]``; the body of a package's ``__getattr__``."""
    if name in names:
        return getattr(importlib.import_module(names[name]), name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
