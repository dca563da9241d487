"""Policy specs, parsed once: ``NAME[:PATH][?KEY=VALUE[&KEY=VALUE...]]`` -> :class:`PolicySpec`.

The registry of spec names lives here too: ``POLICY_LOADERS`` maps each name to its loader, a
callable or a lazy ``"module:function"`` string called as ``loader(path_or_None, **kwargs)``;
``COMPOSITE_POLICIES`` are the names whose PATH lists member specs (``ensemble:SPEC,SPEC``);
``PACKAGED_POLICIES`` the names whose weights ship in the package. Cheap: nothing heavy is
imported until a spec is loaded.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salus.errors import CheckpointError, InvalidInputError, InvalidNameError
from salus.policies.base import PolicyAdapter

__all__ = [
    "PolicySpec",
    "POLICY_SPEC_HELP",
    "POLICY_LOADERS",
    "PACKAGED_POLICIES",
    "DEFAULT_POLICY",
    "COMPOSITE_POLICIES",
    "register_policy",
    "load_policy",
    "packaged_weights_dir",
]

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

# The --policy help of every command that takes a policy spec (the default is DEFAULT_POLICY).
POLICY_SPEC_HELP = (
    "Policy spec: smolvla (the packaged SmolVLA, the default), builtin (the light option), "
    "builtin:DIR, smolvla:PATH, python:FILE.py:FUNC or python:MODULE:FUNC (a function of yours "
    "that builds your own PyTorch policy, docs/byo-robot.md), ..."
)

#: Specs whose PATH lists other specs (``ensemble:SPEC,SPEC``): their members carry their own options.
COMPOSITE_POLICIES = frozenset({"ensemble"})

_RANGE = re.compile(r"^(\d+)-(\d+)$")
_INT = re.compile(r"^-?\d+$")
_EXAMPLE = "smolvla:DIR?state_indices=0-6,14-21&n_action_steps=4"


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


def _parse_options(query: str, spec: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise InvalidInputError(
                f"policy spec option {item!r} in {spec!r} must be KEY=VALUE (e.g. {_EXAMPLE})"
            )
        if key in options:
            raise InvalidInputError(f"policy spec option {key!r} is given twice in {spec!r}")
        options[key] = _option_value(value)
    return options


def packaged_weights_dir(name: str) -> Path:
    """The ``weights/`` folder of a policy that ships in the package (``PACKAGED_POLICIES``).

    Found without importing the package (no torch); an unknown name is an ``InvalidNameError``.
    """
    import importlib.util

    if name not in PACKAGED_POLICIES:
        raise InvalidNameError("packaged policy", name, tuple(PACKAGED_POLICIES))
    spec = importlib.util.find_spec(PACKAGED_POLICIES[name])
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"the package {PACKAGED_POLICIES[name]} of policy {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "weights"


@dataclass(frozen=True, eq=True)
class PolicySpec:
    """A parsed policy spec: ``name``, ``path`` (None without one) and ``options`` (from ``?KEY=VALUE``).

    Option values: ``none``, ``true``/``false``, numbers, index lists with ranges (``0-6,14-21``;
    ``+`` also separates, e.g. inside an ensemble spec whose members are comma-separated), or text
    (``image_keys=image_front:observation.images.front``). A composite spec (``ensemble``) keeps the
    ``?`` in its path: each member (:attr:`members`) parses its own options. ``str(spec)`` is the
    text it was parsed from. Parsing checks the syntax only; :meth:`check` checks names and paths.
    """

    name: str
    path: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, spec: str | PolicySpec) -> PolicySpec:
        """Parse ``NAME[:PATH][?KEY=VALUE[&...]]`` (a :class:`PolicySpec` is returned as it is)."""
        if isinstance(spec, PolicySpec):
            return spec
        if not isinstance(spec, str) or not spec:
            raise InvalidNameError("policy", spec, POLICY_LOADERS)
        name, _, rest = spec.partition(":")
        query = ""
        if name not in COMPOSITE_POLICIES:
            if "?" in name:  # NAME?OPTIONS without a path
                name, _, query = name.partition("?")
            else:
                rest, _, query = rest.partition("?")
        return cls(name, rest or None, _parse_options(query, spec), spec)

    def __str__(self) -> str:
        return self.text or self.name + (f":{self.path}" if self.path else "")

    @property
    def is_composite(self) -> bool:
        return self.name in COMPOSITE_POLICIES

    @property
    def members(self) -> tuple[PolicySpec, ...]:
        """The member specs of a composite spec (``ensemble:SPEC,SPEC``); empty for others."""
        if not self.is_composite:
            return ()
        return tuple(PolicySpec.parse(m.strip()) for m in (self.path or "").split(",") if m.strip())

    @property
    def weights_dir(self) -> Path | None:
        """The folder holding this policy's files: PATH (its folder when PATH is a file), the packaged
        ``weights/`` for a packaged name without a path, else None (``python:``, composites)."""
        if self.is_composite or self.name == "python":
            return None
        if self.path:
            p = Path(self.path).expanduser()
            return p.parent if p.is_file() else p
        return packaged_weights_dir(self.name) if self.name in PACKAGED_POLICIES else None

    def check(self, *, factories: bool = False) -> PolicySpec:
        """Refuse a spec that cannot load, cheaply (nothing heavy is imported or built): an unknown
        name (also of a composite's members) or a PATH that does not exist; with ``factories`` also
        a ``python:`` factory that cannot be found or is not callable. Returns the spec. Call it
        before creating anything a bad spec would leave behind (e.g. ``salus collect``'s dataset)."""
        if self.name not in POLICY_LOADERS:
            raise InvalidNameError("policy", self.name, POLICY_LOADERS)
        if self.is_composite:
            if not self.members:
                raise InvalidInputError(
                    f"policy spec {self} lists no member policies ({self.name}:SPEC,SPEC)"
                )
            for member in self.members:
                member.check(factories=factories)
        elif self.name == "python":
            if factories:
                self._check_factory()
        elif self.path is not None and not Path(self.path).expanduser().exists():
            raise InvalidInputError(f"policy spec {str(self)!r}: the path {self.path!r} does not exist")
        return self

    def _check_factory(self) -> None:
        from salus._lazy import load_object

        if not self.path:
            raise InvalidInputError(
                f"policy spec {str(self)!r} needs a factory: python:FILE.py:FACTORY or python:MODULE:FACTORY"
            )
        if not callable(load_object(self.path, "policy factory")):
            raise InvalidInputError(f"policy factory {self.path!r} is not callable")

    def load(self, **kwargs: Any) -> PolicyAdapter:
        """Build the adapter: the name's loader called with PATH, ``kwargs`` (e.g. ``num_samples``,
        ``seed``, ``capture_internals``) and the spec's options; one name in both is an error."""
        loader = POLICY_LOADERS.get(self.name)
        if loader is None:
            raise InvalidNameError("policy", self.name, POLICY_LOADERS)
        both = sorted(set(self.options) & set(kwargs))
        if both:
            raise InvalidInputError(
                f"policy option(s) {both} given both in the spec {str(self)!r} and as arguments"
            )
        if isinstance(loader, str):
            module_name, _, attr = loader.partition(":")
            loader = getattr(importlib.import_module(module_name), attr)
        return loader(self.path, **kwargs, **self.options)


def register_policy(name: str, loader: str | Callable[..., PolicyAdapter]) -> None:
    """Add (or replace) the loader of policy spec ``name``."""
    POLICY_LOADERS[name] = loader


def load_policy(spec: str | PolicySpec, **kwargs: Any) -> PolicyAdapter:
    """Build a policy adapter from ``builtin``, ``builtin:DIR``, ``smolvla:PATH[?OPTIONS]``,
    ``ensemble:SPEC,SPEC``, ``python:FILE.py:FACTORY`` (:meth:`PolicySpec.load`)."""
    return PolicySpec.parse(spec).load(**kwargs)
