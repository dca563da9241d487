"""Evaluation report a person reads: PNG figures (matplotlib) and one HTML page.

The renderer works on plain arrays (:class:`ReportInputs`), so it does not care which predictor or
baseline produced the scores. ``salus report MODEL_DIR DATA --out DIR`` fills the inputs from the
predictor's evaluation (:func:`salus.monitor.evaluation.build_report_inputs`) and calls
:func:`render_report`.

Protocol (SAFE's, the same as ``salus.predictor.metrics``): an episode's score at time ``t`` is the
running maximum of its per-step score; ROC curves use that score at a fixed time ``T`` per task
(the length of the task's shortest successful rollout in the split unless given); an alarm is
raised at the first step whose running score is above the method's functional conformal band.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import InvalidInputError, InvalidNameError

__all__ = [
    "METHOD_KINDS",
    "Band",
    "EpisodeScores",
    "ReportInputs",
    "EpisodeAlarm",
    "first_alarm",
    "running_max",
    "score_at_time",
    "render_report",
    "FIGURE_NAMES",
]

METHOD_KINDS = ("predictor", "baseline", "signal")
FIGURE_NAMES = ("roc", "timelines", "lead_time", "signals", "confusion")


@dataclass
class Band:
    """A method's calibrated one-sided conformal band over time.

    ``center`` (T_b,) is the mean score trajectory of successful calibration rollouts and ``upper``
    (T_b,) the alarm threshold (center + q * modulation). Steps past T_b use the last value.
    """

    center: np.ndarray
    upper: np.ndarray
    alpha: float

    @classmethod
    def from_functional(cls, band: Any) -> Band:
        """From a ``salus.predictor.FunctionalBand`` (``mu``, ``upper(L)``, ``alpha``)."""
        mu = np.asarray(band.mu, dtype=np.float64)
        return cls(center=mu, upper=band.upper(mu.size), alpha=float(band.alpha))

    @property
    def never_alarms(self) -> bool:
        """True when calibration had too few episodes for this alpha (infinite threshold)."""
        return not np.isfinite(self.upper).any()

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=np.float64).reshape(-1)
        self.upper = np.asarray(self.upper, dtype=np.float64).reshape(-1)
        if self.center.shape != self.upper.shape or self.upper.size == 0:
            raise InvalidInputError(
                f"band center {self.center.shape} and upper {self.upper.shape} must be equal, non-empty (T,)"
            )
        if not 0.0 < float(self.alpha) < 1.0:
            raise InvalidInputError(f"band alpha must be in (0, 1), got {self.alpha}")

    def upper_at(self, length: int) -> np.ndarray:
        """The threshold for steps 0 .. length-1, (length,)."""
        return _extend(self.upper, length)

    def center_at(self, length: int) -> np.ndarray:
        return _extend(self.center, length)


def _extend(curve: np.ndarray, length: int) -> np.ndarray:
    if length <= curve.size:
        return curve[:length]
    return np.concatenate([curve, np.full(length - curve.size, curve[-1])])


@dataclass
class EpisodeScores:
    """One test episode: its label and per-step scores of every method.

    ``scores`` maps method name to the per-step score (T,) (higher = more likely to fail);
    ``signals`` (T, 12) and ``signal_valid`` (T, 12) are optional (for the signal distributions).
    """

    index: int
    split: str
    task: str
    success: bool
    failure_step: int
    scores: dict[str, np.ndarray]
    signals: np.ndarray | None = None
    signal_valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.scores = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in self.scores.items()}
        lengths = {v.size for v in self.scores.values()}
        if len(lengths) > 1:
            raise InvalidInputError(f"episode {self.index}: score lengths differ across methods: {lengths}")
        if self.success and self.failure_step != -1:
            raise InvalidInputError(f"episode {self.index}: successful episodes have failure_step -1")
        if not self.success and self.failure_step < 0:
            raise InvalidInputError(f"episode {self.index}: failed episodes need failure_step >= 0")
        if self.signals is not None:
            self.signals = np.asarray(self.signals, dtype=np.float64)
            if self.signal_valid is None:
                self.signal_valid = np.isfinite(self.signals)
            self.signal_valid = np.asarray(self.signal_valid, dtype=bool)
            if self.signals.ndim != 2 or self.signal_valid.shape != self.signals.shape:
                raise InvalidInputError(
                    f"episode {self.index}: signals {self.signals.shape} and signal_valid "
                    f"{self.signal_valid.shape} must both be (T, n_signals)"
                )

    @property
    def length(self) -> int:
        return next(iter(self.scores.values())).size if self.scores else 0


@dataclass
class ReportInputs:
    """Everything the report draws.

    ``table`` holds the evaluation's result rows (one dict per method and split, as ``salus
    evaluate`` writes them); ``method_kinds`` maps every method in the episodes' scores to one of
    :data:`METHOD_KINDS`; ``bands`` holds the calibrated band of each method that has one;
    ``eval_time`` maps task to the ROC time T (missing tasks: the task's shortest successful
    rollout within the split, else the split's shortest success, else its shortest rollout).
    """

    episodes: list[EpisodeScores]
    method_kinds: dict[str, str]
    primary_method: str
    bands: dict[str, Band]
    alpha: float
    table: list[dict[str, Any]] = field(default_factory=list)
    signal_names: tuple[str, ...] = ()
    control_hz: float = 20.0
    eval_time: dict[str, int] = field(default_factory=dict)
    title: str = "salus failure-prediction report"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.episodes:
            raise InvalidInputError("a report needs at least one test episode")
        for name, kind in self.method_kinds.items():
            if kind not in METHOD_KINDS:
                raise InvalidNameError("method kind", f"{name}={kind}", METHOD_KINDS)
        methods = set(self.episodes[0].scores)
        for ep in self.episodes:
            if set(ep.scores) != methods:
                raise InvalidInputError(
                    f"episode {ep.index} has scores for {sorted(ep.scores)}, expected {sorted(methods)}"
                )
        missing = methods - set(self.method_kinds)
        if missing:
            raise InvalidInputError(f"method_kinds lacks {sorted(missing)}")
        if self.primary_method not in methods:
            raise InvalidNameError("method", self.primary_method, methods)
        if self.primary_method not in self.bands:
            raise InvalidInputError(f"the primary method {self.primary_method!r} needs a calibrated band")
        if not 0.0 < self.alpha < 1.0:
            raise InvalidInputError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.control_hz <= 0:
            raise InvalidInputError(f"control_hz must be > 0, got {self.control_hz}")

    @property
    def methods(self) -> list[str]:
        return list(self.episodes[0].scores)

    @property
    def splits(self) -> list[str]:
        seen: dict[str, None] = {}
        for ep in self.episodes:
            seen.setdefault(ep.split, None)
        return list(seen)

    def split_episodes(self, split: str) -> list[EpisodeScores]:
        return [ep for ep in self.episodes if ep.split == split]

    def times_for(self, split: str) -> dict[str, int]:
        """The ROC time T of each task in a split (see ``eval_time``)."""
        eps = self.split_episodes(split)
        ok = [ep.length for ep in eps if ep.success]
        fallback = min(ok) if ok else min(ep.length for ep in eps)
        out = {}
        for task in sorted({ep.task for ep in eps}):
            if task in self.eval_time:
                out[task] = int(self.eval_time[task])
                continue
            lens = [ep.length for ep in eps if ep.task == task and ep.success]
            out[task] = int(min(lens) if lens else fallback)
        return out


@dataclass
class EpisodeAlarm:
    """Where one episode's score first left the band (step -1: never)."""

    step: int
    lead_steps: int | None  # failure_step - step for failed, detected episodes


def score_at_time(scores: np.ndarray, t: int) -> float:
    """Running maximum of a per-step score over steps 0 .. t-1 (whole episode if shorter)."""
    upto = scores[: max(1, min(t, scores.size))]
    finite = upto[np.isfinite(upto)]
    return float(finite.max()) if finite.size else float("-inf")


def running_max(scores: np.ndarray) -> np.ndarray:
    """Running maximum (T,) of a per-step score (T,); NaN steps count as -inf."""
    s = np.asarray(scores, dtype=np.float64)
    return np.maximum.accumulate(np.where(np.isfinite(s), s, -np.inf))


def first_alarm(scores: np.ndarray, band: Band) -> int:
    """The first step whose running score is above the band's upper edge, or -1."""
    above = np.flatnonzero(running_max(scores) > band.upper_at(np.asarray(scores).size))
    return int(above[0]) if above.size else -1


def _episode_alarm(ep: EpisodeScores, method: str, band: Band) -> EpisodeAlarm:
    step = first_alarm(ep.scores[method], band)
    lead = ep.failure_step - step if (not ep.success and step >= 0) else None
    return EpisodeAlarm(step=step, lead_steps=lead)


# ----------------------------------------------------------------------------------------- metrics


def _roc(inputs: ReportInputs, split: str, method: str) -> tuple[np.ndarray, np.ndarray, float] | None:
    from sklearn.metrics import roc_auc_score, roc_curve

    eps = inputs.split_episodes(split)
    times = inputs.times_for(split)
    y = np.array([0 if ep.success else 1 for ep in eps])
    if y.min() == y.max():
        return None
    s = np.array([score_at_time(ep.scores[method], times[ep.task]) for ep in eps])
    s = np.nan_to_num(s, nan=-1e30, neginf=-1e30, posinf=1e30)
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr, float(roc_auc_score(y, s))


def _confusion(inputs: ReportInputs, split: str, method: str) -> dict[str, Any]:
    band = inputs.bands[method]
    tp = fp = tn = fn = 0
    leads: list[int] = []
    for ep in inputs.split_episodes(split):
        alarm = _episode_alarm(ep, method, band)
        if ep.success:
            fp += alarm.step >= 0
            tn += alarm.step < 0
        else:
            tp += alarm.step >= 0
            fn += alarm.step < 0
            if alarm.lead_steps is not None:
                leads.append(alarm.lead_steps)
    tpr = tp / (tp + fn) if tp + fn else float("nan")
    fpr = fp / (fp + tn) if fp + tn else float("nan")
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "tpr": tpr,
        "fpr": fpr,
        "balanced_accuracy": 0.5 * (tpr + 1.0 - fpr),
        "lead_steps": leads,
    }


