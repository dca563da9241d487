"""salus adapter for LeRobot's SmolVLA (an optional extra: ``make install-lerobot``).

Importing this package is cheap; torch and LeRobot are imported when an adapter is built.
``load_smolvla("PATH")`` (the ``smolvla:PATH`` policy spec), ``SmolVLAAdapter.from_pretrained``,
``build_tiny_smolvla(DIR)`` (a tiny random checkpoint for offline tests),
``ensure_torchvision_importable()`` (call it before importing ``lerobot`` yourself on a CPU torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy
from salus.policies.smolvla.configuration_smolvla import (
    DEFAULT_IMAGE_KEYS,
    DEFAULT_STATE_KEY,
    HOOK_MODULE,
    PREFIX_MODULE,
    SmolVLAAdapterConfig,
)

if TYPE_CHECKING:
    from salus.policies.smolvla._compat import ensure_torchvision_importable
    from salus.policies.smolvla.adapter_smolvla import SmolVLAAdapter, load_smolvla
    from salus.policies.smolvla.tiny import build_tiny_smolvla

__all__ = [
    "SmolVLAAdapterConfig",
    "SmolVLAAdapter",
    "load_smolvla",
    "build_tiny_smolvla",
    "ensure_torchvision_importable",
    "DEFAULT_IMAGE_KEYS",
    "DEFAULT_STATE_KEY",
    "HOOK_MODULE",
    "PREFIX_MODULE",
]

_LAZY = {
    "SmolVLAAdapter": "salus.policies.smolvla.adapter_smolvla",
    "load_smolvla": "salus.policies.smolvla.adapter_smolvla",
    "build_tiny_smolvla": "salus.policies.smolvla.tiny",
    "ensure_torchvision_importable": "salus.policies.smolvla._compat",
}


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
