"""Streaming runners of a trained predictor network for the monitor: one step of B environments.

Every runner has ``init_state(B)``, ``reset_state(state, i)``, ``repeat_state(state, i, n)`` and
``step(x (B, D) float32, state) -> (probs (B, P) float64, new_state)`` and, after a step,
``last_types`` (B, P, K) per-failure-type probabilities (None for models without type heads);
``step`` never modifies the state it is given (the monitor's attribution re-runs a step from the
previous state).

``salus-mlp`` and ``salus-tcn`` run in numpy (the same numbers as their torch modules, several
times less per-call overhead at B=1); any other network runs through its own torch ``step``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TorchRunner", "NumpyMLP", "NumpyTCN", "NumpyTrees", "make_runner"]


def _np(t: Any) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit  # a ufunc: no overflow warnings, no error-state context

    return expit(z.astype(np.float64))  # type: ignore[no-any-return]


class _Head:
    """The output head of salus-mlp / salus-tcn: (B, C) -> probabilities (B, n_h) of any failure
    within each horizon, and per failure type (B, n_h, K) in ``last_types``."""

    def __init__(self, model: Any) -> None:
        self.w = _np(model.head.weight).T.copy()  # (C, n_h * (1 + K))
        self.b = _np(model.head.bias)
        self.n_h, self.n_out = int(model.n_h), int(model.n_out)

    def __call__(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = _sigmoid(h @ self.w + self.b).reshape(h.shape[0], self.n_h, self.n_out)
        return p[:, :, 0], p[:, :, 1:]


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


class NumpyMLP:
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

    def init_state(self, batch: int) -> Any:
        return {}

    def reset_state(self, state: Any, i: int) -> Any:
        return state

    def repeat_state(self, state: Any, i: int, n: int) -> Any:
        return {}

    def step(self, x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        h = np.asarray(x, dtype=np.float32)
        for w, bias in self.layers:
            h = h @ w
            h += bias
            np.maximum(h, 0.0, out=h)
        probs, self.last_types = self.head(h)
        return probs, state


class NumpyTCN:
    """``SalusTCN`` computed incrementally: per layer, a buffer of the last ``(k - 1) * d + 1``
    inputs; each step computes only the newest position. Before the episode the input is zero (as
    the torch module's left padding), so each buffer starts filled with that layer's activation on
    an all-zero input history."""

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
        return [
            np.repeat(rest[None, None, :], (k - 1) * d + 1, axis=1).repeat(batch, axis=0)
            for rest, (_, _, d, k) in zip(self.rest, self.convs, strict=True)
        ]

    def reset_state(self, state: Any, i: int) -> Any:
        for buf, rest in zip(state, self.rest, strict=True):
            buf[i] = rest
        return state

    def repeat_state(self, state: Any, i: int, n: int) -> Any:
        return [np.repeat(buf[i : i + 1], n, axis=0) for buf in state]

    def step(self, x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        h = np.asarray(x, dtype=np.float32) @ self.w_in + self.b_in
        np.maximum(h, 0.0, out=h)
        new_state = []
        for buf, (taps, bias, d, k) in zip(state, self.convs, strict=True):
            nb = np.concatenate([buf[:, 1:], h[:, None, :]], axis=1)
            new_state.append(nb)
            z = bias + nb[:, -1] @ taps[k - 1]
            for j in range(k - 1):
                z = z + nb[:, -1 - (k - 1 - j) * d] @ taps[j]
            h = h + np.maximum(z, 0.0)
        probs, self.last_types = self.head(h)
        return probs, new_state


class NumpyTrees:
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
        self.last_types: np.ndarray | None = None

    @staticmethod
    def supports(model: Any) -> bool:
        return type(model).__name__ == "SalusTrees"

    def init_state(self, batch: int) -> Any:
        return {}

    def reset_state(self, state: Any, i: int) -> Any:
        return state

    def repeat_state(self, state: Any, i: int, n: int) -> Any:
        return {}

    def step(self, x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        rows = np.asarray(x, dtype=np.float32).astype(np.float64)
        node = np.broadcast_to(self.root, (rows.shape[0], self.root.size))
        for _ in range(self.depth):
            go_left = np.take_along_axis(rows, self.feature[node], axis=1) <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        z = self.value[node].sum(axis=1) + self.bias
        return _sigmoid(z.astype(np.float32))[:, None], state


def make_runner(model: Any) -> Any:
    """The fastest runner that computes the same numbers as ``model.step``."""
    if NumpyTrees.supports(model):
        return NumpyTrees(model)
    if NumpyMLP.supports(model):
        return NumpyMLP(model)
    if NumpyTCN.supports(model):
        return NumpyTCN(model)
    return TorchRunner(model)
