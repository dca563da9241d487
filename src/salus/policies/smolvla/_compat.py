"""Lazy, guarded imports of LeRobot's SmolVLA and the install workarounds it needs.

LeRobot 0.4.4 pins ``torch<2.11`` and is installed ``--no-deps`` beside our torch (see
``make install-lerobot``). Importing ``lerobot.policies`` pulls in ``torchvision`` (through
``lerobot.datasets``), and PyPI's torchvision wheel does not load its C++ ops beside a CPU-only
torch, so ``import torchvision`` fails with ``operator torchvision::nms does not exist`` (its fake
kernels are registered for ops that were never defined). :func:`ensure_torchvision_importable`
defines the two op schemas it registers fakes for, only when that exact failure happens; nothing
in SmolVLA calls these ops.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from salus.errors import MissingDependencyError, require_package

__all__ = ["ensure_torchvision_importable", "import_lerobot_smolvla"]

_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_schema_library: Any = None  # keeps the torch.library.Library (and its definitions) alive


def _define_torchvision_schemas() -> None:
    global _schema_library
    import torch

    if _schema_library is not None:
        return
    lib = torch.library.Library("torchvision", "DEF")  # noqa: TOR901 - permanent definitions
    for schema in _TORCHVISION_SCHEMAS:
        lib.define(schema)
    _schema_library = lib


def ensure_torchvision_importable() -> None:
    """Import torchvision, defining its missing op schemas if its C++ extension did not load."""
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "__version__"):
        return
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return  # not installed: LeRobot's own import will report it
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        _define_torchvision_schemas()
        import torchvision  # noqa: F401


@lru_cache(maxsize=1)
def import_lerobot_smolvla() -> SimpleNamespace:
    """Import the LeRobot classes the adapter uses; a missing extra raises ``MissingDependencyError``."""
    require_package("transformers", extra="lerobot")
    ensure_torchvision_importable()
    require_package("lerobot", extra="lerobot")
    try:
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
        from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
        from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
        from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
        from lerobot.processor import PolicyProcessorPipeline
        from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action
    except ImportError as exc:
        raise MissingDependencyError(
            f"LeRobot is installed but SmolVLA could not be imported ({exc}). Install its dependencies "
            "with `make install-lerobot` (or `pip install 'salus[lerobot]'` and then "
            "`pip install --no-deps lerobot==0.4.4`)."
        ) from exc
    return SimpleNamespace(
        PreTrainedConfig=PreTrainedConfig,
        FeatureType=FeatureType,
        NormalizationMode=NormalizationMode,
        PolicyFeature=PolicyFeature,
        SmolVLAConfig=SmolVLAConfig,
        SmolVLAPolicy=SmolVLAPolicy,
        make_smolvla_pre_post_processors=make_smolvla_pre_post_processors,
        PolicyProcessorPipeline=PolicyProcessorPipeline,
        policy_action_to_transition=policy_action_to_transition,
        transition_to_policy_action=transition_to_policy_action,
    )
