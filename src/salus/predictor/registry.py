"""The predictor models, by name: one entry per model (robomimic's ``register_algo_factory_func``).

A model is one :class:`ModelSpec`: its input kind (which features it reads), its family (how the
evaluation groups it), its objective (which targets and loss training uses), the network class
(``module:Class``, imported lazily so this module stays cheap) and its default feature groups.
Adding a model is one network class in ``models.py``, its config class in ``config.py`` (or an
existing one) and one :func:`register_model` call here.

The training-free baselines (objective ``"baseline"``, ``salus.predictor.baseline_models``) are
models too, so ``salus train --model knn-cosine`` writes an ordinary checkpoint the monitor runs
live: each names the evaluation method whose score it is (``method``, e.g. ``embedding:knn_cosine``;
the model name is the part after the colon with ``-`` for ``_``) and has that method's family.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from salus.errors import InvalidInputError, InvalidNameError

__all__ = [
    "ModelSpec",
    "register_model",
    "get_model_spec",
    "model_names",
    "INPUT_KINDS",
    "OBJECTIVES",
    "ARCH_FIELDS",
]

INPUT_KINDS = ("signals", "embedding", "features", "baselines")
OBJECTIVES = ("horizons", "safe-mlp", "safe-lstm", "outcome-hazard", "boosted-trees", "baseline")
FAMILIES = ("salus", "safe", "oracle", "baseline", "embedding")
# The training-free families: the evaluation's method families of the same scores
# (``salus.predictor.evaluate``: ``baseline:*`` online baselines, ``embedding:*`` embedding baselines).
BASELINE_FAMILIES = {"baseline": "baselines", "embedding": "embedding"}  # family -> input kind
# Every architecture field of the models' config classes (``salus.predictor.config.CONFIG_CLASSES``,
# checked there): a checkpoint written before each model had its own class holds all of them.
ARCH_FIELDS = (
    "mlp_hidden", "tcn_channels", "tcn_kernel", "tcn_dilations", "safe_hidden", "safe_accumulate",
    "safe_threshold", "lstm_hidden", "dropout", "gru_hidden", "pca", "trees", "tree_leaves", "tree_lr",
    "tree_min_leaf", "tree_l2",
)  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """What training, evaluation and the monitor need to know about a model name."""

    name: str
    # "signals": 12 signals + valid flags; "embedding": the observation embedding (SAFE's, the
    # embedding baselines'); "features": FeatureSpace; "baselines": the online baseline scores
    input_kind: str
    # "salus" (ours, deployable), "safe" (published), "oracle" (privileged, not deployable),
    # "baseline" / "embedding" (training-free published scores, see BASELINE_FAMILIES)
    family: str
    objective: str  # see OBJECTIVES; "baseline": no training, fitted as the evaluation fits ``method``
    network: str  # "module:Class" under salus.predictor, built as Class(cfg, in_dim, n_horizons, n_types)
    note: str
    feature_groups: tuple[str, ...] = ()  # default FeatureSpace groups for input_kind "features"
    method: str = ""  # training-free baselines: the evaluation method whose score this is
    # The model's config class in ``salus.predictor.config`` (``CONFIG_CLASSES``): its fields are the
    # architecture options this model reads (setting another is an error; a checkpoint records these)
    config: str = "BaselineConfig"

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise InvalidNameError("input kind", self.input_kind, INPUT_KINDS)
        if self.objective not in OBJECTIVES:
            raise InvalidNameError("objective", self.objective, OBJECTIVES)
        if self.family not in FAMILIES:
            raise InvalidNameError("model family", self.family, FAMILIES)
        free = self.family in BASELINE_FAMILIES
        if free != (self.objective == "baseline") or free != bool(self.method):
            raise InvalidInputError(
                f"model {self.name!r}: the families {tuple(BASELINE_FAMILIES)} and only they have the "
                "objective 'baseline' and an evaluation method"
            )
        if free and (
            self.method.partition(":")[0] != self.family or self.input_kind != BASELINE_FAMILIES[self.family]
        ):
            raise InvalidInputError(
                f"model {self.name!r}: a {self.family!r} baseline reads {BASELINE_FAMILIES[self.family]!r} "
                f"and names a '{self.family}:' method, got {self.input_kind!r} and {self.method!r}"
            )

    @property
    def deployable(self) -> bool:
        return self.family != "oracle"

    @property
    def training_free(self) -> bool:
        """A published baseline score fitted without training (not in ``salus train --model all``)."""
        return self.objective == "baseline"

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
        config="SalusRiskConfig",
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
        config="SalusTreesConfig",
    )
)
register_model(
    ModelSpec(
        "salus-mlp",
        "signals",
        "salus",
        "horizons",
        "models:SalusMLP",
        "P(failure within horizon), seed MLP",
        config="SalusMLPConfig",
    )
)
register_model(
    ModelSpec(
        "salus-tcn",
        "signals",
        "salus",
        "horizons",
        "models:SalusTCN",
        "P(failure within horizon), TCN",
        config="SalusTCNConfig",
    )
)
register_model(
    ModelSpec(
        "safe-mlp",
        "embedding",
        "safe",
        "safe-mlp",
        "models:SafeMLP",
        "trajectory score",
        config="SafeMLPConfig",
    )
)
register_model(
    ModelSpec(
        "safe-lstm",
        "embedding",
        "safe",
        "safe-lstm",
        "models:SafeLSTM",
        "trajectory score",
        config="SafeLSTMConfig",
    )
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
        config="SalusRiskConfig",
    )
)

# The training-free baselines, one per evaluation method (``salus.predictor.baseline_models``).
for _method, _note in (
    ("embedding:knn_cosine", "kNN cosine distance of the observation embedding to training successes"),
    ("embedding:knn_euclidean", "kNN Euclidean distance of the observation embedding to training successes"),
    ("embedding:mahalanobis", "Mahalanobis distance of the observation embedding to training successes"),
    ("baseline:stac", "STAC (Sentinel): MMD between consecutive chunk batches"),
    ("baseline:stac_single", "STAC-single: distance between consecutive executed chunks"),
    ("baseline:action_total_variance", "action total variance of K sampled chunks"),
    ("baseline:fiper_chunk_entropy", "FIPER's action-chunk entropy"),
    ("embedding:rnd", "FAIL-Detect's RND: random network distillation error on the observation embedding"),
    ("embedding:logpzo", "FAIL-Detect's logpZO: flow-matching noise image of the observation embedding"),
):
    _family, _, _score = _method.partition(":")
    register_model(
        ModelSpec(
            _score.replace("_", "-"),
            BASELINE_FAMILIES[_family],
            _family,
            "baseline",
            "baseline_models:EmbeddingBaselineNet"
            if _family == "embedding"
            else "baseline_models:OnlineBaselineNet",
            f"training-free: {_note}",
            method=_method,
        )
    )
