"""Streaming runners of a trained predictor network: one step of B environments (``streaming``).

Every runner has ``init_state(B)``, ``reset_state(state, i)``, ``repeat_state(state, i, n)`` and
``step(x (B, D) float32, state) -> (probs (B, P) float64, new_state)`` and, after a step,
``last_types`` (B, P, K) per-failure-type probabilities (None for models without type heads);
``step`` never modifies the state it is given (the monitor's attribution re-runs a step from the
previous state).

``salus-mlp``, ``salus-tcn``, ``salus-risk`` (its GRU), ``salus-trees`` and the training-free
baselines run in numpy (the same numbers as their torch modules up to float32 rounding, several
times less per-call overhead at B=1); any other network (SAFE's) runs through its own torch ``step``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["TorchRunner", "NumpyMLP", "NumpyTCN", "NumpyGRU", "NumpyTrees", "NumpyBaseline", "make_runner"]


def _np(t: Any) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return _expit()(z.astype(np.float64))  # type: ignore[no-any-return]


@functools.cache
def _expit() -> Any:
    from scipy.special import expit  # a ufunc: no overflow warnings, no error-state context

    return expit


class _Head:
    """The output head of salus-mlp / salus-tcn / salus-risk: (B, C) -> probabilities (B, R) of any
    failure for each of its R rows (horizons; salus-risk: the outcome, then the horizons), and per
    failure type (B, R, K) in ``last_types``."""

    def __init__(self, model: Any, rows: int | None = None) -> None:
        self.w = _np(model.head.weight).T.copy()  # (C, R * (1 + K))
        self.b = _np(model.head.bias)
        self.n_h, self.n_out = int(model.n_h if rows is None else rows), int(model.n_out)

    def __call__(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = _sigmoid(h @ self.w + self.b).reshape(h.shape[0], self.n_h, self.n_out)
        return p[:, :, 0], p[:, :, 1:]


class _Stateless:
    """The state methods of a runner whose step depends on this step's input alone."""

    def init_state(self, batch: int) -> Any:
        return {}

    def reset_state(self, state: Any, i: int) -> Any:
        return state

    def repeat_state(self, state: Any, i: int, n: int) -> Any:
        return {}


class TorchRunner:
    """Any ``PredictorNet`` through its torch ``step`` (LSTM, SAFE-MLP, future models)."""

    def __init__(self, model: Any) -> None:
        import torch

        self.model = model
        self._torch = torch
        self.last_types: np.ndarray | None = None

    def init_state(self, batch: int) -> Any:
        return self.model.init_state(batch)

    def reset_state(self, state: Any, i: int) -> Any:
        return self.model.reset_state(state, i)

    def repeat_state(self, state: Any, i: int, n: int) -> Any:
        if not state:
            return {}
        dim = self.model._state_batch_dim()
        return {k: v.narrow(dim, i, 1).repeat_interleave(n, dim=dim) for k, v in state.items()}

    def step(self, x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        torch = self._torch
        with torch.no_grad():  # not inference_mode: models may update their state tensors in place
            p, new = self.model.step(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), state)
        full = getattr(self.model, "last_full", None)
        self.last_types = None if full is None else full.numpy()[:, :, 1:].astype(np.float64)
        return p.numpy().astype(np.float64), new


