"""FAIL-Detect's two best scores on the observation embedding: RND and logpZO.

Xu et al., "Can We Detect Failures Without Failure Data? Uncertainty-Aware Runtime Failure
Detection for Imitation Learning Policies", RSS 2025 (code: github.com/CXU-TRI/FAIL-Detect, read at
commit b758e55). Both are fitted on successful rollouts only (no failure data) and score one step at
a time, higher = further from the successes; :class:`salus.signals.EmbeddingScorer` names them
``"rnd"`` and ``"logpzo"`` and owns their use (``fit(X).score(X)``, ``state_dict``).

Both standardise the embedding first with the reference's per-dimension mean and standard deviation
(floored at 1e-3 of the largest, so a constant dimension cannot divide by zero): FAIL-Detect feeds
the raw policy feature; our embeddings have arbitrary scales, and logpZO's noise end is N(0, I).

- **RND** (random network distillation, :class:`RNDModel`): a target MLP g, randomly initialised
  and frozen, and a predictor MLP f of the same shape (E-128-128-64, ReLU) trained on the
  successes to match it. Score: the prediction error ``||f(z) - g(z)||_2`` of the standardised
  embedding z, FAIL-Detect's ``nn.PairwiseDistance(p=2)`` (not squared; the square ranks every
  step and every running maximum the same); the training loss is its mean over the batch, as theirs. Differences: FAIL-Detect's
  RND (their "RND-Ot+At") reads the observation feature *and* the predicted action chunk through two
  conditional 1-D U-Nets and sums the per-step distances over the chunk's 16 steps; ours reads the
  observation embedding alone, through MLPs (the embedding is one vector, and the embedding
  baselines read nothing else).
- **logpZO** (:class:`FlowModel`): a flow-matching velocity field v(x, t) (MLP on [x, sin/cos(omega
  t)], E+8-256-256-E, SiLU) trained as FAIL-Detect's ``UQ_baselines/logpZO/train.py``: X0 = a
  success embedding, X1 ~ N(0, I), t ~ U(0, 1), X_t = X0 + t (X1 - X0), loss ``||v(X_t, t) - (X1 -
  X0)||^2`` (mean). Score: FAIL-Detect's ``logpZO_UQ`` exactly, one Euler step of size 1 from the
  data end: ``Z = X + v(X, 0)``, score ``||Z||^2`` (the negative log-density of Z under N(0, I) up
  to a factor 2 and a constant; the Jacobian term is what their logpO adds, not used here). On the
  successes the optimal v(x, 0) is -x, so Z is near 0; off them v(x, 0) is the net's extrapolation
  from t > 0, where the target (X_t - E[X0 | X_t]) / t grows with the distance to the successes.
  Differences: their network is a 1-D U-Net over the feature cut into a padded sequence, with the
  time discretised to floor(100 t) and a sinusoidal embedding; ours is an MLP with a continuous
  time and 4 sinusoidal frequencies.

Training (both, :class:`LearnedConfig`): FAIL-Detect trains 200 epochs of Adam at 1e-4 (batch 128)
on GPUs; ours is Adam at 1e-3, batches of 256 drawn with replacement, 20 epochs clipped to [100,
400] steps (5000 x 64 references: 400 steps, 1.3 s of CPU for RND and 2.3 s for logpZO on one
thread, measured).

Fitting runs torch on one thread (restored afterwards) from a ``torch.Generator`` seeded with
``seed``: the same data and seed give the same weights, bit for bit, on one machine. Scoring is
numpy float64 on the stored float32 weights (no torch, as the monitor's baseline runner needs; in
blocks of 16384 rows), so one live row scores as in a whole episode up to float64 rounding (the
float32 output then rounds them alike).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from salus.errors import InvalidInputError, NotFittedError
from salus.signals.stats import as_2d_finite

__all__ = ["LEARNED_EMBEDDING_NAMES", "LearnedConfig", "RNDModel", "FlowModel", "make_learned"]

LEARNED_EMBEDDING_NAMES: tuple[str, ...] = ("rnd", "logpzo")
_BLOCK = 16384  # rows scored at a time (a (16384, 256) float64 activation is 32 MB)


@dataclass(frozen=True)
class LearnedConfig:
    """Sizes and optimisation of the learned embedding scores (the defaults are the evaluated ones).

    The number of optimiser steps is ``epochs`` passes over the reference in batches of ``batch``,
    clipped to ``[min_steps, max_steps]`` (5000 references: 20 steps an epoch, 400 steps)."""

    rnd_hidden: tuple[int, ...] = (128, 128)
    rnd_out: int = 64
    flow_hidden: tuple[int, ...] = (256, 256)
    flow_freqs: int = 4  # sinusoidal time features: sin, cos of pi * 2^j * t, j < flow_freqs
    batch: int = 256
    lr: float = 1e-3
    epochs: int = 20
    min_steps: int = 100
    max_steps: int = 400

    def __post_init__(self) -> None:
        sizes = (*self.rnd_hidden, self.rnd_out, *self.flow_hidden, self.batch, self.epochs)
        if any(int(s) < 1 for s in sizes) or self.flow_freqs < 0 or not self.lr > 0:
            raise InvalidInputError(f"LearnedConfig sizes must be positive, got {self}")
        if not 1 <= self.min_steps <= self.max_steps:
            raise InvalidInputError(
                f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}"
            )

    def steps(self, n: int) -> int:
        per_epoch = math.ceil(n / self.batch)
        return int(min(self.max_steps, max(self.min_steps, self.epochs * per_epoch)))


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.maximum(std, max(1e-3 * float(std.max()), 1e-8))
    return mean.astype(np.float32), std.astype(np.float32)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _silu(x: np.ndarray) -> np.ndarray:
    return x * 0.5 * (1.0 + np.tanh(0.5 * x))  # x * sigmoid(x) without overflow


def _mlp(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, act: Callable[..., Any]) -> np.ndarray:
    """float64 forward pass: ``x @ W.T + b`` per layer, ``act`` between layers."""
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if i < len(layers) - 1:
            x = act(x)
    return x


def _init_layers(sizes: list[int], gen: Any) -> list[Any]:
    """PyTorch's default ``nn.Linear`` initialisation (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
    weights and biases), drawn from ``gen``: ``[W0, b0, W1, b1, ...]`` float32 leaf tensors."""
    import torch

    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_out, fan_in, generator=gen) * 2.0 - 1.0) * bound
        b = (torch.rand(fan_out, generator=gen) * 2.0 - 1.0) * bound
        params += [w.requires_grad_(), b.requires_grad_()]
    return params


def _torch_mlp(params: list[Any], x: Any, act: Callable[..., Any]) -> Any:
    n = len(params) // 2
    for i in range(n):
        x = x @ params[2 * i].T + params[2 * i + 1]
        if i < n - 1:
            x = act(x)
    return x


def _as_layers(params: list[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    arrs = [p.detach().numpy().astype(np.float32) for p in params]
    return [(arrs[2 * i], arrs[2 * i + 1]) for i in range(len(arrs) // 2)]


def _train(
    loss_fn: Callable[[Any, Any], Any], params: list[Any], n: int, cfg: LearnedConfig, gen: Any
) -> None:
    """Adam (beta 0.9, 0.999, eps 1e-8; written out, so that fitting does not import
    ``torch.optim``, seconds on a cold process) on ``params`` for ``cfg.steps(n)`` steps;
    ``loss_fn(rows, gen)`` gets each batch's row indices (drawn with replacement from ``gen``)."""
    import torch

    b1, b2, eps = 0.9, 0.999, 1e-8
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    batch = min(cfg.batch, n)
    for step in range(1, cfg.steps(n) + 1):
        rows = torch.randint(n, (batch,), generator=gen)
        loss = loss_fn(rows, gen)
        if not torch.isfinite(loss):
            raise InvalidInputError(f"the learned embedding score diverged (loss {float(loss)})")
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            torch._foreach_lerp_(m, grads, 1.0 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, value=1.0 - b2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, math.sqrt(1.0 - b2**step))
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, m, denom, value=-cfg.lr / (1.0 - b1**step))


