"""salus.policies: adapters that run a policy in a control loop and expose its internals per step.

``load_policy(spec)`` builds an adapter from a spec ``NAME``, ``NAME:PATH`` or
``NAME:PATH?KEY=VALUE&KEY=VALUE`` (options, e.g. ``smolvla:DIR?state_indices=0-6,14-21``);
``POLICY_LOADERS`` maps each name to its loader, given as a callable or a lazy
``"module:function"`` string called as ``loader(path_or_None, **kwargs)``. Heavy modules (torch,
LeRobot) are imported on first use.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy
from salus.errors import InvalidInputError, InvalidNameError
from salus.policies.base import PolicyAdapter, StepInternals, batch_observation

POLICY_LOADERS: dict[str, str | Callable[..., PolicyAdapter]] = {
    "builtin": "salus.policies.builtin.adapter:load_builtin",
    "ensemble": "salus.policies.ensemble:load_ensemble",
    "smolvla": "salus.policies.smolvla:load_smolvla",
    "python": "salus.policies.factory:load_python_policy",  # python:FILE.py:FACTORY or python:MODULE:FACTORY
}

# Policies whose weights ship in the package: NAME (a spec without a path) -> the package whose
# ``weights/`` folder holds them. The embedded default is the one `salus demo` and `salus benchmark` run.
PACKAGED_POLICIES: dict[str, str] = {
    "builtin": "salus.policies.builtin",
    "smolvla": "salus.policies.smolvla",
}
DEFAULT_POLICY = "smolvla"

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors (no import at run time)
    from salus.policies.builtin.adapter import BuiltinPolicyAdapter as BuiltinPolicyAdapter
    from salus.policies.builtin.configuration_builtin import BuiltinConfig as BuiltinConfig
    from salus.policies.capture import CaptureBuffer as CaptureBuffer
    from salus.policies.capture import capture_modules as capture_modules
    from salus.policies.capture import resolve_module as resolve_module
    from salus.policies.chunking import ChunkedAdapter as ChunkedAdapter
    from salus.policies.chunking import ChunkResult as ChunkResult
    from salus.policies.ensemble import EnsembleAdapter as EnsembleAdapter
    from salus.policies.generic import TorchPolicyAdapter as TorchPolicyAdapter

_LAZY = {
    "capture_modules": "salus.policies.capture",
    "CaptureBuffer": "salus.policies.capture",
    "resolve_module": "salus.policies.capture",
    "ChunkedAdapter": "salus.policies.chunking",
    "ChunkResult": "salus.policies.chunking",
    "TorchPolicyAdapter": "salus.policies.generic",
    "EnsembleAdapter": "salus.policies.ensemble",
    "BuiltinPolicyAdapter": "salus.policies.builtin.adapter",
    "BuiltinConfig": "salus.policies.builtin.configuration_builtin",
}

__all__ = [
    "PolicyAdapter",
    "StepInternals",
    "batch_observation",
    "POLICY_LOADERS",
    "PACKAGED_POLICIES",
    "DEFAULT_POLICY",
    "packaged_weights_dir",
    "COMPOSITE_POLICIES",
    "register_policy",
    "load_policy",
    "split_policy_spec",
    "check_policy_spec",
    *_LAZY,
]


#: Specs whose PATH lists other specs (``ensemble:SPEC,SPEC``): their members carry their own options.
COMPOSITE_POLICIES = frozenset({"ensemble"})

_RANGE = re.compile(r"^(\d+)-(\d+)$")
_INT = re.compile(r"^-?\d+$")


def _option_value(text: str) -> Any:
    """A spec option's text -> None, bool, int, float, a tuple of ints (``0-6,14``, ``1+2``) or str."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    if _INT.match(low):
        return int(low)
    parts = [p.strip() for p in re.split(r"[,+]", low)]
    if (len(parts) > 1 or _RANGE.match(low)) and all(_INT.match(p) or _RANGE.match(p) for p in parts):
        out: list[int] = []
        for p in parts:
            m = _RANGE.match(p)
            out.extend(range(int(m.group(1)), int(m.group(2)) + 1) if m else [int(p)])
        return tuple(out)
    try:
        return float(low)
    except ValueError:
        return text.strip()


