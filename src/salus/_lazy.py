"""Lazy public names for the sub-packages (heavy modules load on first attribute access), and the
one loader of user objects named ``MODULE:NAME`` or ``FILE.py:NAME``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["load_lazy", "load_object", "is_object_spec"]


def load_lazy(package: str, names: Mapping[str, str], name: str) -> Any:
    """Resolve ``name`` from the module ``names[name]``; the body of a package's ``__getattr__``."""
    if name in names:
        return getattr(importlib.import_module(names[name]), name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")


def is_object_spec(spec: str) -> bool:
    """True for ``MODULE:NAME`` / ``FILE.py:NAME`` (NAME a dotted Python identifier)."""
    head, sep, attr = str(spec).rpartition(":")
    return bool(sep and head and all(part.isidentifier() for part in attr.split(".")))


def load_object(spec: str, what: str = "object") -> Any:
    """The object named by ``MODULE:NAME`` (an importable module) or ``FILE.py:NAME`` (a file path,
    imported once under a name derived from its absolute path). ``what`` names it in errors."""
    from salus.errors import InvalidInputError

    if not is_object_spec(spec):
        raise InvalidInputError(f"{what} must be MODULE:NAME or FILE.py:NAME, got {spec!r}")
    head, _, attr = str(spec).rpartition(":")
    if head.endswith(".py") or "/" in head or "\\" in head:
        path = Path(head).expanduser().resolve()
        if not path.is_file():
            raise InvalidInputError(f"{what} {spec!r}: the file {path} does not exist")
        mod_name = "salus_user_" + "".join(c if c.isalnum() else "_" for c in str(path))
        module = sys.modules.get(mod_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise InvalidInputError(f"{what} {spec!r}: {path} cannot be imported as a Python file")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(mod_name, None)
                raise
    else:
        try:
            module = importlib.import_module(head)
        except ImportError as exc:
            raise InvalidInputError(f"{what} {spec!r}: cannot import module {head!r} ({exc})") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            have = sorted(n for n in dir(module) if not n.startswith("_"))
            raise InvalidInputError(
                f"{what} {spec!r}: {head} has no attribute {attr!r}; it defines: {', '.join(have)}"
            )
        obj = getattr(obj, part)
    return obj
