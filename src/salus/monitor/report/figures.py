"""The report's PNG figures (matplotlib, headless). Each draws what the evaluation already holds.

Every number on a figure comes from the :class:`~salus.predictor.Evaluation` behind a
:class:`~.view.ReportView`: realised FPR, lead times and ROC-AUCs from its report, thresholds from its
fitted bands, alarm steps and scores at T from ``salus.predictor.protocol``. Nothing is refitted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from salus.predictor.closed_loop import RANDOM as RANDOM_NAME
from salus.predictor.protocol import alarm_steps, running_max, score_at

from .view import TRAINED_FAMILIES, ReportView

__all__ = [
    "FIGURE_NAMES",
    "draw_calibration",
    "draw_lead_time",
    "draw_timelines",
    "draw_roc",
    "draw_signals",
    "draw_closed_loop",
    "pick_examples",
]

FIGURE_NAMES = ("calibration", "lead_time", "timelines", "roc", "signals")
KIND_LABEL = {"band": "functional band", "constant": "constant threshold"}
KIND_COLOR = {"band": "tab:green", "constant": "tab:orange"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 7.5, "figure.dpi": 110})
    return plt


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path)
    _plt().close(fig)


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)


# --------------------------------------------------------------------------------- calibration
def draw_calibration(view: ReportView, path: Path) -> dict[str, Any]:
    """Realised FPR on test successes against alpha, per test group (columns) and threshold kind
    (rows): the trained predictors in colour (the primary with its Wilson interval), the other
    methods except single signals in grey, and the target FPR = alpha."""
    plt = _plt()
    groups, kinds, alphas = view.groups, view.kinds, view.alphas
    fig, axes = plt.subplots(
        len(kinds), len(groups), figsize=(4.8 * len(groups), 3.6 * len(kinds)), squeeze=False
    )
    trained = view.trained()
    others = [
        m.name
        for m in view.evaluation.methods
        if m.family not in (*TRAINED_FAMILIES, "signal") and m.name not in trained
    ]
    cmap = plt.get_cmap("tab10")
    drawn: dict[str, Any] = {}
    top = max(alphas) * 1.6
    for r, kind in enumerate(kinds):
        for c, (g, _) in enumerate(groups):
            ax = axes[r][c]
            n_success = view.alarms(view.primary, g, kind)["n_success"]
            ax.plot([0, top], [0, top], color="0.4", lw=1.0, ls="--", label="FPR = alpha (target)")
            for k, name in enumerate(others):
                other = [_nan(view.alarms(name, g, kind, a)["fpr"]) for a in alphas]
                ax.plot(
                    alphas, other, color="0.75", lw=0.8, marker=".", label="other methods" if k == 0 else None
                )
            for k, name in enumerate(trained):
                rows = [view.alarms(name, g, kind, a) for a in alphas]
                fpr = np.array([_nan(x["fpr"]) for x in rows])
                primary = name == view.primary
                if primary:
                    ci = np.array([[_nan(v) for v in x["fpr_ci95"]] for x in rows])
                    yerr = np.vstack([fpr - ci[:, 0], ci[:, 1] - fpr])
                    ax.errorbar(
                        alphas, fpr, yerr=np.nan_to_num(yerr), color="black", lw=2.0, marker="o",
                        capsize=3, label=f"{name} (95% Wilson)", zorder=4,
                    )  # fmt: skip
                    drawn.setdefault(g, {})[kind] = {
                        str(a): _nan(x["fpr"]) for a, x in zip(alphas, rows, strict=True)
                    }
                else:
                    ax.plot(alphas, fpr, color=cmap(k % 10), lw=1.3, marker="o", ms=3, label=name)
            ax.set_xlim(0, max(alphas) * 1.15)
            ys = np.concatenate([np.asarray(ln.get_ydata(), dtype=float) for ln in ax.get_lines()])
            seen_max = float(ys[np.isfinite(ys)].max()) if np.isfinite(ys).any() else 0.0
            ax.set_ylim(0, min(1.02, max(top, seen_max * 1.1, 0.05)))
            ax.set_xticks(alphas)
            ax.set_xlabel("alpha (target false-alarm rate)")
            ax.set_ylabel("realised FPR on test successes")
            ax.set_title(f"{g} tasks ({n_success} successes): {KIND_LABEL.get(kind, kind)}")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", fontsize=7)
    fig.suptitle("Calibration: realised false-alarm rate against alpha (thresholds from calib successes)")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    _save(fig, path)
    return drawn


# ------------------------------------------------------------------------------------ lead time
def draw_lead_time(view: ReportView, path: Path) -> dict[str, Any]:
    """Histogram of the primary method's lead times (``alarm_metrics``' ``lead_s``: event failures
    alarmed at or before ``failure_step``) at the view's alpha, per group, one outline per kind."""
    plt = _plt()
    groups = view.groups
    fig, axes = plt.subplots(1, len(groups), figsize=(5.4 * len(groups), 3.8), squeeze=False)
    out: dict[str, Any] = {}
    for ax, (g, _) in zip(axes[0], groups, strict=True):
        per_kind = {k: view.alarms(view.primary, g, k) for k in view.kinds}
        leads = {k: [float(v) for v in a["lead_s"]] for k, a in per_kind.items()}
        every = [v for vs in leads.values() for v in vs]
        out[g] = {k: {"n": len(v), "median": _nan(per_kind[k]["lead_s_median"])} for k, v in leads.items()}
        n_event = next(iter(per_kind.values()))["n_event"] if per_kind else 0
        if every:
            hi = max(every)
            bins = np.linspace(0.0, hi + 0.1, max(6, min(30, len(every) // 2 + 2)))
            for k, vals in leads.items():
                a = per_kind[k]
                if not vals:
                    continue
                ax.hist(
                    vals, bins=bins, histtype="stepfilled" if k == "band" else "step",
                    alpha=0.4 if k == "band" else 1.0, lw=1.6, color=KIND_COLOR.get(k),
                    label=f"{KIND_LABEL.get(k, k)}: {len(vals)}/{n_event} in time, median "
                    f"{_nan(a['lead_s_median']):.2f} s; {_nan(a['event_after']):.0%} after the event",
                )  # fmt: skip
            ax.legend(fontsize=7)
        else:
            ax.text(
                0.5, 0.5, f"no event failure ({n_event}) was alarmed in time", ha="center", va="center",
                transform=ax.transAxes,
            )  # fmt: skip
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("lead time: seconds from the first alarm to failure_step")
        ax.set_ylabel("event failures (drop, miss, collision)")
        ax.set_title(f"{g} tasks: {view.primary} at alpha = {view.alpha:g}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return out


# ------------------------------------------------------------------------------ score timelines
def _kind_for_examples(view: ReportView) -> str:
    return "band" if "band" in view.kinds else view.kinds[0]


def pick_examples(view: ReportView, n: int = 6) -> list[tuple[str, int]]:
    """Up to ``n`` ``(group, episode index)`` test episodes of each outcome: an event failure
    alarmed in time, one missed or alarmed late, a timeout, a quiet success and a false alarm
    (alarms of the primary method's threshold), the groups alternating; then more of the same."""
    band = view.band(_kind_for_examples(view))
    scores = view.method(view.primary).scores
    event_types = tuple(view.report["protocol"]["event_types"])
    cats: dict[str, list[tuple[str, int]]] = {
        k: [] for k in ("caught", "missed", "timeout", "quiet", "false")
    }
    per_group = [[(g, i) for i in idx] for g, idx in view.groups]
    mixed = [eps[k] for k in range(max(map(len, per_group), default=0)) for eps in per_group if k < len(eps)]
    for g, i in mixed:
        ep = view.evaluation.episodes[i]
        a = int(alarm_steps([running_max(scores[i])], band)[0])
        if ep.success:
            cats["false" if a >= 0 else "quiet"].append((g, i))
        elif ep.failure_type in event_types:
            cats["caught" if 0 <= a <= ep.failure_step else "missed"].append((g, i))
        else:
            cats["timeout"].append((g, i))
    chosen: list[tuple[str, int]] = []
    order = ["caught", "missed", "timeout", "quiet", "false", "caught", "quiet", "missed", "false"]
    for cat in order:
        rest = [x for x in cats[cat] if x not in chosen]
        if rest and len(chosen) < n:
            chosen.append(rest[0])
    for cat in cats:  # fill up with whatever is left
        for x in cats[cat]:
            if len(chosen) < n and x not in chosen:
                chosen.append(x)
    return chosen


def draw_timelines(view: ReportView, path: Path, n: int = 6) -> list[dict[str, Any]]:
    """Per-episode score curves of the primary method: per-step score, running max, the fitted
    functional band (centre and upper edge) and constant threshold at the view's alpha, the
    labelled failure step and each threshold's first alarm."""
    plt = _plt()
    examples = pick_examples(view, n)
    cols = 3
    rows = max(1, math.ceil(len(examples) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.2 * rows), squeeze=False)
    scores = view.method(view.primary).scores
    hz = view.control_hz
    info = []
    for k, ax in enumerate(axes.flat):
        if k >= len(examples):
            ax.axis("off")
            continue
        g, i = examples[k]
        ep = view.evaluation.episodes[i]
        s = np.asarray(scores[i], dtype=np.float64)
        run = running_max(s)
        t = np.arange(s.size) / hz
        ax.plot(t, s, color="tab:blue", lw=0.8, alpha=0.45, label="per-step score")
        ax.plot(t, run, color="tab:blue", lw=1.6, label="running max (compared)")
        alarms: dict[str, int] = {}
        for kind in view.kinds:
            band = view.band(kind)
            upper = band.upper(s.size)
            color = KIND_COLOR.get(kind, "tab:gray")
            if kind == "band":
                idx = np.minimum(np.arange(s.size), len(band.mu) - 1)
                ax.plot(t, band.mu[idx], color=color, lw=0.9, ls=":", label="band centre (calib mean)")
            if np.isfinite(upper).all():
                ax.plot(t, upper, color=color, lw=1.3, ls="-" if kind == "band" else "--",
                        label=f"{KIND_LABEL.get(kind, kind)} (alpha = {view.alpha:g})")  # fmt: skip
            else:
                ax.plot([], [], color=color, label=f"{KIND_LABEL.get(kind, kind)}: infinite (never alarms)")
            a = int(alarm_steps([run], band)[0])
            alarms[kind] = a
            if a >= 0:
                ax.plot(
                    [a / hz], [run[a]], "v", color=color, ms=9, mec="black", label=f"first alarm ({kind})"
                )
        if ep.failed:
            ax.axvline(ep.failure_step / hz, color="tab:red", lw=1.5, ls="--", label="failure_step")
        main = alarms.get(_kind_for_examples(view), -1)
        if ep.success:
            verdict = "false alarm" if main >= 0 else "no alarm (correct)"
        elif main < 0:
            verdict = "missed"
        else:
            lead = (ep.failure_step - main) / hz
            verdict = (
                f"alarm {lead:.2f} s before failure" if lead >= 0 else f"alarm {-lead:.2f} s after failure"
            )
        outcome = "success" if ep.success else f"failure: {ep.failure_type}"
        ax.set_title(f"ep {i} ({g}, {ep.task}): {outcome}\n{_kind_for_examples(view)}: {verdict}", fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(f"{view.primary} score")
        ax.grid(alpha=0.3)
        info.append({"episode": i, "group": g, "success": ep.success, "alarm_step": alarms})
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(
        handles.values(), handles.keys(), loc="upper center", ncol=min(5, max(1, len(handles))), fontsize=8
    )
    fig.tight_layout(rect=(0, 0, 1, 0.90))
    _save(fig, path)
    return info


# ------------------------------------------------------------------------------------------- ROC
def roc_points(view: ReportView, method: str, indices: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """ROC curve ``(fpr, tpr)`` of the SAFE-comparable score (running max at T per task; the
    protocol's ``score_at``), or None with a single class."""
    from sklearn.metrics import roc_curve

    eps = [view.evaluation.episodes[i] for i in indices]
    y = np.array([ep.failed for ep in eps], dtype=int)
    if y.min() == y.max():
        return None
    scores = view.method(method).scores
    times = view.times
    s = np.array(
        [score_at(running_max(scores[i]), times[ep.task]) for i, ep in zip(indices, eps, strict=True)]
    )
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr


def draw_roc(view: ReportView, path: Path) -> dict[str, Any]:
    """ROC curves of the SAFE-comparable score per group: top trained predictors and baselines,
    bottom single signals; the legend's ROC-AUC is the evaluation's ``safe.auroc``."""
    plt = _plt()
    groups = view.groups
    fig, axes = plt.subplots(2, len(groups), figsize=(5.4 * len(groups), 9.2), squeeze=False)
    result: dict[str, Any] = {}
    for c, (g, idx) in enumerate(groups):
        for r, signal_row in enumerate((False, True)):
            ax = axes[r][c]
            ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
            curves = []
            for m in view.evaluation.methods:
                if (m.family == "signal") != signal_row:
                    continue
                auc = _nan(view.entry(m.name)[g]["safe"]["auroc"])
                pts = roc_points(view, m.name, idx)
                if pts is None or math.isnan(auc):
                    continue
                curves.append((auc, m.name, *pts))
                result.setdefault(g, {})[m.name] = auc
            curves.sort(key=lambda x: -x[0])
            cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
            for k, (auc, name, fpr, tpr) in enumerate(curves):
                primary = name == view.primary
                ax.plot(fpr, tpr, lw=2.4 if primary else 1.2, color="black" if primary else cmap(k % cmap.N),
                        label=f"{name}  {auc:.3f}", zorder=3 if primary else 2)  # fmt: skip
            what = "single signals" if signal_row else "predictors and baselines"
            ax.set_title(f"{g} tasks: {what} (running max at T per task)")
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
    _save(fig, path)
    return result


# --------------------------------------------------------------------------------------- signals
def draw_signals(view: ReportView, path: Path) -> None:
    """Per-step value of each signal on the test episodes: successes against failures up to their
    ``failure_step`` (axes clipped to the 1st-99th percentile)."""
    plt = _plt()
    episodes = view.evaluation.episodes
    eps = [episodes[i] for _, idx in view.groups for i in idx]
    names = list(episodes.signal_names)
    n = len(names)
    cols = 4
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows), squeeze=False)
    for j, ax in enumerate(axes.flat):
        if j >= n:
            ax.axis("off")
            continue
        ok_vals, fail_vals = [], []
        for ep in eps:
            col = ep.signals[:, j]
            valid = ep.valid[:, j] & np.isfinite(col)
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
            for vals, color, label in ((a, "tab:green", "success"), (b, "tab:red", "failure")):
                if vals.size:
                    ax.hist(
                        np.clip(vals, lo, hi), bins=bins, density=True, alpha=0.5, color=color, label=label
                    )
        ax.set_title(names[j], fontsize=9)
        ax.tick_params(labelsize=7)
        if j == 0:
            ax.legend(fontsize=7)
    fig.suptitle(
        "Per-step signal values on the test episodes: successes vs failures up to failure_step", fontsize=10
    )
    fig.tight_layout()
    _save(fig, path)


# ------------------------------------------------------------------------------ closed loop
def draw_closed_loop(cl: dict[str, Any], path: Path) -> dict[str, Any]:
    """``salus assist``'s results at equal cost, pooled, seen and unseen: top, success with handover
    against help requests per episode (each method's swept-threshold curve, random requests'
    curve as the floor, the calibrated alphas as marked operating points, the person-in-charge
    ceiling and the policy alone); bottom, failures prevented against needless stops."""
    plt = _plt()
    ec = cl.get("equal_cost") or {"handover": {}, "stop": {}}
    groups = [g for g in ("pooled", "seen", "unseen") if g in cl["policy_alone"]]
    fig, axes = plt.subplots(2, len(groups), figsize=(4.6 * len(groups), 8.4), squeeze=False)
    names = [*cl["methods"], *([RANDOM_NAME] if RANDOM_NAME in ec["handover"].get("pooled", {}) else [])]
    colors = {m: f"C{k}" for k, m in enumerate(n for n in names if n != RANDOM_NAME)}
    out: dict[str, Any] = {}
    for j, g in enumerate(groups):
        ax, bx = axes[0, j], axes[1, j]
        alone, ceil = cl["policy_alone"][g], cl["ceiling"][g]
        for m in names:
            is_random = m == RANDOM_NAME
            style = (
                {"color": "0.45", "ls": "--", "lw": 1.3}
                if is_random
                else {"color": colors[m], "lw": 2.2 if m == cl["selected"] else 1.3}
            )
            for kind, axis in (("handover", ax), ("stop", bx)):
                e = ec[kind].get(g, {}).get(m)
                if e is None:
                    continue
                area = e["area"]["value"]
                axis.plot(e["points"]["x"], e["points"]["y"], label=f"{m} (area {area:.2f})", **style)
            if is_random:
                continue
            ops = [cl["methods"][m][f"{a:g}"][g] for a in cl["alphas"]]
            ax.plot(
                [r["help_rate"]["rate"] for r in ops],
                [r["success"]["rate"] for r in ops],
                "o",
                ms=4,
                color=colors[m],
            )
            bx.plot(
                [r["stop"]["needless"]["rate"] for r in ops],
                [r["stop"]["prevented"]["rate"] for r in ops],
                "o",
                ms=4,
                color=colors[m],
            )
            if g == "pooled":
                out[m] = {
                    "help": [r["help_rate"]["rate"] for r in ops],
                    "success": [r["success"]["rate"] for r in ops],
                }
        for m in names:
            e = ec["handover"].get("pooled", {}).get(m)
            if g == "pooled" and e is not None:
                out.setdefault(m, {})["curve"] = {"help": e["points"]["x"], "success": e["points"]["y"]}
        ax.plot(
            [1.0],
            [ceil["rate"]],
            marker="*",
            ms=11,
            color="k",
            ls="",
            label=f"person from the start {ceil['rate']:.0%}",
        )
        ax.plot(
            [0.0],
            [alone["rate"]],
            marker="s",
            ms=6,
            color="k",
            ls="",
            label=f"policy alone {alone['rate']:.0%}",
        )
        ax.axhline(ceil["rate"], color="k", lw=1, ls=":")
        for q in ec.get("fixed_rates", []):
            ax.axvline(q, color="0.8", lw=0.8)
        ax.set_title(f"Handover, {g} ({alone['n']} episodes)", fontsize=10)
        ax.set_xlabel("help requests per episode")
        ax.set_ylabel("task success (a late handover is not a save)")
        bx.plot([0, 1], [0, 1], color="0.85", lw=0.8)
        bx.set_title(f"Stop, {g}", fontsize=10)
        bx.set_xlabel("needless stops (share of would-be successes)")
        bx.set_ylabel("failures prevented (share of event failures)")
        for axis in (ax, bx):
            axis.set_xlim(-0.02, 1.05)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=6.5, loc="lower right")
    fig.suptitle(
        f"Closed loop at equal cost ({cl['n_episodes']} fresh episodes): swept thresholds, dots = calibrated alphas",
        fontsize=10,
    )
    fig.tight_layout()
    _save(fig, path)
    return out
