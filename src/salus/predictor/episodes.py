"""Per-episode arrays the predictor works on, the adapter from ``SalusDataset``, episode-level
splits, horizon labels and a synthetic episode generator (tests and benchmarks).

Everything here is numpy only: the core of training and evaluation never needs zarr.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from salus.errors import DatasetError, InvalidInputError
from salus.signals.definitions import NUM_SIGNALS

from .config import DEFAULT_FAILURE_TYPES, SplitConfig, holdout_for_seed

if TYPE_CHECKING:
    from salus.data import SalusDataset

__all__ = [
    "Episode",
    "EpisodeSet",
    "EpisodeSplit",
    "episodes_from_dataset",
    "split_episodes",
    "split_statistics",
    "with_statistics",
    "horizon_labels",
    "synthetic_episodes",
    "N_SIGNALS",
]

N_SIGNALS = NUM_SIGNALS  # one signal count: salus.signals.definitions


@dataclass
class Episode:
    """One rollout. ``T`` control steps; ``failure_step`` is -1 for a success."""

    signals: np.ndarray  # (T, 12) float32
    valid: np.ndarray  # (T, 12) bool
    success: bool
    failure_step: int
    failure_type: str = "none"
    task: str = "task"
    seed: int = 0
    baselines: np.ndarray | None = None  # (T, nb) float32, online baseline scores
    embedding: np.ndarray | None = None  # (T, E) observation embedding
    state: np.ndarray | None = None  # (T, 22) robot state the policy acted on
    hidden: np.ndarray | None = None  # (T, H) policy hidden state at the output layer
    hidden_mean: np.ndarray | None = None  # (T, H) output-layer input averaged over its chunk (SAFE's)
    privileged: np.ndarray | None = None  # (T, P) simulator-only state (oracle ceiling only)
    perturbations: list[dict[str, Any]] = field(default_factory=list)  # as the simulator recorded them
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # derived features

    def __post_init__(self) -> None:
        self.signals = np.asarray(self.signals, dtype=np.float32)
        self.valid = np.asarray(self.valid, dtype=bool)
        if self.signals.ndim != 2 or self.signals.shape[1] != N_SIGNALS or self.signals.shape[0] < 1:
            raise InvalidInputError(f"signals must be (T>=1, {N_SIGNALS}), got {self.signals.shape}")
        if self.valid.shape != self.signals.shape:
            raise InvalidInputError(
                f"signal_valid {self.valid.shape} must match signals {self.signals.shape}"
            )
        T = self.signals.shape[0]
        self.success = bool(self.success)
        self.failure_step = int(self.failure_step)
        if self.success and self.failure_step != -1:
            raise InvalidInputError(f"a successful episode has failure_step -1, got {self.failure_step}")
        if not self.success and not 0 <= self.failure_step <= T:
            raise InvalidInputError(
                f"a failed episode needs 0 <= failure_step <= T={T}, got {self.failure_step}"
            )
        for name in ("baselines", "embedding", "state", "hidden", "hidden_mean", "privileged"):
            arr = getattr(self, name)
            if arr is not None:
                arr = np.asarray(arr, dtype=np.float32)
                if arr.ndim != 2 or arr.shape[0] != T:
                    raise InvalidInputError(f"{name} must be (T={T}, D), got {arr.shape}")
                setattr(self, name, arr)

    @property
    def length(self) -> int:
        return int(self.signals.shape[0])

    @property
    def failed(self) -> bool:
        return not self.success


@dataclass
class EpisodeSet:
    """A list of episodes plus what describes them (names, extractor statistics, control rate)."""

    episodes: list[Episode]
    signal_names: tuple[str, ...] = tuple(f"signal_{i}" for i in range(N_SIGNALS))
    baseline_names: tuple[str, ...] = ()
    extractor_statistics: dict[str, Any] = field(default_factory=dict)
    control_hz: float = 20.0
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # how the data was made (dataset attrs)
    robot: Any = None  # salus.data.RobotSpec of the dataset (its state layout), None when unknown

    def __post_init__(self) -> None:
        if not self.episodes:
            raise DatasetError("the episode set is empty")
        if len(self.signal_names) != N_SIGNALS:
            raise InvalidInputError(f"need {N_SIGNALS} signal names, got {len(self.signal_names)}")
        for ep in self.episodes:
            nb = 0 if ep.baselines is None else ep.baselines.shape[1]
            if nb != len(self.baseline_names):
                raise InvalidInputError(
                    f"episode has {nb} baseline columns but {len(self.baseline_names)} baseline names"
                )

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, i: int) -> Episode:
        return self.episodes[i]

    @property
    def has_embedding(self) -> bool:
        return all(ep.embedding is not None for ep in self.episodes)

    @property
    def has_hidden_mean(self) -> bool:
        """Every episode records SAFE's feature (``hidden_mean``, collected with ``--save-hidden``)."""
        return all(ep.hidden_mean is not None for ep in self.episodes)

    @property
    def tasks(self) -> list[str]:
        return sorted({ep.task for ep in self.episodes})

    def fingerprint(self) -> str:
        """Hash of (seed, task, length, label) of every episode, in order: checkpoints record it so
        evaluation can refuse a different dataset than the one the split was made on."""
        h = hashlib.sha256()
        for ep in self.episodes:
            h.update(f"{ep.seed}|{ep.task}|{ep.length}|{ep.failure_step}|{ep.failure_type};".encode())
        return h.hexdigest()[:16]


