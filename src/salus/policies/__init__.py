"""salus.policies: adapters that run a policy in a control loop and expose its internals per step.

``load_policy(spec)`` builds an adapter from a spec ``NAME``, ``NAME:PATH`` or
``NAME:PATH?KEY=VALUE&KEY=VALUE`` (options, e.g. ``smolvla:DIR?state_indices=0-6,14-21``), parsed
once into a :class:`~salus.policies.spec.PolicySpec`; ``POLICY_LOADERS`` maps each name to its
loader (``salus.policies.spec``). Heavy modules (torch, LeRobot) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy
from salus.policies.base import PolicyAdapter, StepInternals, batch_observation
from salus.policies.spec import (
    COMPOSITE_POLICIES,
    DEFAULT_POLICY,
    PACKAGED_POLICIES,
    POLICY_LOADERS,
    PolicySpec,
    load_policy,
    packaged_weights_dir,
    register_policy,
)

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
    "PolicySpec",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
