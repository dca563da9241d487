"""The built-in flow-matching VLA policy (the embedded default policy of salus).

``configuration_builtin`` is cheap to import; the model and adapter (torch) load lazily.
"""

from __future__ import annotations

from typing import Any

from salus._lazy import load_lazy
from salus.policies.builtin.configuration_builtin import BuiltinConfig, WordTokenizer

_LAZY = {
    "BuiltinFlowPolicy": "salus.policies.builtin.modeling_builtin",
    "NormalizationStats": "salus.policies.builtin.modeling_builtin",
    "BuiltinProcessor": "salus.policies.builtin.modeling_builtin",
    "save_pretrained": "salus.policies.builtin.modeling_builtin",
    "load_pretrained": "salus.policies.builtin.modeling_builtin",
    "BuiltinPolicyAdapter": "salus.policies.builtin.adapter",
    "load_builtin": "salus.policies.builtin.adapter",
    "DEFAULT_WEIGHTS_DIR": "salus.policies.builtin.adapter",
}

__all__ = ["BuiltinConfig", "WordTokenizer", *_LAZY]


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