def _extractor_statistics(dataset: Any) -> dict[str, Any]:
    """The signal extractor's fitted statistics stored with the dataset (``state("extractor")``)."""
    try:
        return dict(dataset.state("extractor"))
    except Exception as exc:  # InvalidNameError when the owner is absent
        raise DatasetError(
            f"{getattr(dataset, 'path', 'the dataset')} carries no signal-extractor statistics "
            f"(state 'extractor'): {exc}. Collect with `salus collect`, which stores them."
        ) from exc


_LAST_READ: dict[tuple[Any, ...], EpisodeSet] = {}


def episodes_from_dataset(
    dataset: SalusDataset,
    *,
    embeddings: bool = True,
    extras: Sequence[str] = ("state", "hidden", "hidden_mean", "privileged"),
) -> EpisodeSet:
    """Read every episode of a ``salus.data.SalusDataset`` into an ``EpisodeSet``.

    Needs step keys ``signals`` and ``signal_valid``; ``baselines`` and ``obs_embedding`` are used
    when present (``embeddings=False`` skips the embedding, e.g. for signal-only models), and so are
    the step keys named in ``extras`` (``state``, ``hidden``, ``hidden_mean``, ``privileged``). The last set read is
    kept (keyed by path, committed size and options), so the stages of one process (``salus
    benchmark``) share it and the features derived from it (``Episode.cache``).
    """
    labels = hashlib.sha1(
        np.asarray(dataset.failure_step).tobytes() + "|".join(map(str, dataset.failure_type)).encode()
    ).hexdigest()
    key = (
        str(getattr(dataset, "path", "")),
        len(dataset),
        getattr(dataset, "num_steps", None),
        labels,
        embeddings,
        tuple(extras),
    )
    if key[0] and key in _LAST_READ:
        return _LAST_READ[key]
    out = _read_episodes(dataset, embeddings=embeddings, extras=extras)
    if key[0]:
        _LAST_READ.clear()
        _LAST_READ[key] = out
    return out


