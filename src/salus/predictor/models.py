"""The predictor networks. Each runs causally on whole sequences ``(B, T, D)`` for training
and evaluation, and step by step with explicit per-environment state for the runtime monitor;
both paths give the same numbers.

``probs`` are failure probabilities ``(B, T, P)``: P = number of horizons for our models (any
failure within each horizon), P = 1 for SAFE's (the trajectory failure score).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .config import (
    ModelConfig,
    SafeLSTMConfig,
    SafeMLPConfig,
    SalusMLPConfig,
    SalusRiskConfig,
    SalusTCNConfig,
    SalusTreesConfig,
)

__all__ = [
    "PredictorNet",
    "SalusMLP",
    "SalusTCN",
    "SalusRisk",
    "SalusTrees",
    "SafeMLP",
    "SafeLSTM",
    "build_model",
]

State = dict[str, Tensor]


class PredictorNet(nn.Module):
    """Common interface: ``forward(x (B,T,D)) -> raw outputs``, ``probs_from(raw) -> (B,T,P)``,
    ``init_state(B)``, ``step(x (B,D), state) -> (probs (B,P), state)``, ``reset_state(state, i)``."""

    n_probs: int
    last_full: Tensor | None = None  # our models: (B, H, 1+K) probabilities of the last ``step``

    def probs_from(self, raw: Tensor) -> Tensor:
        raise NotImplementedError

    def probs(self, x: Tensor) -> Tensor:
        return self.probs_from(self(x))

    def init_state(self, batch: int) -> State:
        return {}

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return self.probs(x[:, None, :])[:, 0], state

    def reset_state(self, state: State, env_index: int | None = None) -> State:
        if not state:
            return state
        if env_index is None:
            batch = next(iter(state.values())).shape[self._state_batch_dim()]
            return self.init_state(batch)
        for key, value in state.items():
            if self._state_batch_dim() == 0:
                value[env_index] = 0
            else:
                value[:, env_index] = 0
            state[key] = value
        return state

    def _state_batch_dim(self) -> int:
        return 0


def _mlp(dims: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class SalusMLP(PredictorNet):
    """Per-step MLP (the seed's design): (B,T,D) -> logits (B,T,H,1+K)."""

    def __init__(self, cfg: SalusMLPConfig, in_dim: int, n_horizons: int, n_types: int):
        super().__init__()
        self.n_h, self.n_out = n_horizons, 1 + n_types
        self.n_probs = n_horizons
        self.body = _mlp([in_dim, *cfg.mlp_hidden], cfg.dropout)
        self.head = nn.Linear(cfg.mlp_hidden[-1], self.n_h * self.n_out)

    def forward(self, x: Tensor) -> Tensor:
        y = self.head(self.body(x))
        return y.view(*x.shape[:-1], self.n_h, self.n_out)

    def probs_from(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw[..., 0])

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        full = torch.sigmoid(self(x[:, None, :])[:, 0])  # (B, H, 1+K)
        self.last_full = full
        return full[..., 0], state


class SalusTCN(PredictorNet):
    """Causal dilated temporal convolution over the last ``receptive_field`` steps.

    The input is left-padded with ``receptive_field - 1`` zero steps (zero = "before the episode":
    normalised mean, all signals invalid) and every convolution is unpadded, so the output at t
    depends exactly on inputs t-R+1..t. The streaming path keeps, per environment and layer, the
    activations its dilated kernel still needs, initialised to the response to the zero padding.
    """

    def __init__(self, cfg: SalusTCNConfig, in_dim: int, n_horizons: int, n_types: int):
        super().__init__()
        self.n_h, self.n_out = n_horizons, 1 + n_types
        self.n_probs = n_horizons
        self.in_dim = in_dim
        self.kernel = int(cfg.tcn_kernel)
        self.dilations = tuple(int(d) for d in cfg.tcn_dilations)
        self.receptive_field = 1 + (self.kernel - 1) * sum(self.dilations)  # steps of history seen
        C = cfg.tcn_channels
        self.inp = nn.Conv1d(in_dim, C, 1)
        self.convs = nn.ModuleList(nn.Conv1d(C, C, cfg.tcn_kernel, dilation=d) for d in cfg.tcn_dilations)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(C, self.n_h * self.n_out)

    def _run(self, x: Tensor) -> Tensor:
        """``x (B, R-1+T, D)`` left-padded -> logits (B, T, H, 1+K)."""
        h = F.relu(self.inp(x.transpose(1, 2)))
        for conv in self.convs:
            y = self.drop(F.relu(conv(h)))
            h = h[..., h.shape[-1] - y.shape[-1] :] + y
        out = self.head(h.transpose(1, 2))
        return out.view(x.shape[0], -1, self.n_h, self.n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self._run(F.pad(x, (0, 0, self.receptive_field - 1, 0)))

    def probs_from(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw[..., 0])

    def _zero_response(self) -> list[Tensor]:
        """Activations ``(C,)`` entering each conv layer at padded steps (the response to zero input)."""
        with torch.no_grad():
            h = F.relu(self.inp.bias) if self.inp.bias is not None else torch.zeros(self.inp.out_channels)
            out = []
            for conv in self._conv_list():
                out.append(h)
                window = h[None, :, None].expand(1, -1, self.kernel)
                y = F.relu(F.conv1d(window, conv.weight, conv.bias))  # undilated: constant input
                h = h + y[0, :, 0]
        return out

    def _conv_list(self) -> list[nn.Conv1d]:
        return [c for c in self.convs if isinstance(c, nn.Conv1d)]

    def init_state(self, batch: int) -> State:
        """Per conv layer, the last ``(k-1)*d`` activations entering it ``(B, C, (k-1)*d)``."""
        state = {}
        for i, (d, c) in enumerate(zip(self.dilations, self._zero_response(), strict=True)):
            state[f"buf{i}"] = c[None, :, None].expand(batch, -1, (self.kernel - 1) * d).clone()
        return state

    def reset_state(self, state: State, env_index: int | None = None) -> State:
        if env_index is None:
            return self.init_state(next(iter(state.values())).shape[0])
        for i, c in enumerate(self._zero_response()):
            state[f"buf{i}"][env_index] = c[:, None]
        return state

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Incremental: O(layers) per step, the same numbers as the sequence path."""
        h = F.relu(F.linear(x, self.inp.weight[:, :, 0], self.inp.bias))  # (B, C)
        new: State = {}
        for i, conv in enumerate(self._conv_list()):
            window = torch.cat([state[f"buf{i}"], h[:, :, None]], dim=2)  # (B, C, (k-1)d + 1)
            taps = window[:, :, :: self.dilations[i]].reshape(x.shape[0], -1)  # the k dilated taps
            y = F.relu(F.linear(taps, conv.weight.reshape(conv.weight.shape[0], -1), conv.bias))
            new[f"buf{i}"] = window[:, :, 1:]
            h = h + y
        full = torch.sigmoid(self.head(h).view(x.shape[0], self.n_h, self.n_out))  # (B, H, 1+K)
        self.last_full = full
        return full[..., 0], new


class SafeMLP(PredictorNet):
    """SAFE-MLP: per-step score ``sigmoid(MLP(e_t))`` accumulated over time (running mean or
    cumulative sum); the accumulated score is the failure score. Output raw = per-step logits (B,T)."""

    def __init__(self, cfg: SafeMLPConfig, in_dim: int, n_horizons: int = 1, n_types: int = 0):
        super().__init__()
        self.n_probs = 1
        self.accumulate = cfg.safe_accumulate
        self.body = _mlp([in_dim, *cfg.safe_hidden], cfg.dropout)
        self.head = nn.Linear(cfg.safe_hidden[-1], 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))[..., 0]

    def accumulated(self, raw: Tensor) -> Tensor:
        """(B,T) logits -> accumulated score (B,T)."""
        s = torch.cumsum(torch.sigmoid(raw), dim=-1)
        if self.accumulate == "mean":
            s = s / torch.arange(1, raw.shape[-1] + 1, dtype=s.dtype)
        return s

    def probs_from(self, raw: Tensor) -> Tensor:
        return self.accumulated(raw)[..., None]

    def init_state(self, batch: int) -> State:
        return {"sum": torch.zeros(batch), "count": torch.zeros(batch)}

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        s = torch.sigmoid(self(x))
        total, count = state["sum"] + s, state["count"] + 1
        score = total / count if self.accumulate == "mean" else total
        return score[:, None], {"sum": total, "count": count}


class SafeLSTM(PredictorNet):
    """SAFE-LSTM: one LSTM layer over the embedding sequence, a sigmoid failure score per step."""

    def __init__(self, cfg: SafeLSTMConfig, in_dim: int, n_horizons: int = 1, n_types: int = 0):
        super().__init__()
        self.n_probs = 1
        self.hidden = cfg.lstm_hidden
        self.lstm = nn.LSTM(in_dim, cfg.lstm_hidden, batch_first=True)
        self.head = nn.Linear(cfg.lstm_hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.lstm(x)[0])[..., 0]

    def probs_from(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw)[..., None]

    def _state_batch_dim(self) -> int:
        return 1

    def init_state(self, batch: int) -> State:
        return {"h": torch.zeros(1, batch, self.hidden), "c": torch.zeros(1, batch, self.hidden)}

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        out, (h, c) = self.lstm(x[:, None, :], (state["h"], state["c"]))
        return torch.sigmoid(self.head(out[:, 0]))[:, :1], {"h": h, "c": c}


class SalusRisk(PredictorNet):
    """Causal GRU over per-step features ``(B, T, D)`` -> logits ``(B, T, 1 + H, 1 + K)``.

    Row 0 answers "will this episode fail" (any failure, then one column per failure type); row
    1 + j "will it fail within ``horizons[j]`` steps" (a discrete hazard over horizons). The head
    reads the GRU state and the projected current input (a skip), so a step's evidence counts at once.
    ``probs`` ``(B, T, 1 + H)`` are the any-failure columns; column 0 is the protocol's score.
    """

    def __init__(self, cfg: SalusRiskConfig, in_dim: int, n_horizons: int, n_types: int):
        super().__init__()
        C = int(cfg.gru_hidden)
        from .objectives import get_objective

        # the "episode fails" row, unless trained on the horizons alone (the ablation)
        outcome_row = int(get_objective(cfg.objective_name).outcome_columns)
        self.n_rows, self.n_out = outcome_row + n_horizons, 1 + n_types
        self.n_probs = self.n_rows
        self.hidden = C
        self.inp = nn.Sequential(nn.Linear(in_dim, C), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.gru = nn.GRU(C, C, batch_first=True)
        self.head = nn.Linear(2 * C, self.n_rows * self.n_out)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        g, _ = self.gru(h)
        y = self.head(torch.cat([g, h], dim=-1))
        return y.view(*x.shape[:-1], self.n_rows, self.n_out)

    def probs_from(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw[..., 0])

    def _state_batch_dim(self) -> int:
        return 1

    def init_state(self, batch: int) -> State:
        return {"h": torch.zeros(1, batch, self.hidden)}

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h = self.inp(x[:, None, :])
        g, hn = self.gru(h, state["h"])
        full = torch.sigmoid(
            self.head(torch.cat([g, h], dim=-1))[:, 0].view(x.shape[0], self.n_rows, self.n_out)
        )
        self.last_full = full
        return full[..., 0], {"h": hn}


class SalusTrees(PredictorNet):
    """Gradient-boosted trees on one step's features: ``(B, T, D) -> logits (B, T, 1, 1)`` ("will
    this episode fail"), each step scored on its own features (the protocol's running max makes
    the alarm causal).

    The ensemble is held as tensors: ``cfg.trees`` trees of at most ``2 * cfg.tree_leaves - 1``
    nodes (a node splits on ``x[feature] <= threshold``; unused trees are one zero leaf), filled
    from a fitted scikit-learn ``HistGradientBoostingClassifier`` by :meth:`load_sklearn`, so the
    checkpoint is safetensors and the monitor needs no scikit-learn."""

    feature: Tensor  # (trees, nodes) int64 split feature
    threshold: Tensor  # (trees, nodes) float64: go left when x[feature] <= threshold
    left: Tensor  # (trees, nodes) int64 child index within the tree
    right: Tensor
    leaf: Tensor  # (trees, nodes) bool
    value: Tensor  # (trees, nodes) float64 leaf log-odds contribution
    bias: Tensor  # () float64 baseline log-odds
    depth: Tensor  # () int64 deepest leaf

    def __init__(self, cfg: SalusTreesConfig, in_dim: int, n_horizons: int = 1, n_types: int = 0):
        super().__init__()
        self.n_probs = 1
        n_trees, n_nodes = int(cfg.trees), 2 * int(cfg.tree_leaves) - 1
        self.register_buffer("feature", torch.zeros(n_trees, n_nodes, dtype=torch.int64))
        self.register_buffer("threshold", torch.zeros(n_trees, n_nodes, dtype=torch.float64))
        self.register_buffer("left", torch.zeros(n_trees, n_nodes, dtype=torch.int64))
        self.register_buffer("right", torch.zeros(n_trees, n_nodes, dtype=torch.int64))
        self.register_buffer("leaf", torch.ones(n_trees, n_nodes, dtype=torch.bool))
        self.register_buffer("value", torch.zeros(n_trees, n_nodes, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros((), dtype=torch.float64))
        self.register_buffer("depth", torch.zeros((), dtype=torch.int64))

    def load_sklearn(self, clf: Any, n_trees: int | None = None) -> None:
        """Copy the first ``n_trees`` trees (default all) of a fitted binary
        ``HistGradientBoostingClassifier`` on numeric features into the buffers."""
        trees = [p[0].nodes for p in clf._predictors[:n_trees]]
        cap_trees, cap_nodes = self.feature.shape
        if len(trees) > cap_trees or any(len(t) > cap_nodes for t in trees):
            raise ValueError(
                f"the ensemble has {len(trees)} trees of up to {max(len(t) for t in trees)} nodes; "
                f"the config allows {cap_trees} x {cap_nodes}"
            )
        for name in ("feature", "threshold", "left", "right", "value"):
            getattr(self, name).zero_()
        self.leaf.fill_(True)
        for k, nodes in enumerate(trees):
            n = len(nodes)
            self.feature[k, :n] = torch.from_numpy(nodes["feature_idx"].astype("int64"))
            self.threshold[k, :n] = torch.from_numpy(nodes["num_threshold"].astype("float64"))
            self.left[k, :n] = torch.from_numpy(nodes["left"].astype("int64"))
            self.right[k, :n] = torch.from_numpy(nodes["right"].astype("int64"))
            self.leaf[k, :n] = torch.from_numpy(nodes["is_leaf"].astype(bool))
            self.value[k, :n] = torch.from_numpy(nodes["value"].astype("float64"))
        self.bias.fill_(float(clf._baseline_prediction.ravel()[0]))
        self.depth.fill_(max((int(t["depth"].max()) for t in trees), default=0))

    def flat_tables(self) -> dict[str, Tensor]:
        """The ensemble as flat per-node tables over ``trees * nodes`` with absolute child indices;
        a leaf is its own child (split on feature 0 at threshold 0), so a walk needs no leaf test:
        ``feature``, ``threshold``, ``left``, ``right``, ``value`` and the ``root`` of each tree."""
        used = ~self.leaf[:, 0] | (self.value[:, 0] != 0)  # unused trees (after the choice) add 0
        feature, threshold, leaf = self.feature[used], self.threshold[used], self.leaf[used]
        n_trees, n_nodes = feature.shape
        offset = (torch.arange(n_trees) * n_nodes)[:, None]
        own = torch.arange(n_trees * n_nodes).view(n_trees, n_nodes)
        return {
            "feature": torch.where(leaf, 0, feature).reshape(-1),
            "threshold": torch.where(leaf, 0.0, threshold).reshape(-1),
            "left": torch.where(leaf, own, self.left[used] + offset).reshape(-1),
            "right": torch.where(leaf, own, self.right[used] + offset).reshape(-1),
            "value": self.value[used].reshape(-1),
            "root": offset[:, 0],
        }

    def tree_logits(self, x: Tensor) -> Tensor:
        """``(N, D) -> (N,)`` float64: the ensemble's log-odds of each row."""
        t = self.flat_tables()
        rows = x.to(torch.float64)
        node = t["root"].expand(rows.shape[0], -1)
        for _ in range(int(self.depth)):
            go_left = rows.gather(1, t["feature"][node]) <= t["threshold"][node]
            node = torch.where(go_left, t["left"][node], t["right"][node])
        return t["value"][node].sum(dim=1) + self.bias

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        return self.tree_logits(x.reshape(B * T, D)).to(torch.float32).view(B, T, 1, 1)

    def probs_from(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw[..., 0])

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        p = torch.sigmoid(self.tree_logits(x).to(torch.float32))[:, None]
        self.last_full = None  # no per-failure-type heads
        return p, state


def build_model(cfg: ModelConfig, in_dim: int, n_horizons: int, n_types: int) -> PredictorNet:
    """The network registered for ``cfg.name`` (``salus.predictor.registry``), input width ``in_dim``."""
    from .registry import get_model_spec

    net: PredictorNet = get_model_spec(cfg.name).network_class()(cfg, in_dim, n_horizons, n_types)
    return net