class _OneThread:
    """Run torch on one thread inside the block (deterministic sums, independent of the caller's
    thread count), restoring the caller's count afterwards."""

    def __enter__(self) -> None:
        import torch

        self._threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self._threads)


def _get(state: Mapping[str, Any], key: str) -> np.ndarray:
    """``state[key]`` as a finite float32 array (``KeyError`` when absent)."""
    arr = np.asarray(state[key], dtype=np.float32)
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{key} has non-finite values")
    return arr


def _load_layers(state: Mapping[str, Any], prefix: str, in_dim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The layers ``{prefix}w{i}``, ``{prefix}b{i}`` (i = 0, 1, ...), checked to chain from ``in_dim``."""
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    width = in_dim
    while f"{prefix}w{len(layers)}" in state:
        i = len(layers)
        w, b = _get(state, f"{prefix}w{i}"), _get(state, f"{prefix}b{i}")
        if w.ndim != 2 or w.shape[1] != width or b.shape != (w.shape[0],):
            raise InvalidInputError(
                f"{prefix}w{i} / b{i} must be (out, {width}) and (out,), got {w.shape} and {b.shape}"
            )
        layers.append((w, b))
        width = w.shape[0]
    if not layers:
        raise KeyError(f"{prefix}w0")
    return layers


def _standardisation(state: Mapping[str, Any], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    mean, std = _get(state, f"{prefix}mean"), _get(state, f"{prefix}std")
    if mean.ndim != 1 or std.shape != mean.shape or not (std > 0).all():
        raise InvalidInputError(
            f"{prefix}mean / {prefix}std must be (E,) with std > 0, got {mean.shape} and {std.shape}"
        )
    return mean, std


class _Learned:
    """Shared parts: the standardisation, float64 copies of the layers, blocked scoring."""

    prefix = ""

    def __init__(self, config: LearnedConfig | None = None, seed: int = 0) -> None:
        self.config = config if config is not None else LearnedConfig()
        self.seed = int(seed)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    @property
    def dim(self) -> int:
        if self.mean is None:
            raise NotFittedError(f"{type(self).__name__} has not been fitted; call fit(X)")
        return int(self.mean.shape[0])

    def _standardise_fit(self, x: Any) -> np.ndarray:
        arr = as_2d_finite(x, "embeddings")
        if arr.shape[0] < 2:
            raise InvalidInputError(f"need at least 2 reference embeddings, got {arr.shape[0]}")
        self.mean, self.std = _standardiser(arr)
        return ((arr - self.mean) / self.std).astype(np.float32)

    def score(self, x: Any) -> np.ndarray:
        """Finite embeddings ``(B, E)`` -> ``(B,)`` float64 scores."""
        if self.mean is None or self.std is None:
            raise NotFittedError(f"{type(self).__name__} has not been fitted; call fit(X)")
        arr = np.asarray(x, dtype=np.float64)
        out = np.empty(arr.shape[0], dtype=np.float64)
        mean, std = self.mean.astype(np.float64), self.std.astype(np.float64)
        for start in range(0, arr.shape[0], _BLOCK):
            z = (arr[start : start + _BLOCK] - mean) / std
            out[start : start + _BLOCK] = self._score_std(z)
        return out

    def _score_std(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RNDModel(_Learned):
    """Random network distillation: score ``||f(z) - g(z)||_2`` of the standardised embedding z,
    g a frozen random MLP, f an MLP trained to match g on the successes (module docstring)."""

    prefix = "rnd."

    def __init__(self, config: LearnedConfig | None = None, seed: int = 0) -> None:
        super().__init__(config, seed)
        self.target: list[tuple[np.ndarray, np.ndarray]] = []
        self.predictor: list[tuple[np.ndarray, np.ndarray]] = []
        self._f64: tuple[list[Any], list[Any]] = ([], [])

    def fit(self, x: Any) -> RNDModel:
        import torch

        z = self._standardise_fit(x)
        cfg = self.config
        sizes = [z.shape[1], *cfg.rnd_hidden, cfg.rnd_out]
        with _OneThread():
            gen = torch.Generator().manual_seed(self.seed)
            target = [p.detach() for p in _init_layers(sizes, gen)]
            predictor = _init_layers(sizes, gen)
            data = torch.from_numpy(z)
            with torch.no_grad():
                goal = _torch_mlp(target, data, torch.relu)

            def loss(rows: Any, _gen: Any) -> Any:
                d = _torch_mlp(predictor, data[rows], torch.relu) - goal[rows]
                return torch.sqrt(d.pow(2).sum(dim=1) + 1e-12).mean()

            _train(loss, predictor, len(z), cfg, gen)
        self._set(_as_layers(target), _as_layers(predictor))
        return self

    def _set(self, target: list[Any], predictor: list[Any]) -> None:
        self.target, self.predictor = target, predictor
        self._f64 = tuple(  # type: ignore[assignment]
            [(w.astype(np.float64), b.astype(np.float64)) for w, b in net] for net in (target, predictor)
        )

    def _score_std(self, z: np.ndarray) -> np.ndarray:
        d = _mlp(self._f64[1], z, _relu) - _mlp(self._f64[0], z, _relu)
        return np.sqrt(np.einsum("bd,bd->b", d, d))

    def state_dict(self) -> dict[str, np.ndarray]:
        if self.mean is None or self.std is None:
            raise NotFittedError("RNDModel has not been fitted; nothing to save")
        out = {f"{self.prefix}mean": self.mean, f"{self.prefix}std": self.std}
        for net, layers in (("target", self.target), ("predictor", self.predictor)):
            for i, (w, b) in enumerate(layers):
                out[f"{self.prefix}{net}.w{i}"], out[f"{self.prefix}{net}.b{i}"] = w, b
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> RNDModel:
        """``InvalidInputError`` for malformed tensors, ``KeyError`` for a missing one."""
        mean, std = _standardisation(state, self.prefix)
        target = _load_layers(state, f"{self.prefix}target.", mean.shape[0])
        predictor = _load_layers(state, f"{self.prefix}predictor.", mean.shape[0])
        if target[-1][0].shape[0] != predictor[-1][0].shape[0]:
            raise InvalidInputError(
                f"the RND target's output width {target[-1][0].shape[0]} is not the predictor's "
                f"{predictor[-1][0].shape[0]}"
            )
        self.mean, self.std = mean, std
        self._set(target, predictor)
        return self


class FlowModel(_Learned):
    """logpZO: ``||z + v(z, 0)||^2`` of the standardised embedding z, v a flow-matching velocity
    field trained from the successes (data at t = 0) to N(0, I) (t = 1) (module docstring)."""

    prefix = "flow."

    def __init__(self, config: LearnedConfig | None = None, seed: int = 0) -> None:
        super().__init__(config, seed)
        self.omega: np.ndarray | None = None
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        self._f64: list[tuple[np.ndarray, np.ndarray]] = []

    def fit(self, x: Any) -> FlowModel:
        import torch
        import torch.nn.functional as F

        z = self._standardise_fit(x)
        cfg = self.config
        omega = (math.pi * 2.0 ** np.arange(cfg.flow_freqs)).astype(np.float32)
        e = z.shape[1]
        with _OneThread():
            gen = torch.Generator().manual_seed(self.seed)
            params = _init_layers([e + 2 * len(omega), *cfg.flow_hidden, e], gen)
            data, om = torch.from_numpy(z), torch.from_numpy(omega)

            def loss(rows: Any, g: Any) -> Any:
                x0 = data[rows]
                x1 = torch.randn(x0.shape, generator=g)
                t = torch.rand(len(rows), 1, generator=g)
                xt = x0 + t * (x1 - x0)
                feats = torch.cat([xt, torch.sin(t * om), torch.cos(t * om)], dim=1)
                return (_torch_mlp(params, feats, F.silu) - (x1 - x0)).pow(2).mean()

            _train(loss, params, len(z), cfg, gen)
        self._set(omega, _as_layers(params))
        return self

    def _set(self, omega: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.omega, self.layers = omega, layers
        self._f64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in layers]

    def _score_std(self, z: np.ndarray) -> np.ndarray:
        assert self.omega is not None
        t0 = np.zeros((z.shape[0], self.omega.shape[0]))  # t = 0: sin = 0, cos = 1
        v = _mlp(self._f64, np.concatenate([z, t0, t0 + 1.0], axis=1), _silu)
        pushed = z + v  # one Euler step of size 1 from the data end (t = 0) to the noise end
        return np.einsum("bd,bd->b", pushed, pushed)

    def state_dict(self) -> dict[str, np.ndarray]:
        if self.mean is None or self.std is None or self.omega is None:
            raise NotFittedError("FlowModel has not been fitted; nothing to save")
        out = {
            f"{self.prefix}mean": self.mean,
            f"{self.prefix}std": self.std,
            f"{self.prefix}omega": self.omega,
        }
        for i, (w, b) in enumerate(self.layers):
            out[f"{self.prefix}w{i}"], out[f"{self.prefix}b{i}"] = w, b
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> FlowModel:
        """``InvalidInputError`` for malformed tensors, ``KeyError`` for a missing one."""
        mean, std = _standardisation(state, self.prefix)
        omega = _get(state, f"{self.prefix}omega")
        if omega.ndim != 1:
            raise InvalidInputError(f"{self.prefix}omega must be (F,), got {omega.shape}")
        e = mean.shape[0]
        layers = _load_layers(state, self.prefix, e + 2 * omega.shape[0])
        if layers[-1][0].shape[0] != e:
            raise InvalidInputError(
                f"the velocity field must output {e} values, got {layers[-1][0].shape[0]}"
            )
        self.mean, self.std = mean, std
        self._set(omega, layers)
        return self


def make_learned(name: str, config: LearnedConfig | None = None, seed: int = 0) -> RNDModel | FlowModel:
    """The learned score ``name`` in :data:`LEARNED_EMBEDDING_NAMES`, unfitted."""
    if name == "rnd":
        return RNDModel(config, seed)
    if name == "logpzo":
        return FlowModel(config, seed)
    raise InvalidInputError(
        f"not a learned embedding score: {name!r}; valid: {', '.join(LEARNED_EMBEDDING_NAMES)}"
    )
