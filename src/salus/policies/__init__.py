"""salus.policies: adapters that run a policy in a control loop and expose its internals per step.

``load_policy(spec)`` builds an adapter from a spec ``NAME`` or ``NAME:PATH``; ``POLICY_LOADERS``
maps each name to its loader, given as a callable or a lazy ``"module:function"`` string called as
``loader(path_or_None, **kwargs)``. Heavy modules (torch, LeRobot) are imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from salus._lazy import load_lazy
from salus.errors import InvalidNameError
from salus.policies.base import PolicyAdapter, StepInternals, batch_observation

POLICY_LOADERS: dict[str, str | Callable[..., PolicyAdapter]] = {
    "builtin": "salus.policies.builtin.adapter:load_builtin",
    "ensemble": "salus.policies.ensemble:load_ensemble",
    "smolvla": "salus.policies.smolvla:load_smolvla",
}

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
    "register_policy",
    "load_policy",
    *_LAZY,
]


def register_policy(name: str, loader: str | Callable[..., PolicyAdapter]) -> None:
    """Add (or replace) the loader of policy spec ``name``."""
    POLICY_LOADERS[name] = loader


def load_policy(spec: str, **kwargs: Any) -> PolicyAdapter:
    """Build a policy adapter from ``builtin``, ``builtin:DIR``, ``smolvla:PATH``, ``ensemble:SPEC,SPEC``.

    ``kwargs`` go to the loader (e.g. ``num_samples``, ``seed``, ``n_action_steps``, ``capture_internals``).
    """
    if not isinstance(spec, str) or not spec:
        raise InvalidNameError("policy", spec, POLICY_LOADERS)
    name, _, path = spec.partition(":")
    loader = POLICY_LOADERS.get(name)
    if loader is None:
        raise InvalidNameError("policy", name, POLICY_LOADERS)
    if isinstance(loader, str):
        module_name, _, attr = loader.partition(":")
        loader = getattr(importlib.import_module(module_name), attr)
    return loader(path or None, **kwargs)


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
