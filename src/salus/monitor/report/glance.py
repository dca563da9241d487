"""The report's first block, what a person asks first: at the report's alpha, for the primary method
and its functional band, how many event failures the alarm caught before the event, how long before
(median and interquartile range of the lead time), how many successful runs it interrupted, and the
timeouts apart; with one picture of a typical caught failure and one of a false alarm.

The numbers are the evaluation's (``alarm_metrics`` of ``salus.predictor.protocol``: ``lead_s``,
``lead_s_median``, ``lead_s_iqr``, ``fpr``, ``event_after``, ``timeout_recall``), so the block agrees
with the alarm tables; the two examples come from the per-episode first alarms at the evaluation's
fitted threshold (``protocol.alarm_steps``), never refitted.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from salus.predictor.protocol import alarm_steps, running_max

from .view import ReportView

__all__ = ["GLANCE_FIGURES", "at_a_glance", "glance_examples", "draw_glance", "glance_html"]

GLANCE_FIGURES = {"caught": "glance_caught", "false_alarm": "glance_false_alarm"}  # example -> PNG name
_LABEL = {"band": "functional band", "constant": "constant threshold"}


def _kind(view: ReportView) -> str:
    return "band" if "band" in view.kinds else view.kinds[0]


def _count(share: Any, n: int) -> int:
    """A count back from the protocol's share of ``n`` (0 when the share is undefined)."""
    return int(round(float(share) * n)) if n and share is not None and math.isfinite(float(share)) else 0


def _share(k: int, n: int) -> float:
    return k / n if n else math.nan


