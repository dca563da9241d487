"""Write a report folder from one evaluation: the figures, the page and the numbers behind them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salus._json import to_json

from .figures import (
    FIGURE_NAMES,
    draw_calibration,
    draw_closed_loop,
    draw_lead_time,
    draw_roc,
    draw_signals,
    draw_timelines,
)
from .glance import at_a_glance, draw_glance
from .page import page_html
from .view import ReportView

if TYPE_CHECKING:
    from salus.predictor.evaluate import Evaluation

__all__ = ["render_report", "headline"]

TITLE = "salus failure-prediction report"


def headline(view: ReportView) -> dict[str, Any]:
    """The primary method's main numbers per test group, copied from the evaluation's report."""
    out: dict[str, Any] = {}
    entry = view.entry(view.primary)
    for g, _ in view.groups:
        res = entry[g]
        out[g] = {
            "n": res["n"],
            "safe_auroc": res["safe"]["auroc"],
            "safe_auroc_ci95": (res.get("ci95") or {}).get("safe"),
            "at_risk_auroc": {k: v["auroc"] for k, v in res["at_risk"].items()},
            "alarms": {
                kind: {
                    k: res["alarms"][kind][str(view.alpha)][k]
                    for k in (
                        "fpr",
                        "fpr_ci95",
                        "event_recall_0.5s",
                        "event_after",
                        "lead_s_median",
                        "timeout_recall",
                        "finite",  # False: the threshold cannot fire, its FPR and recall mean nothing
                        "alpha",
                        "n_cal",
                        "n_cal_needed",
                        "n_successes",
                        "successes_needed",
                    )
                    if k in res["alarms"][kind][str(view.alpha)]
                }
                for kind in view.kinds
            },
        }
    return out


def render_report(
    evaluation: Evaluation,
    out_dir: str | Path,
    *,
    primary: str | None = None,
    alpha: float | None = None,
    title: str = TITLE,
    meta: Mapping[str, Any] | None = None,
    commands: Sequence[str] = (),
    closed_loop: Mapping[str, Any] | None = None,
) -> Path:
    """Draw ``evaluation`` (from ``salus.predictor.evaluate_detailed``) into ``out_dir``: the figures
    (``<name>.png`` for :data:`FIGURE_NAMES`), ``results.json`` and ``results.md`` (the evaluation's
    report and tables, as ``salus evaluate --out`` writes them), ``report.json`` (what the figures
    show; ``at_a_glance``: the page's first block, with ``glance_caught.png`` and
    ``glance_false_alarm.png`` when there is such an example) and ``index.html``. ``primary``: the
    method the figures follow (default: the one the selection rule chose, `selection.json`); ``alpha``: the alarm level they show (one of the evaluated alphas; default 0.1).
    ``closed_loop``: ``salus assist``'s results, drawn as ``closed_loop.png`` with their tables.
    Returns the path of ``index.html``."""
    from salus.predictor.tables import format_markdown

    view = ReportView.of(evaluation, primary, alpha)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "primary_method": view.primary,
        "primary_family": view.method(view.primary).family,
        "alpha": view.alpha,
        "figures": [f"{n}.png" for n in FIGURE_NAMES],
        "headline": headline(view),
        "selection": view.report.get("selection"),
    }
    glance = at_a_glance(view)  # the page's first block
    summary["at_a_glance"] = glance
    draw_glance(view, glance, out)
    summary["calibration_fpr"] = draw_calibration(view, out / "calibration.png")
    summary["lead_time"] = draw_lead_time(view, out / "lead_time.png")
    summary["timeline_examples"] = draw_timelines(view, out / "timelines.png")
    summary["roc_auc"] = draw_roc(view, out / "roc.png")
    draw_signals(view, out / "signals.png")
    figures = list(FIGURE_NAMES)
    extra_md = ""
    if closed_loop is not None:
        from salus.predictor.tables import closed_loop_lines

        summary["closed_loop"] = draw_closed_loop(dict(closed_loop), out / "closed_loop.png")
        summary["figures"].append("closed_loop.png")
        figures.append("closed_loop")
        extra_md = "\n".join(closed_loop_lines(dict(closed_loop)))

    def write_json(name: str, value: Any) -> None:
        (out / name).write_text(
            json.dumps(to_json(value, non_finite="null"), indent=1, allow_nan=False) + "\n"
        )

    write_json("results.json", {**view.report, "commands": list(commands)})
    (out / "results.md").write_text(format_markdown(view.report, commands=commands))
    write_json("report.json", summary)
    index = out / "index.html"
    page = page_html(
        view,
        figures,
        title=title,
        meta=dict(meta or {}),
        commands=commands,
        extra_markdown=extra_md,
        glance=glance,
    )
    index.write_text(page, encoding="utf-8")
    return index
