"""The predictor models, by name: one entry per model (robomimic's ``register_algo_factory_func``).

A model is one :class:`ModelSpec`: its input kind (which features it reads), its family (how the
evaluation groups it), its objective (which targets and loss training uses), the network class
(``module:Class``, imported lazily so this module stays cheap) and its default feature groups.
Adding a model is one network class in ``models.py`` and one :func:`register_model` call here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from salus.errors import InvalidNameError

__all__ = ["ModelSpec", "register_model", "get_model_spec", "model_names", "INPUT_KINDS", "OBJECTIVES"]

INPUT_KINDS = ("signals", "embedding", "features")
OBJECTIVES = ("horizons", "safe-mlp", "safe-lstm", "outcome-hazard", "boosted-trees")
FAMILIES = ("salus", "safe", "oracle")


@dataclass(frozen=True)
class ModelSpec:
    """What training, evaluation and the monitor need to know about a model name."""

    name: str
    input_kind: str  # "signals": 12 signals + valid flags; "embedding": SAFE's; "features": FeatureSpace
    family: str  # "salus" (ours, deployable), "safe" (published), "oracle" (privileged, not deployable)
    objective: str  # see OBJECTIVES
    network: str  # "module:Class" under salus.predictor, built as Class(cfg, in_dim, n_horizons, n_types)
    note: str
    feature_groups: tuple[str, ...] = ()  # default FeatureSpace groups for input_kind "features"

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise InvalidNameError("input kind", self.input_kind, INPUT_KINDS)
        if self.objective not in OBJECTIVES:
            raise InvalidNameError("objective", self.objective, OBJECTIVES)
        if self.family not in FAMILIES:
            raise InvalidNameError("model family", self.family, FAMILIES)

    @property
    def deployable(self) -> bool:
        return self.family != "oracle"

    def network_class(self) -> Any:
        module, cls = self.network.split(":")
        return getattr(importlib.import_module(f"salus.predictor.{module}"), cls)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model (a name may be registered once)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_model_spec(name: str) -> ModelSpec:
    """The spec of ``name``; ``InvalidNameError`` lists the registered names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidNameError("model", name, tuple(_REGISTRY)) from None


def model_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


_RICH = ("signals", "baselines", "state", "embedding", "hidden", "knn")

register_model(
    ModelSpec(
        "salus-risk",
        "features",
        "salus",
        "outcome-hazard",
        "models:SalusRisk",
        "P(episode fails), GRU over every policy internal + kNN distances",
        _RICH,
    )
)
register_model(
    ModelSpec(
        "salus-trees",
        "features",
        "salus",
        "boosted-trees",
        "models:SalusTrees",
        "P(episode fails), gradient-boosted trees on one step's policy internals + kNN distances",
        _RICH,
    )
)
register_model(
    ModelSpec(
        "salus-mlp", "signals", "salus", "horizons", "models:SalusMLP", "P(failure within horizon), seed MLP"
    )
)
register_model(
    ModelSpec(
        "salus-tcn", "signals", "salus", "horizons", "models:SalusTCN", "P(failure within horizon), TCN"
    )
)
register_model(ModelSpec("safe-mlp", "embedding", "safe", "safe-mlp", "models:SafeMLP", "trajectory score"))
register_model(
    ModelSpec("safe-lstm", "embedding", "safe", "safe-lstm", "models:SafeLSTM", "trajectory score")
)
register_model(
    ModelSpec(
        "oracle-risk",
        "features",
        "oracle",
        "outcome-hazard",
        "models:SalusRisk",
        "NOT DEPLOYABLE: salus-risk + privileged simulator state",
        (*_RICH, "privileged"),
    )
)