def _read_episodes(dataset: Any, *, embeddings: bool, extras: Sequence[str]) -> EpisodeSet:
    keys = set(dataset.keys)
    for key in ("signals", "signal_valid"):
        if key not in keys:
            raise DatasetError(f"{dataset.path} has no step key {key!r}; step keys: {sorted(keys)}")
    n = len(dataset)
    if n == 0:
        raise DatasetError(f"{dataset.path} has no committed episodes")
    sig = dataset.episode_arrays("signals")
    val = dataset.episode_arrays("signal_valid")
    base = dataset.episode_arrays("baselines") if "baselines" in keys else [None] * n
    if "baselines" in keys and "baseline_valid" in keys:  # invalid steps -> NaN (methods fill them)
        bval = dataset.episode_arrays("baseline_valid")
        base = [
            np.where(np.asarray(v, dtype=bool), b, np.nan).astype(np.float32)
            for b, v in zip(base, bval, strict=True)
        ]
    emb = dataset.episode_arrays("obs_embedding") if embeddings and "obs_embedding" in keys else [None] * n
    success, fstep, ftype = dataset.success, dataset.failure_step, dataset.failure_type
    from salus.data.labels import unlabelled_episodes
    from salus.data.robot import dataset_robot

    unlabelled = unlabelled_episodes(ftype)
    if unlabelled:
        shown = ", ".join(map(str, unlabelled[:20])) + (" ..." if len(unlabelled) > 20 else "")
        raise DatasetError(
            f"{dataset.path} has {len(unlabelled)} unlabelled episode(s) (outcome not known): {shown}. Label "
            f"them first: `salus dataset label {dataset.path} EPISODE --success` or `--failure-step N "
            "--failure-type T` (or `--from labels.json|csv` for many)"
        )
    task, seed = dataset.task, dataset.seed
    more = {k: dataset.episode_arrays(k) for k in extras if k in keys}
    perts = _perturbations(dataset, n)
    episodes = [
        Episode(
            signals=sig[i],
            valid=val[i],
            success=bool(success[i]),
            failure_step=int(fstep[i]),
            failure_type=str(ftype[i]),
            task=str(task[i]),
            seed=int(seed[i]),
            baselines=base[i],
            embedding=None if emb[i] is None else np.asarray(emb[i], dtype=np.float32),
            state=_extra(more, "state", i),
            hidden=_extra(more, "hidden", i),
            hidden_mean=_extra(more, "hidden_mean", i),
            privileged=_extra(more, "privileged", i),
            perturbations=perts[i],
        )
        for i in range(n)
    ]
    attrs = dict(getattr(dataset, "attrs", {}) or {})
    names = list(dataset.signal_names)
    baseline_names = tuple(dataset.baseline_names) if "baselines" in keys else ()
    return EpisodeSet(
        episodes=episodes,
        signal_names=tuple(names)
        if len(names) == N_SIGNALS
        else tuple(f"signal_{i}" for i in range(N_SIGNALS)),
        baseline_names=baseline_names,
        extractor_statistics=_extractor_statistics(dataset),
        control_hz=float(attrs.get("control_hz") or (attrs.get("env") or {}).get("control_hz") or 20.0),
        source=str(dataset.path),
        info={k: attrs[k] for k in ("policy", "collect") if k in attrs},
        robot=dataset_robot(dataset),
    )


def _extra(arrays: dict[str, Any], key: str, i: int) -> np.ndarray | None:
    return np.asarray(arrays[key][i], dtype=np.float32) if key in arrays else None


def _perturbations(dataset: Any, n: int) -> list[list[dict[str, Any]]]:
    """Each episode's perturbation records (``meta/perturbations`` JSON), ``[]`` when absent."""
    import json

    raw = getattr(dataset, "perturbations", None)
    if raw is None:
        return [[] for _ in range(n)]
    out = []
    for r in list(raw)[:n]:
        if isinstance(r, str | bytes):
            try:
                r = json.loads(r)
            except ValueError:
                r = []
        out.append([dict(p) for p in r] if isinstance(r, list) else [])
    return out + [[] for _ in range(n - len(out))]


