"""The report's HTML page: the evaluation's tables (``salus.predictor.tables``, the same markdown
``salus evaluate`` prints, rendered with markdown-it) around the figures. Layout only."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from salus.predictor.tables import format_markdown

from .glance import glance_html
from .view import ReportView

__all__ = ["page_html", "CAPTIONS"]

CAPTIONS: dict[str, tuple[str, str]] = {
    "closed_loop": (
        "Closed loop at equal cost: what an alarm buys",
        "Fresh episodes (salus assist), pooled, seen and unseen tasks. Top: task success when the "
        "scripted expert takes over at the first alarm, against help requests per episode; each curve "
        "sweeps a constant threshold on the method's running max score over the group's episodes "
        "(area: mean success over help rates 0 to 1), dots: the calibrated alphas (the operating "
        "points); dashed grey: random requests swept over the same rates in the same group (the "
        "floor); star: the person in charge from the start (the ceiling); square: the policy alone. "
        "A handover after the failure event counts as a request that saved nothing. Bottom: stopping "
        "at the alarm, event failures prevented against would-be successes stopped.",
    ),
    "calibration": (
        "Calibration",
        "Realised false-alarm rate on test successes against alpha, seen and unseen tasks, for each "
        "threshold kind (one-sided functional band; constant split-conformal threshold), both calibrated "
        "on the calib successes. Black: the primary method with its 95% Wilson interval; colours: the "
        "other trained predictors; grey: baselines. On the dashed line the realised FPR equals alpha.",
    ),
    "lead_time": (
        "Lead time of event failures",
        "For drop, miss and collision failures alarmed at or before failure_step: seconds from the first "
        "alarm to failure_step (the protocol's lead_s). Alarms after the event and timeouts are not in it; "
        "the legend gives how many were caught in time and the share alarmed only after the event.",
    ),
    "timelines": (
        "Score curves",
        "Test episodes of the primary method: per-step score (light), its running maximum (the monitored "
        "score), the fitted functional band's centre (dotted) and upper edge (green) and the constant "
        "threshold (orange dashed) at the chosen alpha, failure_step (red dashed) and each threshold's "
        "first alarm (triangles). Thresholds are the evaluation's own, not refitted.",
    ),
    "roc": (
        "ROC curves (SAFE-comparable)",
        "ROC of the running maximum at T (the shortest rollout of any task, SAFE's rule with one T), per test "
        "group. Top: trained predictors and baselines; bottom: each signal alone. Legend: the evaluation's "
        "ROC-AUC; the thick black curve is the primary method.",
    ),
    "signals": (
        "Signal distributions",
        "Per-step value of each signal on the test episodes: successes (green) against failures up to "
        "failure_step (red); axes clipped to the 1st-99th percentile.",
    ),
}

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1250px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.primary td { font-weight: bold; background: #eef6ff; }
table.meta td, table.glance td { text-align: left; }
section#at-a-glance { background: #fafcff; border: 1px solid #dde8f5; padding: 0 1em 0.5em; }
section#at-a-glance h2 { margin-top: 0.6em; } p.cannot-fire { color: #a33; }
table.glance { font-size: 0.95em; } details { margin: 0.8em 0; } summary { cursor: pointer; font-weight: bold; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""


def _markdown(text: str) -> str:
    from markdown_it import MarkdownIt

    return str(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))


def _sections(markdown: str) -> tuple[str, list[tuple[str, str]]]:
    """``(preamble, [(heading, body)])`` of a markdown text split at its ``## `` headings."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in markdown.splitlines():
        if line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif line.startswith("# "):
            continue
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return "\n".join(preamble), [(h, "\n".join(b)) for h, b in sections]


def _paragraphs(text: str) -> str:
    """Each line its own paragraph (the tables' setup lines are one sentence group each), code
    fences left whole."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        out.append(line)
        if not fenced and line.strip():
            out.append("")
    return "\n".join(out)


def _mark_primary(table_html: str, primary: str) -> str:
    cell = f"<tr>\n<td>{html.escape(primary)}</td>"
    return table_html.replace(cell, f"<tr class='primary'>\n<td>{html.escape(primary)}</td>")


def _figure(name: str) -> str:
    title, caption = CAPTIONS[name]
    return (
        f"<h2>{html.escape(title)}</h2><figure><img src='{name}.png' alt='{html.escape(title)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


_ALPHA = re.compile(r"alpha = ([0-9.eE+-]+)\s*$")


def page_html(
    view: ReportView,
    figures: Sequence[str],
    *,
    title: str,
    meta: Mapping[str, Any],
    commands: Sequence[str] = (),
    extra_markdown: str = "",
    glance: Mapping[str, Any] | None = None,
) -> str:
    """The whole page. ``figures`` are the names of the PNGs written next to it (``<name>.png``);
    ``closed_loop`` among them is placed with ``extra_markdown`` (its tables) at the end. ``glance``
    (``glance.at_a_glance``) is the first block, before every table."""
    report = {**view.report, "notes": []}
    preamble, sections = _sections(format_markdown(report, title="", commands=commands))
    meta_rows = {
        **meta,
        "primary method": f"{view.primary} ({view.method(view.primary).family})",
        "alpha shown": f"{view.alpha:g} (tables below give every alpha: {', '.join(f'{a:g}' for a in view.alphas)})",
    }
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        glance_html(dict(glance)) if glance is not None else "",
        "<table class='meta'>"
        + "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
            for k, v in meta_rows.items()
        )
        + "</table>",
        _markdown(_paragraphs(preamble)),
    ]
    figures_html = "".join(_figure(n) for n in figures if n != "closed_loop")
    placed = False
    for heading, body in sections:
        body_html = _mark_primary(_markdown(body), view.primary)
        if heading.startswith("Ranking") and not placed:
            parts.append(figures_html)
            placed = True
        m = _ALPHA.search(heading)
        if heading.startswith("Alarms") and m and abs(float(m.group(1)) - view.alpha) > 1e-12:
            parts.append(f"<details><summary>{html.escape(heading)}</summary>{body_html}</details>")
        else:
            parts.append(f"<h2>{html.escape(heading)}</h2>{body_html}")
    if not placed:
        parts.append(figures_html)
    if "closed_loop" in figures:
        parts.append(_figure("closed_loop"))
        _, extra = _sections(extra_markdown)
        for heading, body in extra:
            parts.append(f"<h2>{html.escape(heading)}</h2>{_markdown(body)}")
    notes = view.report.get("notes") or []
    if notes:
        parts.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(str(n))}</li>" for n in notes) + "</ul>"
        )
    parts.append("</body></html>")
    return "".join(parts)
