"""Fitting the extractor's statistics and checking signal collections (used by ``salus signals``).

- :func:`signal_stats_path` / :func:`load_extractor_for_policy`: where a policy's fitted statistics
  live (``extractor_stats.safetensors`` + ``.json`` beside its weights) and loading them.
- :func:`run_policy_rollouts`: rollouts of a policy in the simulator (through the episode harness,
  :mod:`salus.policies.harness`) that stream the internals through an optional extractor and keep
  what fitting and checking need.
- :func:`fit_extractor_from_rollouts`, :func:`fit_extractor_from_dataset`.
- :func:`summarize_signals`, :func:`check_dataset_signals`: per-signal statistics and the checks
  (finite everywhere, non-zero variance, no two signals identical).

Heavy imports (torch, MuJoCo, zarr) happen inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from salus.errors import CheckpointError, InvalidInputError, InvalidNameError
from salus.policies.harness import EpisodeTap
from salus.signals.definitions import SIGNAL_NAMES, SignalConfig
from salus.signals.extractor import SignalExtractor
from salus.signals.stats import GaussianStats

if TYPE_CHECKING:  # the caller opens datasets: salus.data sits above this package
    from salus.data import SalusDataset

__all__ = [
    "STATS_FILENAME",
    "signal_stats_path",
    "load_extractor_for_policy",
    "policy_weights_fingerprint",
    "RolloutSignals",
    "run_policy_rollouts",
    "fit_extractor_from_rollouts",
    "fit_extractor_from_dataset",
    "ood_fit_episodes",
    "refit_ood",
    "ood_column",
    "SPLIT_REFIT_SIGNALS",
    "UNREFITTABLE_SIGNALS",
    "summarize_signals",
    "check_dataset_signals",
    "mixed_perturbations",
]

STATS_FILENAME = "extractor_stats"


def signal_stats_path(policy_spec: str) -> Path:
    """Base path (without suffix) of a policy's fitted signal statistics.

    A packaged policy without a path (``builtin``, ``smolvla``) -> its ``weights/`` folder in the
    package; ``NAME:DIR`` -> DIR (or DIR's parent when DIR is a file) / ``extractor_stats``
    (:attr:`salus.policies.PolicySpec.weights_dir`; options ``?k=v`` do not move the statistics).
    """
    from salus.policies import PACKAGED_POLICIES, PolicySpec

    folder = PolicySpec.parse(policy_spec).weights_dir
    if folder is None:
        raise InvalidInputError(
            f"policy spec {policy_spec!r} names no weights folder; give NAME:DIR, or one of "
            f"{sorted(PACKAGED_POLICIES)}, whose statistics are in the package"
        )
    return folder / STATS_FILENAME


def policy_weights_fingerprint(policy_spec: str) -> str | None:
    """SHA-256 (first 16 hex digits) of the policy's ``model.safetensors``, or None if there is none.

    Fitted statistics record it, so statistics fitted for other weights are detected as stale.
    """
    import hashlib

    from salus.policies import PolicySpec

    folder = PolicySpec.parse(policy_spec).weights_dir
    if folder is None:
        return None
    weights = folder / "model.safetensors"
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with weights.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def load_extractor_for_policy(
    policy_spec: str, batch_size: int = 1, stats: str | Path | None = None, *, check_weights: bool = True
) -> SignalExtractor:
    """The extractor fitted for a policy (from ``stats`` if given, else beside the policy's weights).

    With ``check_weights``, statistics that record a weights fingerprint must match the policy's
    current ``model.safetensors`` (else CheckpointError: they were fitted for other weights).
    """
    base = Path(stats) if stats is not None else signal_stats_path(policy_spec)
    hint = f"Fit them with `salus signals fit --policy {policy_spec} --out {base}`"
    try:
        extractor = SignalExtractor.load(base, batch_size=batch_size)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}. {hint}") from None
    recorded = extractor.meta.get("weights_sha256")
    if check_weights and recorded:
        current = policy_weights_fingerprint(policy_spec)
        if current is not None and current != recorded:
            raise CheckpointError(
                f"signal statistics {base} were fitted for policy weights {recorded}, but {policy_spec!r} now has "
                f"weights {current}; they are stale. {hint}"
            )
    return extractor


@dataclass
class RolloutSignals:
    """What :func:`run_policy_rollouts` kept, per episode."""

    success: list[bool] = field(default_factory=list)
    perturbations: list[list[tuple[str, float]]] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    signals: list[np.ndarray] = field(default_factory=list)  # (T, 12) float32 (empty without an extractor)
    valid: list[np.ndarray] = field(default_factory=list)  # (T, 12) bool
    embeddings: list[np.ndarray] = field(default_factory=list)  # (n_chunks, E) at chunk starts
    samples: list[np.ndarray | None] = field(default_factory=list)  # (n_chunks, K, C, A); None if K < 2


def mixed_perturbations(
    episode: int, rng: np.random.Generator, names: Sequence[str]
) -> list[tuple[str, float]]:
    """A mixed schedule: every third episode unperturbed, else one random perturbation, strength U(0.3, 1)."""
    if episode % 3 == 0 or not names:
        return []
    return [(str(rng.choice(list(names))), float(rng.uniform(0.3, 1.0)))]


def run_policy_rollouts(
    policy_spec: str,
    episodes: int,
    *,
    tasks: Sequence[str] = ("pick_place",),
    num_samples: int = 1,
    seed: int = 0,
    extractor: SignalExtractor | None = None,
    perturbations: Callable[[int, np.random.Generator], list[tuple[str, float]]] | None = None,
    keep_internals: bool = False,
    actor: str = "policy",
    progress: Callable[[int, bool], None] | None = None,
    batch_size: int = 1,
) -> RolloutSignals:
    """Run ``episodes`` rollouts of a policy in the simulator through the episode harness
    (:func:`salus.policies.harness.run_policy_episodes`): episode i runs task ``tasks[i % len(tasks)]``
    with env and policy-noise seed ``seed + i``, B = ``batch_size`` environments per batched policy
    call. At B = 1 the policy's noise continues from ``load_policy(..., seed=seed)`` across episodes
    (the shipped statistics were fitted so); at B > 1 episode i's noise is seeded with ``seed + i``.

    ``actor="expert"`` executes the scripted expert's actions (the training distribution) while the
    policy still runs on every observation, so its internals are recorded for the same states.

    With an ``extractor`` (batch size 1) every step's signals are kept; with ``keep_internals`` the
    observation embedding (and the K samples) of every chunk an episode computed are kept for fitting.
    ``perturbations(i, rng)`` gives the (name, strength) list of episode i. ``progress(i, success)``
    is called after each episode.
    """
    from salus.policies import load_policy
    from salus.policies.harness import ACTORS, EpisodePlan, run_policy_episodes

    if actor not in ACTORS:
        raise InvalidNameError("actor", actor, ACTORS)
    if episodes < 1:
        raise InvalidInputError(f"episodes must be >= 1, got {episodes}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if extractor is not None and (extractor.batch_size != 1 or batch_size != 1):
        raise InvalidInputError(
            "signals are streamed one environment at a time: the extractor and batch_size must both be 1"
        )
    rng = np.random.default_rng(seed)
    plans = [
        EpisodePlan(
            tasks[i % len(tasks)],
            seed + i,
            tuple(perturbations(i, rng)) if perturbations is not None else (),
        )
        for i in range(episodes)
    ]
    policy = load_policy(policy_spec, num_samples=num_samples, seed=seed)
    tap = _RolloutTap(policy_spec, extractor, keep_internals)
    outcomes = run_policy_episodes(
        policy,
        plans,
        batch_size=batch_size,
        taps=[tap],
        actor=actor,
        progress=None if progress is None else (lambda o: progress(o.index, o.success)),
        seed_policy=batch_size > 1,  # one at a time: the noise continues from the load seed, as fitted
    )
    out = RolloutSignals()
    for i, outcome in enumerate(outcomes):
        out.success.append(outcome.success)
        out.perturbations.append(list(outcome.plan.perturbations))
        out.lengths.append(outcome.steps)
        if extractor is not None:
            out.signals.append(np.stack(tap.signals[i]))
            out.valid.append(np.stack(tap.valid[i]))
        if keep_internals:
            out.embeddings.append(np.stack(tap.embeddings[i]))  # every episode computes at least one chunk
            out.samples.append(np.stack(tap.samples[i]) if tap.samples[i] else None)
    return out


class _RolloutTap(EpisodeTap):
    """What :func:`run_policy_rollouts` keeps of each episode (indexed by plan), live rows only."""

    def __init__(self, policy_spec: str, extractor: SignalExtractor | None, keep_internals: bool) -> None:
        self.policy_spec, self.extractor, self.keep_internals = policy_spec, extractor, keep_internals
        self.signals: list[list[np.ndarray]] = []
        self.valid: list[list[np.ndarray]] = []
        self.embeddings: list[list[np.ndarray]] = []
        self.samples: list[list[np.ndarray]] = []
        self._base = 0

    def start(self, plans: Sequence[Any]) -> None:
        self._base = len(self.signals)
        for rows in (self.signals, self.valid, self.embeddings, self.samples):
            rows.extend([] for _ in plans)
        if self.extractor is not None:
            self.extractor.reset()

    def step(self, obs: dict[str, Any], actions: np.ndarray, internals: Any, live: Sequence[bool]) -> None:
        if internals is None:
            raise InvalidInputError(f"policy {self.policy_spec!r} reported no internals after act()")
        if self.extractor is not None:
            step = self.extractor.step(internals, np.asarray(obs["state"], dtype=np.float32))
        for b, running in enumerate(live):
            if not running:
                continue
            i = self._base + b
            if self.extractor is not None:
                self.signals[i].append(step.values[b])
                self.valid[i].append(step.valid[b])
            if self.keep_internals and bool(internals.new_chunk[b]):
                self.embeddings[i].append(np.asarray(internals.obs_embedding[b], dtype=np.float32))
                if internals.samples is not None and internals.samples.shape[1] >= 2:
                    self.samples[i].append(np.asarray(internals.samples[b], dtype=np.float32))


def fit_extractor_from_rollouts(
    policy_spec: str,
    episodes: int,
    *,
    tasks: Sequence[str] = ("pick_place",),
    num_samples: int = 4,
    seed: int = 0,
    config: SignalConfig | None = None,
    source: str = "policy",
    progress: Callable[[int, bool], None] | None = None,
    batch_size: int = 1,
) -> tuple[SignalExtractor, dict[str, Any]]:
    """Fit an extractor on the successful, unperturbed rollouts among ``episodes``.

    ``source="policy"``: the policy's own rollouts (SAFE / FAIL-Detect protocol). ``source="expert"``:
    the scripted expert's successful demonstrations, observed by the policy (its training
    distribution; for a policy that rarely succeeds). ``num_samples`` >= 2 also fits the cluster
    radius of sample_entropy. Returns the extractor (``meta`` records the provenance and the
    weights fingerprint) and a summary.
    """
    rollouts = run_policy_rollouts(
        policy_spec,
        episodes,
        tasks=tasks,
        num_samples=num_samples,
        seed=seed,
        keep_internals=True,
        actor="expert" if source == "expert" else "policy",
        progress=progress,
        batch_size=batch_size,
    )
    keep = [i for i, ok in enumerate(rollouts.success) if ok]
    if len(keep) < 2:
        raise InvalidInputError(
            f"only {len(keep)} of {episodes} {source} rollouts of {policy_spec!r} succeeded; need >= 2 "
            "successful rollouts to fit the statistics (run more episodes, or --source expert)"
        )
    emb = np.concatenate([rollouts.embeddings[i] for i in keep])
    kept_samples = [s for s in (rollouts.samples[i] for i in keep) if s is not None]
    samples = np.concatenate(kept_samples) if num_samples >= 2 and kept_samples else None
    extractor = SignalExtractor(1, config).fit(emb, samples)
    summary = {
        "policy": policy_spec,
        "weights_sha256": policy_weights_fingerprint(policy_spec),
        "source": source,
        "episodes": episodes,
        "successful": len(keep),
        "tasks": list(tasks),
        "embedding_rows": int(emb.shape[0]),
        "embedding_dim": int(emb.shape[1]),
        "sample_batches": 0 if samples is None else int(samples.shape[0]),
        "num_samples": num_samples,
        "batch_size": batch_size,
        "cluster_radius": extractor.cluster_radius,
        "ood_shrinkage": extractor.ood.fitted_shrinkage,
        "seed": seed,
    }
    extractor.meta = {k: v for k, v in summary.items() if k not in ("cluster_radius", "ood_shrinkage")}
    return extractor, summary


def fit_extractor_from_dataset(
    ds: SalusDataset, config: SignalConfig | None = None
) -> tuple[SignalExtractor, dict]:
    """Fit the OOD statistics on the observation embeddings of a dataset's successful, unperturbed episodes.

    The dataset holds no K samples, so the cluster radius stays unfitted (set it in the config).
    ``ds`` is opened by the caller (``salus.data`` sits above this package).
    """
    path = ds.path
    keep = ood_fit_episodes(list(ds.success), [bool(p) for p in ds.perturbations])
    if len(keep) < 2:
        raise InvalidInputError(f"{path}: {len(keep)} successful unperturbed episodes; need >= 2 to fit")
    emb = np.concatenate([e.astype(np.float32) for e in ds.episode_arrays("obs_embedding", keep)])
    extractor = SignalExtractor(1, config).fit(emb)
    return extractor, {"dataset": str(path), "successful": len(keep), "embedding_rows": int(emb.shape[0])}


# Signals whose fitted statistic is refitted per split from what a dataset stores
# (``salus.predictor.episodes.split_statistics``): the OOD Gaussian, from ``obs_embedding``.
SPLIT_REFIT_SIGNALS: tuple[str, ...] = ("ood_distance",)
# Signals whose fitted statistic cannot be refitted from a dataset: the cluster radius is fitted on
# the K sampled chunks of the fitting rollouts, which datasets do not store. With the packaged
# statistics (fitted on successes of every task) the radius, one scalar, has seen a held-out task.
UNREFITTABLE_SIGNALS: tuple[str, ...] = ("sample_entropy", "max_sample_probability")


def ood_fit_episodes(success: Sequence[Any], perturbed: Sequence[bool]) -> list[int]:
    """Indices of the episodes the OOD Gaussian is fitted on: the successful unperturbed ones (the
    rule of ``salus signals fit``, whose fitting rollouts are unperturbed)."""
    return [i for i, (ok, pert) in enumerate(zip(success, perturbed, strict=True)) if bool(ok) and not pert]


def refit_ood(
    state: dict[str, Any], embeddings: Sequence[np.ndarray], meta: dict[str, Any]
) -> tuple[dict[str, Any], GaussianStats]:
    """``state`` (``SignalExtractor.state_dict()``) with its OOD Gaussian refitted on the rows of
    ``embeddings`` (config and cluster radius kept; ``meta`` recorded as ``meta["ood_refit"]``),
    and the refitted Gaussian."""
    extractor = SignalExtractor(1)
    extractor.load_state_dict(state)
    extractor.ood = GaussianStats(shrinkage=extractor.config.ood_shrinkage).fit(
        np.concatenate([np.asarray(e, dtype=np.float32) for e in embeddings])
    )
    extractor.meta = {**extractor.meta, "ood_refit": dict(meta)}
    return extractor.state_dict(), extractor.ood


def ood_column(ood: GaussianStats, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``ood_distance`` column ``(T,)`` and its validity of one episode from its recorded
    per-step observation embedding ``(T, E)`` (the embedding of the observation that produced
    the step's chunk, so the held per-chunk value): the live formula, one distance per run of
    equal rows. Invalid steps hold 0, as the extractor records them."""
    from salus.signals.definitions import ood_distance_of

    emb = np.asarray(embedding, dtype=np.float32)
    new = np.ones(emb.shape[0], dtype=bool)
    new[1:] = np.any(emb[1:] != emb[:-1], axis=1)
    d, ok = ood_distance_of(ood, emb[new])
    run = np.cumsum(new) - 1
    d, ok = d[run], ok[run]
    return np.where(ok, d, 0.0).astype(np.float32), ok


def summarize_signals(
    values: np.ndarray, valid: np.ndarray, names: Sequence[str] = SIGNAL_NAMES, identical_atol: float = 1e-7
) -> dict[str, Any]:
    """Per-signal statistics and checks of a collection of signal rows.

    ``values`` (N, S) and ``valid`` (N, S). Mean, std, min and max are over the valid entries;
    ``nan_count`` counts non-finite values anywhere; ``valid_rate`` is the valid share. Checks:
    ``finite`` (every value finite), ``nonzero_variance`` (each signal's valid values vary),
    ``distinct`` (no two signals equal within ``identical_atol`` on every row).
    """
    x = np.asarray(values, dtype=np.float64)
    v = np.asarray(valid, dtype=bool)
    if x.ndim != 2 or x.shape != v.shape or x.shape[1] != len(names):
        raise InvalidInputError(
            f"values and valid must both be (N, {len(names)}), got {x.shape} and {v.shape}"
        )
    finite = np.isfinite(x)
    per: dict[str, dict[str, Any]] = {}
    zero_var: list[str] = []
    for j, name in enumerate(names):
        sel = x[v[:, j] & finite[:, j], j]
        stats = {
            "mean": float(sel.mean()) if sel.size else None,
            "std": float(sel.std()) if sel.size else None,
            "min": float(sel.min()) if sel.size else None,
            "max": float(sel.max()) if sel.size else None,
            "nan_count": int((~finite[:, j]).sum()),
            "valid_rate": float(v[:, j].mean()) if x.shape[0] else 0.0,
        }
        per[name] = stats
        if not sel.size or not float(sel.std()) > 0:
            zero_var.append(name)
    identical: list[list[str]] = []
    filled = np.where(finite, x, 0.0)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if np.allclose(filled[:, i], filled[:, j], rtol=0.0, atol=identical_atol):
                identical.append([names[i], names[j]])
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(filled, rowvar=False) if x.shape[0] > 1 else np.zeros((len(names), len(names)))
    corr = np.nan_to_num(corr)
    np.fill_diagonal(corr, 0.0)
    i_max, j_max = np.unravel_index(int(np.abs(corr).argmax()), corr.shape)
    checks = {
        "finite": bool(finite.all()),
        "nonzero_variance": not zero_var,
        "distinct": not identical,
    }
    return {
        "rows": int(x.shape[0]),
        "signals": per,
        "checks": checks,
        "zero_variance": zero_var,
        "identical_pairs": identical,
        "max_abs_correlation": {
            "pair": [names[int(i_max)], names[int(j_max)]],
            "value": float(abs(corr[i_max, j_max])),
        },
        "passed": all(checks.values()),
    }


def check_dataset_signals(ds: SalusDataset) -> dict[str, Any]:
    """:func:`summarize_signals` over every committed step of an opened salus dataset (``data/signals``,
    ``data/signal_valid``).

    When the dataset stores ``baselines`` (names in its attributes), their mean, std, NaN count and
    non-zero rate (invalid entries are 0) are added under ``"baselines"``.
    """
    names = ds.signal_names or list(SIGNAL_NAMES)
    values = ds.steps("signals")
    valid = ds.steps("signal_valid") if "signal_valid" in ds.keys else np.isfinite(values)
    report = summarize_signals(values, valid, names)
    if "baselines" in ds.keys and ds.baseline_names:
        base = ds.steps("baselines").astype(np.float64)
        report["baselines"] = {
            name: {
                "mean": float(np.nanmean(base[:, j])) if base.shape[0] else None,
                "std": float(np.nanstd(base[:, j])) if base.shape[0] else None,
                "nan_count": int((~np.isfinite(base[:, j])).sum()),
                "nonzero_rate": float((base[:, j] != 0).mean()) if base.shape[0] else 0.0,
            }
            for j, name in enumerate(ds.baseline_names)
        }
    report.update(
        {
            "source": str(ds.path),
            "episodes": len(ds),
            "successful_episodes": int(np.asarray(ds.success).sum()),
            "perturbed_episodes": int(sum(1 for p in ds.perturbations if p)),
        }
    )
    return report