def glance_examples(view: ReportView) -> dict[str, dict[str, Any] | None]:
    """The two pictured test episodes (seen and unseen pooled), from each episode's first alarm at
    the primary method's threshold: ``caught``, the event failure alarmed at or before its
    ``failure_step`` whose lead time is closest to the median lead over all such failures (ties: seen
    first, then the lower episode index); ``false_alarm``, the successful episode whose first alarm
    is the median of the false alarms' first alarms (ties the same way). None where there is none."""
    kind = _kind(view)
    band = view.band(kind)
    hz = view.control_hz
    scores = view.method(view.primary).scores
    event_types = tuple(view.report["protocol"]["event_types"])
    caught: list[tuple[int, str, int, int, int]] = []  # (group order, group, episode, alarm, failure)
    false: list[tuple[int, int, str, int]] = []  # (alarm, group order, group, episode)
    for order, (g, idx) in enumerate(view.groups):
        steps = alarm_steps([running_max(scores[i]) for i in idx], band)
        for i, a in zip(idx, steps, strict=True):
            ep = view.evaluation.episodes[i]
            if ep.success and a >= 0:
                false.append((int(a), order, g, i))
            elif ep.failed and ep.failure_type in event_types and 0 <= a <= ep.failure_step:
                caught.append((order, g, i, int(a), int(ep.failure_step)))
    out: dict[str, dict[str, Any] | None] = {"caught": None, "false_alarm": None}
    if caught:
        leads = np.array([(f - a) / hz for *_, a, f in caught])
        median = float(np.median(leads))
        k = min(range(len(caught)), key=lambda j: (abs(leads[j] - median), caught[j][0], caught[j][2]))
        _, g, i, a, f = caught[k]
        out["caught"] = {
            "group": g, "episode": i, "task": view.evaluation.episodes[i].task,
            "failure_type": view.evaluation.episodes[i].failure_type, "alarm_step": a,
            "failure_step": f, "lead_s": float(leads[k]), "median_lead_s": median, "n_caught": len(caught),
        }  # fmt: skip
    if false:
        false.sort()
        a, _, g, i = false[(len(false) - 1) // 2]
        out["false_alarm"] = {
            "group": g, "episode": i, "task": view.evaluation.episodes[i].task, "alarm_step": a,
            "alarm_s": a / hz, "length": view.evaluation.episodes[i].length, "n_false_alarms": len(false),
        }  # fmt: skip
    return out


def at_a_glance(view: ReportView) -> dict[str, Any]:
    """The block's numbers per test group (``report.json["at_a_glance"]``), copied from the
    evaluation's alarm metrics of the primary method at the view's alpha; when the threshold cannot
    fire at that alpha, ``can_fire`` is False and no group carries alarm numbers."""
    kind = _kind(view)
    band = view.band(kind)
    can_fire = bool(math.isfinite(band.half_width))
    out: dict[str, Any] = {
        "method": view.primary,
        "family": view.method(view.primary).family,
        "dataset": (view.report.get("dataset") or {}).get("source"),
        "alpha": view.alpha,
        "threshold": kind,
        "control_hz": view.control_hz,
        "can_fire": can_fire,
        "groups": {},
    }
    for g, idx in view.groups:
        a = view.alarms(view.primary, g, kind)
        n_event, n_success, n_timeout = int(a["n_event"]), int(a["n_success"]), int(a["n_timeout"])
        row: dict[str, Any] = {
            "n_episodes": len(idx),
            "n_event": n_event,
            "n_success": n_success,
            "n_timeout": n_timeout,
        }
        if not can_fire:
            row.update({k: a.get(k) for k in ("n_cal", "n_cal_needed", "n_successes", "successes_needed")})
        else:
            n_caught = len(a["lead_s"])  # event failures alarmed at or before failure_step
            n_false = _count(a["fpr"], n_success)
            row.update(
                {
                    "caught": n_caught,
                    "caught_share": _share(n_caught, n_event),
                    "caught_after_event": _count(a["event_after"], n_event),
                    "lead_s_median": a["lead_s_median"],
                    "lead_s_iqr": list(a["lead_s_iqr"]),
                    "false_alarms": n_false,
                    "false_alarm_share": a["fpr"],
                    "false_alarm_ci95": list(a["fpr_ci95"]),
                    "timeouts_alarmed": _count(a["timeout_recall"], n_timeout),
                    "timeouts_alarmed_share": a["timeout_recall"],
                    "timeout_step": a["timeout_step"],
                }
            )
        out["groups"][g] = row
    out["examples"] = glance_examples(view) if can_fire else {"caught": None, "false_alarm": None}
    out["figures"] = [f"{GLANCE_FIGURES[k]}.png" for k, v in out["examples"].items() if v is not None]
    return out


def draw_glance(view: ReportView, glance: dict[str, Any], out_dir: Path) -> list[str]:
    """One PNG per example of ``glance`` (:data:`GLANCE_FIGURES`): the score over time, its running
    max against the threshold, the first alarm and (for the failure) the failure event. Returns the
    names written."""
    from .figures import _plt, _save

    plt = _plt()
    kind = glance["threshold"]
    band = view.band(kind)
    hz = view.control_hz
    written = []
    for which, ex in glance["examples"].items():
        if ex is None:
            continue
        i = int(ex["episode"])
        s = np.asarray(view.method(view.primary).scores[i], dtype=np.float64)
        run = running_max(s)
        t = np.arange(s.size) / hz
        fig, ax = plt.subplots(figsize=(9.4, 3.4))
        ax.plot(t, s, color="tab:blue", lw=0.8, alpha=0.45, label="per-step risk score")
        ax.plot(t, run, color="tab:blue", lw=1.8, label="running max (what is compared)")
        ax.plot(t, band.upper(s.size), color="tab:green", lw=1.4,
                label=f"threshold: {_LABEL.get(kind, kind)}, alpha = {view.alpha:g}")  # fmt: skip
        a = int(ex["alarm_step"])
        ax.axvline(a / hz, color="tab:orange", lw=1.4, label=f"alarm at {a / hz:.2f} s (step {a})")
        ax.plot([a / hz], [run[a]], "v", color="tab:orange", ms=10, mec="black")
        if which == "caught":
            f = int(ex["failure_step"])
            ax.axvline(
                f / hz, color="tab:red", lw=1.6, ls="--", label=f"failure event ({ex['failure_type']})"
            )
            ax.axvspan(a / hz, f / hz, color="tab:orange", alpha=0.12, label=f"lead {ex['lead_s']:.2f} s")
            title = (
                f"Typical caught failure: episode {i} ({ex['group']}, {ex['task']}), alarm {ex['lead_s']:.2f} s "
                f"before the event\n(the median lead of the {ex['n_caught']} caught: {ex['median_lead_s']:.2f} s)"
            )
        else:
            title = (
                f"False alarm: episode {i} ({ex['group']}, {ex['task']}) succeeded, "
                f"alarm at {ex['alarm_s']:.2f} s (one of {ex['n_false_alarms']})"
            )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(f"{view.primary} risk score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the curves
        fig.tight_layout()
        name = GLANCE_FIGURES[which]
        _save(fig, out_dir / f"{name}.png")
        written.append(f"{name}.png")
    return written


def _pct(v: Any) -> str:
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.0%}"


def _lead(row: dict[str, Any]) -> str:
    med, (lo, hi) = row["lead_s_median"], row["lead_s_iqr"]
    if med is None or not math.isfinite(float(med)):
        return "none caught in time"
    return f"median {float(med):.2f} s (interquartile range {float(lo):.2f}-{float(hi):.2f} s)"


def glance_html(glance: dict[str, Any]) -> str:
    """The block's HTML: one sentence of setup, a table (rows: the questions; columns: seen, unseen)
    and the two pictures, or the sentence saying the threshold cannot fire."""
    groups: dict[str, dict[str, Any]] = glance["groups"]
    kind = _LABEL.get(glance["threshold"], glance["threshold"])
    esc = html.escape
    where = f" of {esc(str(glance['dataset']))}" if glance.get("dataset") else ""
    head = (
        f"<p>{esc(glance['method'])} ({esc(glance['family'])}, the primary method) with its {kind} at "
        f"alpha = {glance['alpha']:g}, on the test episodes{where} (seen tasks: trained on; unseen: held out); "
        f"times at the dataset's control rate of {glance['control_hz']:g} Hz. The full tables follow.</p>"
    )
    parts = ["<section id='at-a-glance'><h2>At a glance</h2>", head]
    if not glance["can_fire"]:
        cells = "; ".join(
            f"{g}: {r['n_event']} event failures, {r['n_success']} successes, {r['n_timeout']} timeouts"
            for g, r in groups.items()
        )
        some = next(iter(groups.values()), {})
        why = (
            f" (it has {some.get('n_cal')} calibration successes, needs {some.get('n_cal_needed')})"
            if some.get("n_cal_needed") is not None
            else ""
        )
        parts.append(
            f"<p class='cannot-fire'><b>The {kind} cannot fire at alpha = {glance['alpha']:g}</b>{esc(why)}: "
            f"it never alarms, so there is no count of failures caught, lead time or false alarm to give. "
            f"Test episodes: {esc(cells)}.</p></section>"
        )
        return "".join(parts)

    def row(label: str, fmt: Any) -> str:
        return (
            f"<tr><td>{esc(label)}</td>"
            + "".join(f"<td>{esc(fmt(r))}</td>" for r in groups.values())
            + "</tr>"
        )

    parts.append("<table class='glance'><tr><th></th>")
    parts.append("".join(f"<th>{esc(g)} ({r['n_episodes']} episodes)</th>" for g, r in groups.items()))
    parts.append("</tr>")
    parts += [
        row("Failures caught (alarm before the failure event)",
            lambda r: f"{r['caught']} of {r['n_event']} ({_pct(r['caught_share'])})"),
        row("How long before the event", _lead),
        row("Alarmed only after the event (not caught)",
            lambda r: f"{r['caught_after_event']} of {r['n_event']}"),
        row("Successful runs interrupted (false alarms)",
            lambda r: f"{r['false_alarms']} of {r['n_success']} ({_pct(r['false_alarm_share'])})"),
        row("Timeouts (no failure event; apart, never in lead time)",
            lambda r: f"{r['timeouts_alarmed']} of {r['n_timeout']} alarmed by step {r['timeout_step']}"),
    ]  # fmt: skip
    parts.append("</table>")
    ex = glance["examples"]
    if ex["caught"] is not None:
        parts.append(
            f"<figure><img src='{GLANCE_FIGURES['caught']}.png' alt='a typical caught failure'><figcaption>"
            "A typical caught failure: the test event failure whose lead time is closest to the median over "
            "all caught ones (seen and unseen). Risk score over time, its running max against the threshold, "
            "the alarm (orange) and the failure event (red dashed).</figcaption></figure>"
        )
    else:
        parts.append("<p class='no-example'>No test event failure was caught before its event.</p>")
    if ex["false_alarm"] is not None:
        parts.append(
            f"<figure><img src='{GLANCE_FIGURES['false_alarm']}.png' alt='a false alarm'><figcaption>"
            "A false alarm: a successful test episode whose running score crossed the threshold (the median "
            "alarm time among the false alarms).</figcaption></figure>"
        )
    else:
        parts.append(
            "<p class='no-example'>No false alarm: no successful test episode's score crossed the "
            "threshold.</p>"
        )
    parts.append("</section>")
    return "".join(parts)