@dataclass(frozen=True)
class EpisodeSplit:
    """Episode indices of each part. ``test_seen``: training tasks; ``test_unseen``: held-out tasks."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    calib: tuple[int, ...]
    test_seen: tuple[int, ...]
    test_unseen: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {k: list(getattr(self, k)) for k in ("train", "val", "calib", "test_seen", "test_unseen")}

    @classmethod
    def from_dict(cls, data: dict[str, Sequence[int]]) -> EpisodeSplit:
        try:
            return cls(
                **{
                    k: tuple(int(i) for i in data[k])
                    for k in ("train", "val", "calib", "test_seen", "test_unseen")
                }
            )
        except KeyError as exc:
            raise InvalidInputError(f"split lacks part {exc}") from exc


def split_episodes(episodes: EpisodeSet, config: SplitConfig) -> EpisodeSplit:
    """Split by episode (all episodes sharing a seed stay together), stratified by outcome and task."""
    holdout_for_seed(config.holdout_tasks, episodes.tasks, 0)  # an unknown task: InvalidNameError
    rng = np.random.default_rng(config.seed)
    parts: dict[str, list[int]] = {k: [] for k in ("train", "val", "calib", "test_seen", "test_unseen")}
    by_seed: dict[int, list[int]] = {}
    for i, ep in enumerate(episodes.episodes):
        if ep.task in config.holdout_tasks:
            parts["test_unseen"].append(i)
            continue
        by_seed.setdefault(ep.seed, []).append(i)
    # Strata: outcome (successes calibrate the bands, so every part must get its share of them even
    # when they are rare), and within an outcome, task. Seeds are ordered by (task, random) and take
    # parts from a golden-ratio sequence, so every task and the whole stratum are split close to the
    # fractions even for a handful of seeds.
    strata: dict[bool, list[tuple[str, float, int]]] = {}
    for seed, members in by_seed.items():
        ok = all(episodes[i].success for i in members)
        strata.setdefault(ok, []).append((episodes[members[0]].task, 0.0, seed))
    cuts = np.cumsum([config.calib_fraction, config.val_fraction, config.test_fraction])
    names = ("calib", "val", "test_seen", "train")
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    for ok in sorted(strata):
        items = sorted(strata[ok], key=lambda x: (x[0], x[2]))
        noise = rng.random(len(items))
        items = sorted(((t, float(u), sd) for (t, _, sd), u in zip(items, noise, strict=True)))
        offset = float(rng.random())
        for k, (_, _, sd) in enumerate(items):
            u = (offset + k * golden) % 1.0
            parts[names[int(np.searchsorted(cuts, u, side="right"))]].extend(by_seed[sd])
    if config.max_train and len(parts["train"]) > config.max_train:
        parts["train"] = _subsample_train(episodes, parts["train"], config.max_train, config.seed)
    split = EpisodeSplit(**{k: tuple(sorted(v)) for k, v in parts.items()})
    if not split.train:
        raise DatasetError(f"the split left no training episodes ({len(episodes)} episodes in all)")
    return split


def _subsample_train(episodes: EpisodeSet, train: Sequence[int], n: int, seed: int) -> list[int]:
    """At most ``n`` of the ``train`` episodes, whole seeds, each outcome in proportion, taken in a
    fixed seeded order per outcome (so the subsample for a smaller ``n`` is inside a larger one's)."""
    by_seed: dict[int, list[int]] = {}
    for i in train:
        by_seed.setdefault(episodes[i].seed, []).append(i)
    rng = np.random.default_rng([seed, 0x5A1])
    order = [by_seed[s] for s in (sorted(by_seed)[j] for j in rng.permutation(len(by_seed)))]
    failed = [g for g in order if any(episodes[i].failed for i in g)]
    ok = [g for g in order if not any(episodes[i].failed for i in g)]
    n_failed = round(n * sum(len(g) for g in failed) / max(len(train), 1))
    out: list[int] = []
    for groups, quota in ((failed, n_failed), (ok, n - n_failed)):
        taken = 0
        for g in groups:
            if taken + len(g) > quota:
                break
            out.extend(g)
            taken += len(g)
    return out


_SPLIT_VIEWS: dict[tuple[int, str], tuple[EpisodeSet, EpisodeSet]] = {}
_SPLIT_VIEWS_KEPT = 6


def split_statistics(episodes: EpisodeSet, split: EpisodeSplit) -> EpisodeSet:
    """``episodes`` with every recorded signal whose fitted statistic can be refitted from the data
    (``salus.signals.analysis.SPLIT_REFIT_SIGNALS``) recomputed with that statistic fitted on the
    split's training episodes only: the ``ood_distance`` column from the recorded
    ``obs_embedding`` under a Gaussian fitted on the successful unperturbed training episodes
    (all training successes when fewer than 2 are unperturbed; the column is invalid when there
    are fewer than 2 successes). Collection computed it with the policy's packaged statistics,
    fitted on successes of every task, a held-out one included; with this, no held-out, test,
    validation or calibration episode influences it. ``extractor_statistics`` carries the refitted
    Gaussian (``meta["ood_refit"]`` says on what), so a checkpoint trained on the result runs live
    with the statistics it was trained with. Unchanged when the set has no embedding, no
    ``ood_distance`` column or no fitted Gaussian (then the report says the column was not
    refitted). Idempotent; the view of the last few splits is kept, so the stages of one process
    share it (and the features cached on its episodes)."""
    from salus.signals.analysis import ood_column, ood_fit_episodes, refit_ood

    key = hashlib.sha1(np.asarray(split.train, dtype=np.int64).tobytes()).hexdigest()[:16]
    if episodes.info.get("split_statistics") == key:
        return episodes
    kept = _SPLIT_VIEWS.get((id(episodes), key))
    if kept is not None and kept[0] is episodes:
        return kept[1]
    state = episodes.extractor_statistics
    tensors = state.get("tensors") if isinstance(state, dict) else None
    if (
        not isinstance(tensors, dict)
        or "ood.mean" not in tensors
        or "ood_distance" not in episodes.signal_names
        or not episodes.has_embedding
    ):
        return episodes
    train = [episodes[i] for i in split.train]
    fit = [
        train[i]
        for i in ood_fit_episodes([ep.success for ep in train], [bool(ep.perturbations) for ep in train])
    ]
    rule = "successful unperturbed training episodes"
    if len(fit) < 2:
        fit, rule = [ep for ep in train if ep.success], "successful training episodes"
    j = episodes.signal_names.index("ood_distance")
    meta = {
        "rule": rule,
        "episodes": len(fit),
        "rows": int(sum(ep.length for ep in fit)),
        "tasks": sorted({ep.task for ep in fit}),
        "split_train": key,
    }
    gauss = None
    if len(fit) >= 2:
        new_state, gauss = refit_ood(state, [ep.embedding for ep in fit], meta)  # type: ignore[misc]
    else:  # no Gaussian from the training part: the column is invalid, never the packaged one
        new_state = {**state, "tensors": {k: v for k, v in tensors.items() if not k.startswith("ood.")}}
        new_state["meta"] = {
            **dict(state.get("meta") or {}),
            "ood_refit": {**meta, "rule": "none: < 2 successes"},
        }
    out = []
    for ep in episodes.episodes:
        sig, val = ep.signals.copy(), ep.valid.copy()
        if gauss is None:
            sig[:, j], val[:, j] = 0.0, False
        else:
            sig[:, j], val[:, j] = ood_column(gauss, ep.embedding)  # type: ignore[arg-type]
        out.append(replace(ep, signals=sig, valid=val, cache={}))
    view = EpisodeSet(
        episodes=out,
        signal_names=episodes.signal_names,
        baseline_names=episodes.baseline_names,
        extractor_statistics=new_state,
        control_hz=episodes.control_hz,
        source=episodes.source,
        info={**episodes.info, "split_statistics": key},
        robot=episodes.robot,
    )
    while len(_SPLIT_VIEWS) >= _SPLIT_VIEWS_KEPT:
        _SPLIT_VIEWS.pop(next(iter(_SPLIT_VIEWS)))
    _SPLIT_VIEWS[(id(episodes), key)] = (episodes, view)
    return view


def with_statistics(episode: Episode, state: Any, signal_names: Sequence[str]) -> Episode:
    """``episode`` with its refittable signal columns computed as a checkpoint trained on a split
    saw them (``split_statistics``): when ``state`` (the checkpoint's extractor statistics) records
    an ``ood_refit``, the ``ood_distance`` column from the recorded embedding under its Gaussian
    (invalid when it has none). Unchanged otherwise (statistics never refitted, no embedding, no
    such column). ``offline_risk`` uses it, so recorded episodes are scored as in training."""
    from salus.signals import SignalExtractor
    from salus.signals.analysis import ood_column

    meta = state.get("meta") if isinstance(state, dict) else None
    if (
        not isinstance(meta, dict)
        or "ood_refit" not in meta
        or "ood_distance" not in signal_names
        or episode.embedding is None
    ):
        return episode
    j = list(signal_names).index("ood_distance")
    sig, val = episode.signals.copy(), episode.valid.copy()
    extractor = SignalExtractor(1)
    extractor.load_state_dict(state)
    if extractor.ood.fitted:
        sig[:, j], val[:, j] = ood_column(extractor.ood, episode.embedding)
    else:
        sig[:, j], val[:, j] = 0.0, False
    return replace(episode, signals=sig, valid=val, cache={})


def horizon_labels(episode: Episode, horizons: Sequence[int], failure_types: Sequence[str]) -> np.ndarray:
    """Per-step targets ``(T, n_horizons, 1 + n_types)`` float32.

    ``[t, j, 0]`` = 1 when the episode fails at f and ``f - t < horizons[j]`` (a failure within the
    next ``horizons[j]`` steps, or already failed); ``[t, j, 1 + k]`` the same restricted to failure type k.
    """
    T = episode.length
    y = np.zeros((T, len(horizons), 1 + len(failure_types)), dtype=np.float32)
    if episode.success:
        return y
    t = np.arange(T)[:, None]
    within = (episode.failure_step - t < np.asarray(horizons)[None, :]).astype(np.float32)
    y[:, :, 0] = within
    if episode.failure_type in failure_types:
        y[:, :, 1 + list(failure_types).index(episode.failure_type)] = within
    return y


def synthetic_episodes(
    n: int,
    *,
    seed: int = 0,
    failure_rate: float = 0.4,
    tasks: Sequence[str] = ("pick_place", "push", "stack"),
    embedding_dim: int = 32,
    n_baselines: int = 2,
    success_len: tuple[int, int] = (60, 100),
    failure_len: tuple[int, int] = (90, 160),
    informative: float = 1.0,
    hz: float = 20.0,
) -> EpisodeSet:
    """Synthetic rollouts at the dataset's shapes, for tests and benchmarks (not for results).

    Failed episodes are longer than successes (as real timeouts are). With ``informative`` > 0,
    signals 0-2, the first baseline and the embedding drift upwards from an onset between the
    episode start and ``failure_step`` (so failures are partly predictable before the shortest
    success ends), and so do the first hidden and privileged columns; the state is noise; signal 11
    is invalid on 10% of steps.
    """
    if n < 1:
        raise InvalidInputError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    episodes = []
    types = DEFAULT_FAILURE_TYPES
    for i in range(n):
        fail = bool(rng.random() < failure_rate)
        lo, hi = failure_len if fail else success_len
        T = int(rng.integers(lo, hi + 1))
        sig = rng.normal(0.0, 1.0, size=(T, N_SIGNALS)).astype(np.float32)
        sig[:, 3] += np.arange(T, dtype=np.float32) / 100.0  # elapsed time only: uninformative at T
        valid = np.ones((T, N_SIGNALS), dtype=bool)
        valid[:, 11] = rng.random(T) > 0.1
        sig[~valid] = np.nan
        emb = rng.normal(0.0, 1.0, size=(T, embedding_dim)).astype(np.float32)
        base = rng.normal(0.0, 1.0, size=(T, n_baselines)).astype(np.float32) if n_baselines else None
        state = rng.normal(0.0, 1.0, size=(T, 22)).astype(np.float32)
        hidden = rng.normal(0.0, 1.0, size=(T, 8)).astype(np.float32)
        privileged = rng.normal(0.0, 1.0, size=(T, 23)).astype(np.float32)
        failure_step, ftype = -1, "none"
        if fail:
            failure_step = T - 1 - int(rng.integers(0, 10))
            ftype = str(types[int(rng.integers(0, len(types)))])
            onset = int(rng.integers(0, max(1, failure_step - 5)))
            ramp = np.clip((np.arange(T) - onset) / 15.0, 0.0, 1.0).astype(np.float32) * informative
            sig[:, 0] += 2.0 * ramp
            sig[:, 1] += 1.5 * ramp
            sig[:, 2] -= 1.0 * ramp
            emb[:, :4] += 2.0 * ramp[:, None]
            hidden[:, :2] += 1.5 * ramp[:, None]
            privileged[:, :3] += 3.0 * ramp[:, None]
            if base is not None:
                base[:, 0] += 1.5 * ramp
        episodes.append(
            Episode(
                signals=sig,
                valid=valid,
                success=not fail,
                failure_step=failure_step,
                failure_type=ftype,
                task=str(tasks[i % len(tasks)]),
                seed=seed * 1_000_003 + i,
                baselines=base,
                embedding=emb,
                state=state,
                hidden=hidden,
                privileged=privileged,
            )
        )
    return EpisodeSet(
        episodes=episodes,
        baseline_names=tuple(f"baseline_{j}" for j in range(n_baselines)),
        extractor_statistics={"synthetic": True},
        control_hz=hz,
        source="synthetic",
    )
