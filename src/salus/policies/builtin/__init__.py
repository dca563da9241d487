"""The built-in flow-matching VLA policy (the embedded default policy of salus).

``configuration_builtin`` is cheap to import; the model and adapter (torch) load lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy
from salus.policies.builtin.configuration_builtin import BuiltinConfig, WordTokenizer

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors (no import at run time)
    from salus.policies.builtin.adapter import DEFAULT_WEIGHTS_DIR as DEFAULT_WEIGHTS_DIR
    from salus.policies.builtin.adapter import BuiltinPolicyAdapter as BuiltinPolicyAdapter
    from salus.policies.builtin.adapter import load_builtin as load_builtin
    from salus.policies.builtin.modeling_builtin import BuiltinFlowPolicy as BuiltinFlowPolicy
    from salus.policies.builtin.modeling_builtin import BuiltinProcessor as BuiltinProcessor
    from salus.policies.builtin.modeling_builtin import NormalizationStats as NormalizationStats
    from salus.policies.builtin.modeling_builtin import load_pretrained as load_pretrained
    from salus.policies.builtin.modeling_builtin import save_pretrained as save_pretrained

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