def packaged_weights_dir(name: str) -> Path:
    """The ``weights/`` folder of a policy that ships in the package (``PACKAGED_POLICIES``).

    Found without importing the package (no torch); an unknown name is an ``InvalidNameError``.
    """
    import importlib.util

    from salus.errors import CheckpointError

    if name not in PACKAGED_POLICIES:
        raise InvalidNameError("packaged policy", name, tuple(PACKAGED_POLICIES))
    spec = importlib.util.find_spec(PACKAGED_POLICIES[name])
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"the package {PACKAGED_POLICIES[name]} of policy {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "weights"


def split_policy_spec(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """``NAME[:PATH][?KEY=VALUE[&KEY=VALUE...]]`` -> (name, path or None, options).

    Option values: ``none``, ``true``/``false``, numbers, index lists with ranges (``0-6,14-21``;
    ``+`` also separates, e.g. inside an ensemble spec whose members are comma-separated), or text
    (``image_keys=image_front:observation.images.front``). Composite specs (``ensemble``) keep the
    ``?`` in their path: each member parses its own options.
    """
    if not isinstance(spec, str) or not spec:
        raise InvalidNameError("policy", spec, POLICY_LOADERS)
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    if name not in COMPOSITE_POLICIES:
        if "?" in name:  # NAME?OPTIONS without a path
            name, _, query = name.partition("?")
        else:
            rest, _, query = rest.partition("?")
        for item in filter(None, query.split("&")):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key.isidentifier():
                raise InvalidInputError(
                    f"policy spec option {item!r} in {spec!r} must be KEY=VALUE "
                    "(e.g. smolvla:DIR?state_indices=0-6,14-21&n_action_steps=4)"
                )
            if key in options:
                raise InvalidInputError(f"policy spec option {key!r} is given twice in {spec!r}")
            options[key] = _option_value(value)
    return name, (rest or None), options


def check_policy_spec(spec: str) -> None:
    """Refuse a policy spec that cannot load, cheaply (nothing is imported or built): an unknown
    name (also of an ensemble's members) or a PATH that does not exist. Call it before creating
    anything a bad spec would leave behind (e.g. ``salus collect``'s dataset)."""
    from pathlib import Path

    name, path, _options = split_policy_spec(spec)
    if name not in POLICY_LOADERS:
        raise InvalidNameError("policy", name, POLICY_LOADERS)
    if name in COMPOSITE_POLICIES:
        members = [m for m in (path or "").split(",") if m.strip()]
        if not members:
            raise InvalidInputError(f"policy spec {spec!r} lists no member policies ({name}:SPEC,SPEC)")
        for member in members:
            check_policy_spec(member.strip())
    elif path is not None and name != "python" and not Path(path).expanduser().exists():
        raise InvalidInputError(f"policy spec {spec!r}: the path {path!r} does not exist")


def register_policy(name: str, loader: str | Callable[..., PolicyAdapter]) -> None:
    """Add (or replace) the loader of policy spec ``name``."""
    POLICY_LOADERS[name] = loader


def load_policy(spec: str, **kwargs: Any) -> PolicyAdapter:
    """Build a policy adapter from ``builtin``, ``builtin:DIR``, ``smolvla:PATH[?OPTIONS]``, ``ensemble:SPEC,SPEC``.

    ``kwargs`` go to the loader (e.g. ``num_samples``, ``seed``, ``n_action_steps``, ``capture_internals``),
    together with the spec's options (:func:`split_policy_spec`); one name in both is an error.
    """
    name, path, options = split_policy_spec(spec)
    loader = POLICY_LOADERS.get(name)
    if loader is None:
        raise InvalidNameError("policy", name, POLICY_LOADERS)
    both = sorted(set(options) & set(kwargs))
    if both:
        raise InvalidInputError(f"policy option(s) {both} given both in the spec {spec!r} and as arguments")
    if isinstance(loader, str):
        module_name, _, attr = loader.partition(":")
        loader = getattr(importlib.import_module(module_name), attr)
    return loader(path, **kwargs, **options)


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