def _ranked_methods(inputs: ReportInputs, kinds: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
    """Methods of the given kinds, best mean ROC-AUC over splits first."""
    out: list[tuple[str, dict[str, float]]] = []
    for m in inputs.methods:
        if inputs.method_kinds[m] not in kinds:
            continue
        aucs = {}
        for split in inputs.splits:
            r = _roc(inputs, split, m)
            if r is not None:
                aucs[split] = r[2]
        out.append((m, aucs))
    out.sort(key=lambda it: -np.mean(list(it[1].values())) if it[1] else 0.0)
    return out


# ----------------------------------------------------------------------------------------- figures


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 7.5, "figure.dpi": 110})
    return plt


def _fig_roc(inputs: ReportInputs, path: Path) -> dict[str, Any]:
    plt = _plt()
    splits = inputs.splits
    fig, axes = plt.subplots(2, len(splits), figsize=(5.2 * len(splits), 9.0), squeeze=False)
    result: dict[str, Any] = {}
    for col, split in enumerate(splits):
        times = inputs.times_for(split)
        t = (
            str(min(times.values()))
            if len(set(times.values())) == 1
            else f"{min(times.values())}-{max(times.values())}"
        )
        for row, kinds in enumerate((("predictor", "baseline"), ("signal",))):
            ax = axes[row][col]
            ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
            curves = []
            for m in inputs.methods:
                if inputs.method_kinds[m] not in kinds:
                    continue
                r = _roc(inputs, split, m)
                if r is None:
                    continue
                curves.append((r[2], m, r[0], r[1]))
                result.setdefault(split, {})[m] = r[2]
            curves.sort(key=lambda c: -c[0])
            cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
            for i, (auc, m, fpr, tpr) in enumerate(curves):
                primary = m == inputs.primary_method
                ax.plot(
                    fpr,
                    tpr,
                    lw=2.4 if primary else 1.2,
                    color="black" if primary else cmap(i % cmap.N),
                    label=f"{m}  {auc:.3f}",
                    zorder=3 if primary else 2,
                )
            what = "predictors and baselines" if row == 0 else "single signals"
            ax.set_title(f"{split}: {what} (score at T={t} steps)")
            ax.set_xlabel("false positive rate (successful episodes)")
            ax.set_ylabel("true positive rate (failed episodes)")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            ax.grid(alpha=0.3)
            if curves:
                ax.legend(loc="lower right", title="method  ROC-AUC", title_fontsize=7.5)
            else:
                ax.text(0.5, 0.5, "needs successful and failed episodes", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return result


def _pick_examples(inputs: ReportInputs, n: int) -> list[EpisodeScores]:
    """Up to n failed and n successful episodes, preferring failures that were detected and not."""
    band = inputs.bands[inputs.primary_method]
    # alternate between splits so that every split shows up
    per_split = [inputs.split_episodes(s) for s in inputs.splits]
    mixed = [eps[k] for k in range(max(map(len, per_split))) for eps in per_split if k < len(eps)]
    failed = [ep for ep in mixed if not ep.success]
    ok = [ep for ep in mixed if ep.success]

    def pick(usual: list[EpisodeScores], unusual: list[EpisodeScores]) -> list[EpisodeScores]:
        """Up to n: mostly the usual case, one of the unusual, then whatever is left."""
        chosen = usual[: max(1, n - 1)] + unusual[:1]
        rest = [ep for ep in usual + unusual if all(ep is not c for c in chosen)]
        return (chosen + rest)[:n]

    m = inputs.primary_method
    detected = [ep for ep in failed if first_alarm(ep.scores[m], band) >= 0]
    missed = [ep for ep in failed if first_alarm(ep.scores[m], band) < 0]
    quiet = [ep for ep in ok if first_alarm(ep.scores[m], band) < 0]
    false_alarm = [ep for ep in ok if first_alarm(ep.scores[m], band) >= 0]
    return pick(detected, missed) + pick(quiet, false_alarm)


def _fig_timelines(inputs: ReportInputs, path: Path, n: int = 3) -> list[dict[str, Any]]:
    plt = _plt()
    m = inputs.primary_method
    band = inputs.bands[m]
    examples = _pick_examples(inputs, n)
    cols = 3
    rows = max(1, math.ceil(len(examples) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.0 * rows), squeeze=False)
    info = []
    for i, ax in enumerate(axes.flat):
        if i >= len(examples):
            ax.axis("off")
            continue
        ep = examples[i]
        s = ep.scores[m]
        t = np.arange(s.size) / inputs.control_hz
        upper = band.upper_at(s.size)
        center = band.center_at(s.size)
        run = running_max(s)
        if np.isfinite(upper).all():
            ax.fill_between(t, center, upper, color="tab:green", alpha=0.15, lw=0, label="conformal band")
            ax.plot(t, upper, color="tab:green", lw=1.2, label=f"alarm threshold (alpha={band.alpha:g})")
        else:
            ax.plot(t, center, color="tab:green", lw=1.0, ls=":", label="band centre (never alarms)")
        ax.plot(t, s, color="tab:blue", lw=0.8, alpha=0.45, label=f"per-step score ({m})")
        ax.plot(t, run, color="tab:blue", lw=1.6, label="running max (compared to band)")
        alarm = _episode_alarm(ep, m, band)
        if not ep.success:
            ax.axvline(ep.failure_step / inputs.control_hz, color="tab:red", lw=1.5, ls="--", label="failure")
        if alarm.step >= 0:
            ax.plot(
                [alarm.step / inputs.control_hz], [run[alarm.step]], "v", color="tab:red", ms=9, label="alarm"
            )
        outcome = "success" if ep.success else "failure"
        if ep.success:
            verdict = "false alarm" if alarm.step >= 0 else "no alarm (correct)"
        elif alarm.step < 0:
            verdict = "missed"
        else:
            assert alarm.lead_steps is not None
            lead_s = alarm.lead_steps / inputs.control_hz
            verdict = (
                f"alarm {lead_s:.2f} s before failure"
                if lead_s >= 0
                else f"alarm {-lead_s:.2f} s after failure"
            )
        ax.set_title(f"ep {ep.index} ({ep.split}, {ep.task}): {outcome}\n{verdict}", fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("failure score")
        ax.grid(alpha=0.3)
        info.append({"episode": ep.index, "success": ep.success, "alarm_step": alarm.step})
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=min(6, len(handles)), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path)
    plt.close(fig)
    return info


def _fig_lead_time(inputs: ReportInputs, path: Path, others: list[str]) -> dict[str, list[float]]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    out: dict[str, list[float]] = {}
    methods = [inputs.primary_method] + [m for m in others if m in inputs.bands][:2]
    all_leads = []
    for m in methods:
        leads = []
        for split in inputs.splits:
            leads += _confusion(inputs, split, m)["lead_steps"]
        out[m] = [x / inputs.control_hz for x in leads]
        all_leads += out[m]
    if all_leads:
        lo, hi = min(all_leads), max(all_leads)
        bins = np.linspace(lo - 0.05, hi + 0.05, max(6, min(30, len(all_leads) // 2 + 2)))
        for m in methods:
            if out[m]:
                ax.hist(
                    out[m],
                    bins=bins,
                    histtype="step" if m != inputs.primary_method else "stepfilled",
                    alpha=0.45 if m == inputs.primary_method else 1.0,
                    lw=1.6,
                    label=f"{m} (n={len(out[m])}, median {np.median(out[m]):.2f} s)",
                )
        ax.axvline(0.0, color="tab:red", ls="--", lw=1.2, label="failure step")
        ax.legend(fontsize=7.5)
    else:
        ax.text(
            0.5,
            0.5,
            "no failure was detected at this alpha",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("lead time: seconds from first alarm to the failure (> 0: alarm came first)")
    ax.set_ylabel("detected failed episodes")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Detection lead time at alpha={inputs.alpha:g} (all test splits)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return out


def _fig_signals(inputs: ReportInputs, path: Path) -> bool:
    plt = _plt()
    have = [ep for ep in inputs.episodes if ep.signals is not None]
    if not have:
        return False
    n = have[0].signals.shape[1]  # type: ignore[union-attr]
    names = list(inputs.signal_names) or [f"signal {j}" for j in range(n)]
    cols = 4
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows), squeeze=False)
    for j, ax in enumerate(axes.flat):
        if j >= n:
            ax.axis("off")
            continue
        ok_vals, fail_vals = [], []
        for ep in have:
            assert ep.signals is not None and ep.signal_valid is not None
            col, valid = ep.signals[:, j], ep.signal_valid[:, j] & np.isfinite(ep.signals[:, j])
            if ep.success:
                ok_vals.append(col[valid])
            else:
                end = ep.failure_step + 1
                fail_vals.append(col[:end][valid[:end]])
        a = np.concatenate(ok_vals) if ok_vals else np.zeros(0)
        b = np.concatenate(fail_vals) if fail_vals else np.zeros(0)
        both = np.concatenate([a, b])
        if both.size == 0:
            ax.text(
                0.5, 0.5, "never valid in these episodes", ha="center", va="center", transform=ax.transAxes
            )
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            lo, hi = np.percentile(both, [1, 99])
            if hi <= lo:
                lo, hi = lo - 0.5, hi + 0.5
            bins = np.linspace(lo, hi, 31)
            if a.size:
                ax.hist(
                    np.clip(a, lo, hi), bins=bins, density=True, alpha=0.5, color="tab:green", label="success"
                )
            if b.size:
                ax.hist(
                    np.clip(b, lo, hi), bins=bins, density=True, alpha=0.5, color="tab:red", label="failure"
                )
        ax.set_title(names[j] if j < len(names) else f"signal {j}", fontsize=9)
        ax.tick_params(labelsize=7)
        if j == 0:
            ax.legend(fontsize=7)
    fig.suptitle(
        "Per-step signal values: successful episodes vs failed episodes up to the failure step", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _fig_confusion(inputs: ReportInputs, path: Path) -> dict[str, dict[str, Any]]:
    plt = _plt()
    splits = inputs.splits
    fig, axes = plt.subplots(1, len(splits), figsize=(3.8 * len(splits), 3.6), squeeze=False)
    out = {}
    for ax, split in zip(axes[0], splits, strict=True):
        c = _confusion(inputs, split, inputs.primary_method)
        out[split] = {k: v for k, v in c.items() if k != "lead_steps"}
        mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(mat, cmap="Blues", vmin=0, vmax=max(1, int(mat.max())))
        for (r, k), v in np.ndenumerate(mat):
            ax.text(
                k,
                r,
                str(v),
                ha="center",
                va="center",
                fontsize=14,
                color="white" if v > 0.6 * mat.max() else "black",
            )
        ax.set_xticks([0, 1], ["no alarm", "alarm"])
        ax.set_yticks([0, 1], ["success", "failure"])
        ax.set_xlabel("monitor")
        ax.set_ylabel("episode outcome")
        ax.set_title(f"{split}: TPR {c['tpr']:.2f}, FPR {c['fpr']:.2f}", fontsize=9)
    fig.suptitle(f"{inputs.primary_method} at alpha={inputs.alpha:g} (episodes)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return out


# ----------------------------------------------------------------------------------------- html

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.primary td { font-weight: bold; background: #eef6ff; }
.meta td { text-align: left; } .note { color: #555; font-size: 0.9em; }
"""


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return html.escape(str(v))


def _html_table(rows: Sequence[Mapping[str, Any]], primary: str | None = None) -> str:
    if not rows:
        return "<p class='note'>(no rows)</p>"
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols and not isinstance(r[k], (dict, list)):
                cols.append(k)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cls = " class='primary'" if primary is not None and r.get("method") == primary else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _results_tables(inputs: ReportInputs) -> str:
    """Predictors and baselines in the open; the single signals folded (they are many)."""
    kinds = inputs.method_kinds
    main = [r for r in inputs.table if kinds.get(str(r.get("method")), "baseline") != "signal"]
    single = [r for r in inputs.table if kinds.get(str(r.get("method"))) == "signal"]
    html_out = _html_table(main, inputs.primary_method)
    if single:
        html_out += (
            f"<details><summary>Each signal alone ({len(single)} rows)</summary>"
            f"{_html_table(single, inputs.primary_method)}</details>"
        )
    return html_out


def render_report(inputs: ReportInputs, out_dir: str | Path) -> Path:
    """Write the figures (``<name>.png``), ``report.json`` and ``index.html`` into ``out_dir``.

    Returns the path of ``index.html``. Every image the page references is written next to it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"primary_method": inputs.primary_method, "alpha": inputs.alpha}
    summary["roc_auc"] = _fig_roc(inputs, out / "roc.png")
    summary["timeline_examples"] = _fig_timelines(inputs, out / "timelines.png")
    ranked = [m for m, _ in _ranked_methods(inputs, ("predictor", "baseline")) if m != inputs.primary_method]
    summary["lead_time_s"] = _fig_lead_time(inputs, out / "lead_time.png", ranked)
    has_signals = _fig_signals(inputs, out / "signals.png")
    summary["confusion"] = _fig_confusion(inputs, out / "confusion.png")
    summary["eval_time"] = {s: inputs.times_for(s) for s in inputs.splits}
    summary["episodes"] = {
        s: {
            "total": len(inputs.split_episodes(s)),
            "failed": sum(not ep.success for ep in inputs.split_episodes(s)),
        }
        for s in inputs.splits
    }
    (out / "report.json").write_text(json.dumps(_strict_json(summary), indent=2, allow_nan=False))

    meta_rows = [{"field": k, "value": v} for k, v in inputs.meta.items()]
    meta_rows += [
        {"field": "primary method", "value": inputs.primary_method},
        {"field": "alpha", "value": inputs.alpha},
        {"field": "control rate", "value": f"{inputs.control_hz:g} Hz"},
    ]
    for s in inputs.splits:
        e = summary["episodes"][s]
        times = ", ".join(f"{k}: {v}" for k, v in summary["eval_time"][s].items())
        meta_rows.append(
            {
                "field": f"{s} test episodes",
                "value": f"{e['total']} ({e['failed']} failed); ROC time T (steps) {times}",
            }
        )
    conf_rows = [{"split": s, **{k: v for k, v in c.items()}} for s, c in summary["confusion"].items()]

    sections = [
        (
            "Results table",
            _results_tables(inputs)
            + "<p class='note'>Every method scored on the same test episodes. ROC-AUC and AP use the running "
            "maximum of each method's score at time T; TPR/FPR/detection at the conformal threshold.</p>",
        ),
        (
            "ROC curves",
            _img(
                "roc.png",
                "ROC curves of every method, per split. Top: trained predictors and "
                "published baselines; bottom: each signal alone. The thick black curve is the "
                "primary method; legend entries are sorted by ROC-AUC.",
            ),
        ),
        (
            "Score timelines",
            _img(
                "timelines.png",
                "Sample failed (first row) and successful episodes: the "
                "per-step score (light), its running maximum (solid, the monitored score), "
                "the calibrated conformal band (green: alarm when the running score is above "
                "its upper edge), the labelled failure step (red dashed line) and the first "
                "alarm (red triangle).",
            ),
        ),
        (
            "Detection lead time",
            _img(
                "lead_time.png",
                "For failed episodes that raised an alarm: seconds from "
                "the first alarm to the labelled failure step. Negative values are late "
                "alarms.",
            ),
        ),
    ]
    if has_signals:
        sections.append(
            (
                "Signal distributions",
                _img(
                    "signals.png",
                    "Per-step value of each of the signals in successful "
                    "episodes (green) and in failed episodes up to the failure (red). "
                    "Axes clipped to the 1st-99th percentile.",
                ),
            )
        )
    sections.append(
        (
            "Confusion counts",
            _img(
                "confusion.png",
                f"Episode-level outcome against the monitor's alarm at alpha={inputs.alpha:g}.",
            )
            + _html_table(conf_rows),
        )
    )
    body = "".join(f"<h2>{html.escape(t)}</h2>{c}" for t, c in sections)
    meta_html = "".join(f"<tr><td>{_fmt(r['field'])}</td><td>{_fmt(r['value'])}</td></tr>" for r in meta_rows)
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(inputs.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(inputs.title)}</h1>"
        f"<table class='meta'>{meta_html}</table>"
        f"{body}</body></html>"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _strict_json(value: Any) -> Any:
    """Plain JSON values: numpy numbers become Python numbers, NaN and inf become null."""
    if isinstance(value, dict):
        return {str(k): _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _img(name: str, caption: str) -> str:
    return f"<figure><img src='{name}' alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}</figcaption></figure>"