class NumpyMLP(_Stateless):
    """``SalusMLP`` in eval mode: Linear/ReLU layers, then the head's "any failure" logits."""

    def __init__(self, model: Any) -> None:
        from torch import nn

        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        for module in model.body:
            if isinstance(module, nn.Linear):
                self.layers.append((_np(module.weight).T.copy(), _np(module.bias)))
            elif not isinstance(module, (nn.ReLU, nn.Dropout)):
                raise TypeError(f"unsupported layer {type(module).__name__}")
        self.head = _Head(model)
        self.last_types: np.ndarray | None = None

    @staticmethod
    def supports(model: Any) -> bool:
        from torch import nn

        return type(model).__name__ == "SalusMLP" and all(
            isinstance(m, (nn.Linear, nn.ReLU, nn.Dropout)) for m in model.body
        )

    def step(self, x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        h = np.asarray(x, dtype=np.float32)
        for w, bias in self.layers:
            h = h @ w
            h += bias
            np.maximum(h, 0.0, out=h)
        probs, self.last_types = self.head(h)
        return probs, state


class NumpyTCN:
    """``SalusTCN`` computed incrementally: per layer, a ring of the last ``(k - 1) * d + 1``
    inputs; each step writes the newest into the ring slot of the oldest (which no later step reads)
    and computes only the newest position: no copy of the history per step. Before the episode the
    input is zero (as the torch module's left padding), so each ring starts filled with that
    layer's activation on an all-zero input history.

    The state is ``{"rings": [(B, L, C) per layer], "t": steps so far}``; a step writes one slot of
    the rings it is given, outside the window that state reads, so the given state still steps
    correctly (to step it twice, step a :meth:`repeat_state` copy, as the monitor's attribution does)."""

    def __init__(self, model: Any) -> None:
        self.w_in = _np(model.inp.weight)[:, :, 0].T.copy()  # (D, C)
        self.b_in = _np(model.inp.bias)
        self.convs: list[tuple[list[np.ndarray], np.ndarray, int, int]] = []
        for conv in model.convs:
            w = _np(conv.weight)  # (C_out, C_in, k)
            k, d = int(w.shape[2]), int(conv.dilation[0])
            self.convs.append(([w[:, :, j].T.copy() for j in range(k)], _np(conv.bias), d, k))
        self.head = _Head(model)
        self.last_types: np.ndarray | None = None
        a = np.maximum(self.b_in, 0.0)
        self.rest: list[np.ndarray] = []  # constant activation of each conv layer's input before the episode
        for taps, bias, _, _ in self.convs:
            self.rest.append(a.copy())
            a = a + np.maximum(sum(a @ t for t in taps) + bias, 0.0)

    @staticmethod
    def supports(model: Any) -> bool:
        return type(model).__name__ == "SalusTCN"

    def init_state(self, batch: int) -> Any:
        rings = [
            np.repeat(rest[None, None, :], (k - 1) * d + 1, axis=1).repeat(batch, axis=0)
            for rest, (_, _, d, k) in zip(self.rest, self.convs, strict=True)
        ]
        return {"rings": rings, "t": 0}

    def reset_state(self, state: Any, i: int) -> Any:
        for ring, rest in zip(state["rings"], self.rest, strict=True):
            ring[i] = rest
        return state

    def repeat_state(self, state: Any, i: int, n: int) -> Any:
        return {"rings": [np.repeat(ring[i : i + 1], n, axis=0) for ring in state["rings"]], "t": state["t"]}

    def step(self, x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        h = np.asarray(x, dtype=np.float32) @ self.w_in + self.b_in
        np.maximum(h, 0.0, out=h)
        t = state["t"]
        for ring, (taps, bias, d, k) in zip(state["rings"], self.convs, strict=True):
            size = ring.shape[1]
            slot = t % size  # the oldest input: out of this step's window
            ring[:, slot] = h
            z = bias + h @ taps[k - 1]
            for j in range(k - 1):
                z = z + ring[:, (slot - (k - 1 - j) * d) % size] @ taps[j]
            h = h + np.maximum(z, 0.0)
        probs, self.last_types = self.head(h)
        return probs, {"rings": state["rings"], "t": t + 1}


class NumpyGRU:
    """``SalusRisk`` in eval mode: the input layer (Linear, ReLU), one GRU cell step (PyTorch's gate
    equations and weight layout: reset, update, new) and the head on ``[g, h]``. The state is
    ``{"h": (B, C) float32}``; a step returns a new state and never writes the one it is given."""

    def __init__(self, model: Any) -> None:
        lin = model.inp[0]
        self.w_in, self.b_in = _np(lin.weight).T.copy(), _np(lin.bias)  # (D, C), (C,)
        gru = model.gru
        self.w_ih, self.b_ih = _np(gru.weight_ih_l0).T.copy(), _np(gru.bias_ih_l0)  # (C, 3C), (3C,)
        self.w_hh, self.b_hh = _np(gru.weight_hh_l0).T.copy(), _np(gru.bias_hh_l0)
        self.c = int(model.hidden)
        self.head = _Head(model, rows=int(model.n_rows))  # on [g, h]: (2C, R * (1 + K))
        self.last_types: np.ndarray | None = None

    @staticmethod
    def supports(model: Any) -> bool:
        from torch import nn

        gru = getattr(model, "gru", None)
        return (
            type(model).__name__ == "SalusRisk"
            and isinstance(gru, nn.GRU)
            and gru.num_layers == 1
            and gru.bias
            and not gru.bidirectional
            and all(isinstance(m, (nn.Linear, nn.ReLU, nn.Dropout)) for m in model.inp)
        )

    def init_state(self, batch: int) -> Any:
        return {"h": np.zeros((batch, self.c), dtype=np.float32)}

    def reset_state(self, state: Any, i: int) -> Any:
        state["h"][i] = 0.0
        return state

    def repeat_state(self, state: Any, i: int, n: int) -> Any:
        return {"h": np.repeat(state["h"][i : i + 1], n, axis=0)}

    def step(self, x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        c, h = self.c, state["h"]
        u = np.asarray(x, dtype=np.float32) @ self.w_in
        u += self.b_in
        np.maximum(u, 0.0, out=u)
        gi = u @ self.w_ih + self.b_ih
        gh = h @ self.w_hh + self.b_hh
        expit = _expit()  # in float32, as the torch cell
        r = expit(gi[:, :c] + gh[:, :c])
        z = expit(gi[:, c : 2 * c] + gh[:, c : 2 * c])
        n = np.tanh(gi[:, 2 * c :] + r * gh[:, 2 * c :])
        g = (1.0 - z) * n + z * h
        probs, self.last_types = self.head(np.concatenate([g, u], axis=1))
        return probs, {"h": g.astype(np.float32)}


class NumpyTrees(_Stateless):
    """``SalusTrees``: the same tree walk as its torch ``tree_logits`` on its flat tables (a few
    microseconds per numpy call where torch takes tens at B = 1)."""

    def __init__(self, model: Any) -> None:
        tables = {k: v.detach().cpu().numpy() for k, v in model.flat_tables().items()}
        self.feature, self.threshold = tables["feature"], tables["threshold"]
        self.left, self.right, self.value, self.root = (
            tables["left"],
            tables["right"],
            tables["value"],
            tables["root"],
        )
        self.bias, self.depth = float(model.bias), int(model.depth)
        # children[n] = (right, left): one gather per level, indexed by the comparison
        self.children = np.stack([self.right, self.left], axis=1)
        self._rows = np.zeros((0, 1), dtype=np.int64)  # arange(B)[:, None], kept for the batch size
        self.last_types: np.ndarray | None = None

    @staticmethod
    def supports(model: Any) -> bool:
        return type(model).__name__ == "SalusTrees"

    def step(self, x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        rows = np.asarray(x, dtype=np.float32).astype(np.float64)
        b = rows.shape[0]
        if self._rows.shape[0] != b:
            self._rows = np.arange(b)[:, None]
        r, children = self._rows, self.children
        node = np.broadcast_to(self.root, (b, self.root.size))
        for _ in range(self.depth):
            go_left = rows[r, self.feature[node]] <= self.threshold[node]
            node = children[node, go_left.view(np.uint8)]
        z = self.value[node].sum(axis=1) + self.bias
        return _sigmoid(z.astype(np.float32))[:, None], state


class NumpyBaseline(_Stateless):
    """The training-free baselines' nets (``salus.predictor.baseline_models``) without torch: an
    online baseline's recorded column (non-finite steps at the training minimum ``fill``), or an
    embedding baseline's scorer on the raw embedding; the score is the one probability column."""

    def __init__(self, model: Any) -> None:
        self.scorer = getattr(model, "scorer", None)  # embedding baselines: salus.signals.EmbeddingScorer
        if self.scorer is None:
            self.column, self.fill = int(model.column), float(model.fill)
        self.last_types: np.ndarray | None = None

    @staticmethod
    def supports(model: Any) -> bool:
        return type(model).__name__ in ("OnlineBaselineNet", "EmbeddingBaselineNet")

    def step(self, x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        rows = np.asarray(x, dtype=np.float32)
        if self.scorer is not None:
            score = np.asarray(self.scorer.score(rows))
        else:
            v = rows[:, self.column].astype(np.float64)
            score = np.where(np.isfinite(v), v, self.fill).astype(np.float32)
        return score.reshape(rows.shape[0], 1).astype(np.float64), state


def make_runner(model: Any) -> Any:
    """The fastest runner that computes the same numbers as ``model.step``."""
    if NumpyBaseline.supports(model):
        return NumpyBaseline(model)
    if NumpyTrees.supports(model):
        return NumpyTrees(model)
    if NumpyMLP.supports(model):
        return NumpyMLP(model)
    if NumpyTCN.supports(model):
        return NumpyTCN(model)
    if NumpyGRU.supports(model):
        return NumpyGRU(model)
    return TorchRunner(model)
