"""Markdown tables of evaluation reports (``salus evaluate``) and of the multi-seed benchmark.

Formatting only: every number comes from ``salus.predictor.evaluate`` / ``protocol``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .protocol import lead_names

__all__ = [
    "format_markdown",
    "transfer_lines",
    "format_benchmark",
    "closed_loop_lines",
    "fmt",
    "cannot_fire_text",
    "band_state_lines",
]


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _lead_label(name: str) -> str:
    """``"0.25-0.75s"`` -> ``"0.25-0.75 s"``; a name in steps (older reports) -> ``"6-15 steps"``."""
    return f"{name[:-1]} s" if name.endswith("s") else f"{name} steps"


def _ci(ci: Sequence[float] | None, digits: int = 2) -> str:
    if not ci or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return ""
    return f" ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})"


def _delta(d: dict[str, Any]) -> str:
    lo, hi = d["ci95"]
    ci = "" if lo is None or math.isnan(lo) else f" ({lo:+.3f}, {hi:+.3f})"
    mark = " **win**" if lo is not None and not math.isnan(lo) and lo > 0 else ""
    return f"{d['delta']:+.3f}{ci}{mark}"


def _comparison_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Our model minus each comparator on the headline metrics, one row per comparator."""
    lines = [
        "| comparator | seen SAFE AUROC | seen at-risk 2 s | unseen SAFE AUROC | unseen at-risk 2 s |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        cells = [
            _delta(row[f"{g}/{m}"]) if f"{g}/{m}" in row else "excluded (leaks)"
            for g in ("seen", "unseen")
            for m in ("safe", "at_risk_2s")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _setup_lines(report: dict[str, Any]) -> list[str]:
    proto, split, ds = report["protocol"], report["split"], report["dataset"]
    T = ", ".join(f"{k} {v}" for k, v in proto["T"].items())
    return [
        f"Dataset `{ds['source']}`: {ds['n_episodes']} episodes, tasks {', '.join(ds['tasks'])} "
        f"(fingerprint `{ds['fingerprint']}`).",
        *_collect_lines(ds.get("info") or {}),
        f"Split (episodes): train {split['train']}, val {split['val']}, calib {split['calib']} "
        f"({split['calib_successes']} successes calibrate the thresholds), test seen {split['test_seen']}, "
        f"test unseen {split['test_unseen']} (held-out tasks: {', '.join(split['unseen_tasks']) or 'none'}).",
        *_statistics_lines(report.get("signal_statistics")),
        f"Protocol (`salus.predictor.protocol`): score = running max of the per-step score; T = the "
        f"shortest rollout of any task and outcome (SAFE's rule, one T for all tasks): {T} steps; at-risk ROC-AUC at "
        f"{', '.join(f'{t:g} s' for t in proto['at_risk_s'])} over episodes still running with no failure "
        f"event; time-matched ROC-AUC by lead {', '.join(_lead_label(n) for n in lead_names(proto))} "
        f"before drop/miss/collision against same-task successes at the same elapsed time; "
        f"thresholds: one-sided functional conformal band and constant split-conformal threshold; "
        f"timeouts counted apart (recall by step {proto['timeout_step']}, the 90th percentile of "
        f"calibration success length); control rate {proto['control_hz']:g} Hz.",
        "",
    ]


def _statistics_lines(stats: dict[str, Any] | None) -> list[str]:
    """What the signals' fitted statistics saw (``evaluate.signal_statistics``), and the leaks."""
    if not stats:
        return []
    refit = stats.get("ood_refit")
    line = (
        f"ood_distance refitted on this split's {refit['rule']} ({refit['episodes']} episodes of "
        f"{', '.join(refit['tasks'])})"
        if refit
        else "ood_distance as collected"
    )
    for name, why in (stats.get("leaks") or {}).items():
        line += f"; **{name} leaks**: {why}; excluded from the unseen comparisons"
    return [line + "."]


def _collect_lines(info: dict[str, Any]) -> list[str]:
    """How the dataset was collected (its ``collect`` attributes), when it says."""
    c = info.get("collect")
    if not isinstance(c, dict):
        return []
    keep = {k: c[k] for k in ("policy", "tasks", "episodes", "seed", "max_steps") if k in c}
    mix = c.get("mix")
    n_mix = f", perturbation mix of {len(mix)} conditions" if isinstance(mix, list) else ""
    return [f"Collected with {', '.join(f'{k}={v}' for k, v in keep.items())}{n_mix}."]


def _selection_lines(sel: dict[str, Any]) -> list[str]:
    if not sel or not sel.get("val_auroc_T"):
        return []
    if sel.get("rule") == "cross-validation":
        vals = ", ".join(f"{k} {fmt(v)}" for k, v in sel["scores"].items())
        return [
            f"Our predictor, chosen by {sel.get('folds', '')}-fold cross-validation over the training and "
            f"validation episodes (ROC-AUC at T of the pooled out-of-fold scores, {sel['n_episodes']} "
            f"episodes; the validation set alone is too small to rank models): **{sel['selected']}** ({vals}).",
            "",
        ]
    vals = ", ".join(f"{k} {fmt(v)}" for k, v in sel["val_auroc_T"].items())
    n = sel.get("n_val", sel.get("n_episodes"))
    return [
        f"Our predictor, chosen on validation ROC-AUC at T ({n} val episodes): **{sel['selected']}** ({vals}).",
        "",
    ]


def format_markdown(
    report: dict[str, Any], *, title: str = "Failure prediction results", commands: Sequence[str] = ()
) -> str:
    """One evaluation (one split) as markdown."""
    lines = [f"# {title}", ""]
    if commands:
        lines += ["Reproduce:", "", "```bash", *commands, "```", ""]
    lines += _setup_lines(report) + _selection_lines(report.get("selection", {}))
    comp = report.get("comparisons") or {}
    if comp.get("rows"):
        lines += [
            f"## {comp['ours']} against each fixed comparator",
            "",
            "Differences with 95% paired bootstrap intervals over episodes; **win** = interval above 0.",
            "",
            *_comparison_table(comp["rows"]),
        ]
    lines += _ranking_table(report["methods"])
    lines += transfer_lines(report["methods"])
    lines += _view_tables(report["methods"])
    lines += _alarm_tables(report["methods"], report["protocol"])
    if report.get("notes"):
        lines += ["", "Notes:", *[f"- {n}" for n in report["notes"]]]
    return "\n".join(lines) + "\n"


TRANSFER_COLUMNS = (("seen", "safe"), ("seen", "at_risk_2s"), ("unseen", "safe"), ("unseen", "at_risk_2s"))


def transfer_lines(methods: list[dict[str, Any]], agg: dict[str, Any] | None = None) -> list[str]:
    """The cross-policy check: each transferred model (``transfer:LABEL:MODEL``, trained on another
    policy's episodes) beside the same model trained on this policy, on the same test episodes.
    ``methods``: one evaluation's method entries; with ``agg`` (the seed aggregate), its rows."""
    from .evaluate import metric_value

    moved = [m["name"] for m in (agg["methods"] if agg else methods) if m["name"].startswith("transfer:")]
    if not moved:
        return []
    rows = {m["name"]: m for m in (agg["methods"] if agg else methods)}
    lines = [
        "## Cross-policy check",
        "",
        "Each signal model trained on another policy's episodes (`transfer:LABEL:MODEL`, `salus evaluate "
        "--transfer-from`) scored on this policy's test episodes, beside the same model trained on this "
        "policy's own episodes"
        + (
            " (mean over seeds, 95% interval of the mean)."
            if agg
            else " (95% bootstrap interval over episodes)."
        ),
        "",
        "| model | trained on | seen SAFE | seen at-risk 2 s | unseen SAFE | unseen at-risk 2 s |",
        "|---|---|---|---|---|---|",
    ]
    for name in moved:
        _, label, model = name.split(":", 2)
        for who, key in (("this policy", model), (label, name)):
            row = rows.get(key)
            if row is None:
                continue
            if agg:
                cells = [_agg_ci(row, f"{g}/{metric}") for g, metric in TRANSFER_COLUMNS]
            else:
                ci = {g: row[g].get("ci95") or {} for g in ("seen", "unseen")}
                cells = [
                    fmt(metric_value(row[g], metric)) + _ci(ci[g].get(metric))
                    for g, metric in TRANSFER_COLUMNS
                ]
            lines.append(f"| {model} | {who} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _ranking_table(methods: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Ranking metrics",
        "",
        "SAFE = ROC-AUC at T (one T for all tasks, pooled), at-risk = ROC-AUC at 1/2/3 s elapsed, lead = "
        "time-matched ROC-AUC in each of the protocol's lead bins (by default 0-0.25 / 0.25-0.75 / 0.75-2 s) "
        "before an event failure; each with its 95% "
        "bootstrap interval over episodes (1000 resamples; 200 for lead).",
        "",
        "| method | family | seen SAFE | seen AP | seen at-risk 1/2/3 s | seen lead | unseen SAFE | unseen at-risk 1/2/3 s | unseen lead |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        cells = [m["name"], m["family"]]
        for g in ("seen", "unseen"):
            r = m[g]
            cells.append(fmt(r["safe"]["auroc"]) + _ci((r.get("ci95") or {}).get("safe")))
            if g == "seen":
                cells.append(fmt(r["safe"]["ap"]))
            ci = r.get("ci95") or {}
            cells.append(
                " / ".join(fmt(v["auroc"], 2) + _ci(ci.get(f"at_risk_{k}")) for k, v in r["at_risk"].items())
            )
            cells.append(" / ".join(fmt(v["auroc"], 2) + _ci(v.get("ci95")) for v in r["lead"].values()))
        lines.append("| " + " | ".join(cells) + " |")
    s0, u0 = methods[0]["seen"], methods[0]["unseen"]
    lines += [
        "",
        f"Seen test: {s0['safe']['n']} episodes ({s0['safe']['n_failed']} failed); unseen: "
        f"{u0['safe']['n']} ({u0['safe']['n_failed']} failed).",
        "",
        "Per failure type (ROC-AUC at T of that type against successes, seen):",
        "",
        "| method | " + " | ".join(s0["types"]) + " |",
        "|---|" + "---|" * len(s0["types"]),
    ]
    for m in methods:
        lines.append(
            f"| {m['name']} | " + " | ".join(fmt(v["auroc"]) for v in m["seen"]["types"].values()) + " |"
        )
    return [*lines, ""]


def _cannot_fire(method: dict[str, Any], kind: str, alpha: float) -> bool:
    """The method's threshold of ``kind`` at ``alpha`` is infinite (too few calibration successes)."""
    entry = method.get("seen", {}).get("alarms", {}).get(kind, {}).get(str(float(alpha)), {})
    return entry.get("finite") is False


def cannot_fire_text(entry: dict[str, Any]) -> str:
    """Why an alarm threshold (one ``alarm_metrics`` entry with ``finite`` False) can never fire,
    and what it needs; its FPR and recall are not measurements."""
    have = entry.get("n_successes", entry.get("n_cal"))
    need = entry.get("successes_needed", "?")
    return (
        f"infinite, {have} calibration successes ({entry.get('n_cal')} scores) where alpha "
        f"{float(entry['alpha']):g} needs >= {need} ({entry.get('n_cal_needed', '?')} scores); it never "
        "alarms, so FPR and recall are not measured"
    )


def band_state_lines(method: dict[str, Any]) -> list[str]:
    """Per threshold kind and alpha of one method's evaluation entry: whether it can fire and what
    its calibration had and needs (the same for every method of an evaluation)."""
    out = []
    for kind, by in method["seen"]["alarms"].items():
        label = "functional band" if kind == "band" else "constant threshold"
        for a, e in sorted(by.items(), key=lambda kv: float(kv[0])):
            if e.get("finite", True):
                state = f"can fire ({e.get('n_successes', e.get('n_cal'))} calibration successes, >= {e.get('successes_needed', '?')} needed)"
            else:
                state = f"CANNOT FIRE, {cannot_fire_text(e)}"
            out.append(f"{label} at alpha {float(a):g}: {state}")
    return out


def _alarm_tables(methods: list[dict[str, Any]], proto: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if methods and methods[0].get("seen", {}).get("alarms"):
        lines += [
            "## Alarm thresholds: can each fire?",
            "",
            "Fitted on the calibration successes (the count is the same for every method); a threshold "
            "that cannot fire is infinite and its tables below say so instead of giving FPR and recall.",
            "",
            *[f"- {line}" for line in band_state_lines(methods[0])],
            "",
        ]
    for kind in proto["thresholds"]:
        label = "one-sided functional band" if kind == "band" else "constant threshold"
        for a in proto["alphas"]:
            lines += [f"## Alarms: {label}, alpha = {a:g}", ""]
            idle = next(
                (m["seen"]["alarms"][kind][str(float(a))] for m in methods if _cannot_fire(m, kind, a)), None
            )
            if idle is not None:
                lines += [
                    f"**This threshold cannot fire** at alpha {a:g}: {cannot_fire_text(idle)}. Calibrate "
                    "on more successes or use a larger alpha.",
                    "",
                ]
            lines += [
                "| method | seen FPR (95% CI) | seen event recall >=0 / 0.5 / 1 s before | seen after event | "
                "seen lead median (IQR) s | seen timeouts | unseen FPR | unseen event recall >=0.5 s |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for m in methods:
                if _cannot_fire(m, kind, a):  # an infinite threshold measures nothing
                    lines.append(f"| {m['name']} |" + " cannot fire |" * 7)
                    continue
                s, u = m["seen"]["alarms"][kind][str(float(a))], m["unseen"]["alarms"][kind][str(float(a))]
                rec = " / ".join(fmt(s[f"event_recall_{lead:g}s"], 2) for lead in proto["recall_leads_s"])
                iqr = s["lead_s_iqr"]
                lines.append(
                    f"| {m['name']} | {fmt(s['fpr'], 2)}{_ci(s['fpr_ci95'])} | {rec} | {fmt(s['event_after'], 2)} | "
                    f"{fmt(s['lead_s_median'], 2)} ({fmt(iqr[0], 2)}-{fmt(iqr[1], 2)}) | {fmt(s['timeout_recall'], 2)} | "
                    f"{fmt(u['fpr'], 2)}{_ci(u['fpr_ci95'])} | {fmt(u['event_recall_0.5s'], 2)} |"
                )
            lines.append("")
    return lines


VIEW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("safe_unperturbed", "SAFE unperturbed"),
    ("at_risk_2s_unperturbed", "at-risk 2 s unperturbed"),
    ("at_risk_2s_event", "at-risk 2 s events"),
    ("at_risk_2s_timeout", "at-risk 2 s timeouts"),
    ("safe_prediction", "SAFE prediction (T-1)"),
)


def _event_before_text(views: dict[str, Any]) -> str:
    e = views.get("event_before_T") or {}
    if not e.get("n"):
        return "n/a"
    lo, hi = e["ci95"]
    return f"{100 * e['share']:.0f}% ({e['k']}/{e['n']}; {100 * lo:.0f}-{100 * hi:.0f})"


def _view_tables(methods: list[dict[str, Any]]) -> list[str]:
    """The confound-free views of one evaluation (``views`` of ``protocol.method_metrics``)."""
    if not methods or "views" not in methods[0].get("seen", {}):
        return []
    lines = [
        "## Confound-free views",
        "",
        "Perturbations are visible from step 0 and change the failure rate, so a score that only "
        "recognises the condition ranks well on the pooled metrics: the views below measure on "
        "unperturbed episodes only and within each perturbation condition, and the row "
        "`reference:condition` (a logistic regression on task one-hot and perturbation strengths, "
        "fitted on training episodes, one constant score per episode) is what the condition alone "
        "gives. At-risk positives are split into those that end in an event (drop, miss, collision) "
        "and in a timeout, each against the same negatives. SAFE prediction = ROC-AUC of the running "
        "score after T-1 steps on the episodes with no event before T (SAFE at T also credits "
        "failures already detected). 95% bootstrap intervals over episodes.",
        "",
        "| method | "
        + " | ".join(f"{g} {label}" for g in ("seen", "unseen") for _, label in VIEW_COLUMNS)
        + " |",
        "|---|" + "---|" * (2 * len(VIEW_COLUMNS)),
    ]
    for m in methods:
        cells = [m["name"]]
        for g in ("seen", "unseen"):
            ci = m[g].get("ci95") or {}
            views = m[g]["views"]
            for key, _ in VIEW_COLUMNS:
                v = views.get(key, {})
                cells.append(fmt(v.get("auroc"), 2) + _ci(ci.get(key)))
        lines.append("| " + " | ".join(cells) + " |")
    s0, u0 = methods[0]["seen"]["views"], methods[0]["unseen"]["views"]
    lines += [
        "",
        f"Failures whose event came before T (SAFE at T may detect them rather than predict): seen "
        f"{_event_before_text(s0)}, unseen {_event_before_text(u0)}. Unperturbed test episodes: seen "
        f"{s0['safe_unperturbed']['n']} ({s0['safe_unperturbed']['n_failed']} failed), unseen "
        f"{u0['safe_unperturbed']['n']} ({u0['safe_unperturbed']['n_failed']} failed).",
        "",
    ]
    conds = [c for c in s0.get("conditions", {}) if c != "none"]
    if conds:
        lines += [
            "Seen SAFE ROC-AUC at T / at-risk ROC-AUC at 2 s within each perturbation condition "
            "(header: episodes, failed):",
            "",
            "| method | unperturbed | "
            + " | ".join(f"{c} ({s0[f'safe@{c}']['n']}, {s0[f'safe@{c}']['n_failed']})" for c in conds)
            + " |",
            "|---|---|" + "---|" * len(conds),
        ]
        for m in methods:
            views, ci = m["seen"]["views"], m["seen"].get("ci95") or {}
            cells = [m["name"]]
            for suffix in ("_unperturbed", *(f"@{c}" for c in conds)):
                cells.append(
                    " / ".join(
                        fmt(views.get(f"{k}{suffix}", {}).get("auroc"), 2) + _ci(ci.get(f"{k}{suffix}"))
                        for k in ("safe", "at_risk_2s")
                    )
                )
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _benchmark_view_lines(agg: dict[str, Any]) -> list[str]:
    """The confound-free views over seeds: mean with the interval of the mean."""
    present = [(k, label) for k, label in VIEW_COLUMNS if agg["methods"] and f"seen/{k}" in agg["methods"][0]]
    if not present:
        return []
    lines = [
        "",
        "## Confound-free views (mean over seeds, 95% interval of the mean)",
        "",
        "Unperturbed episodes only; at-risk positives ending in an event / in a timeout against the same "
        "negatives; SAFE prediction = running score after T-1 steps on episodes with no event before T "
        "(see the per-seed tables for the conditions and `reference:condition`). Intervals: the wider of "
        "the shared-resample bootstrap and the seed interval.",
        "",
        "| method | " + " | ".join(f"{g} {label}" for g in ("seen", "unseen") for _, label in present) + " |",
        "|---|" + "---|" * (2 * len(present)),
    ]
    for row in agg["methods"]:
        cells = [row["name"]] + [_agg_ci(row, f"{g}/{k}", 2) for g in ("seen", "unseen") for k, _ in present]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _instant_lines(agg: dict[str, Any]) -> list[str]:
    """The running-max ablation: at-risk ROC-AUC of the protocol's running max beside the
    instantaneous per-step score at the same step (mean [min, max] over seeds)."""
    first = agg["methods"][0] if agg["methods"] else {}
    times = [k.split("_")[-1] for k in first if k.startswith("seen/at_risk_instant_")]
    if not times:
        return []
    lines = [
        "",
        "## Running max against the instantaneous score (at-risk ROC-AUC, mean [min, max] over seeds)",
        "",
        "Every headline metric uses the running max of the per-step score (a monitor that has alarmed "
        "stays alarmed); the instantaneous score at the same step shows what an early spike of a noisy "
        "score costs under it.",
        "",
        "| method | "
        + " | ".join(f"{g} {t} max / instant" for g in ("seen", "unseen") for t in times)
        + " |",
        "|---|" + "---|" * (2 * len(times)),
    ]
    for row in agg["methods"]:
        cells = [row["name"]] + [
            f"{_agg(row, f'{g}/at_risk_{t}', 2)} / {_agg(row, f'{g}/at_risk_instant_{t}', 2)}"
            for g in ("seen", "unseen")
            for t in times
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# The methods shown in every row of the data-efficiency curve (when evaluated), beside our pick.
EFFICIENCY_METHODS = (
    "salus-risk",
    "salus-trees",
    "safe-lstm",
    "embedding:knn_cosine",
    "snapshot:gbt",
    "snapshot:logreg",
    "reference:condition",
)


def efficiency_lines(rows: Sequence[tuple[int, dict[str, Any]]]) -> list[str]:
    """The data-efficiency curve: per number of training episodes (``rows``: (n, that size's
    evaluation report), the last one every training episode), our pick's seen at-risk 2 s and
    SAFE ROC-AUC, its difference to the comparator it trails most (paired bootstrap interval; the
    goal: never below by more than the interval) and each shown method's numbers."""
    if not rows:
        return []
    shown = [m for m in EFFICIENCY_METHODS if any(m in {x["name"] for x in r["methods"]} for _, r in rows)]
    lines = [
        "",
        "## Data efficiency (split seed of the first evaluation, seen test episodes)",
        "",
        "Every model retrained on a nested subsample of the training episodes (whole seeds, outcomes in "
        "proportion; `salus train --max-train-episodes N`); validation, calibration and test episodes "
        "unchanged, and every fitted baseline fitted on the same subsample. Cells: at-risk 2 s / SAFE "
        "ROC-AUC. Worst gap: our pick minus the fixed comparator it trails most on at-risk 2 s, with the "
        "paired bootstrap interval (the comparator is named; chosen in our disfavour).",
        "",
        "| training episodes | our pick | ours at-risk 2 s (95%) / SAFE | worst gap (95%) | "
        + " | ".join(shown)
        + " |",
        "|---|---|---|---|" + "---|" * len(shown),
    ]
    for n, rep in rows:
        by = {m["name"]: m for m in rep["methods"]}
        ours = (rep.get("selection") or {}).get("selected")

        def cell(name: str, by: dict[str, Any] = by) -> str:
            m = by.get(name)
            if m is None:
                return "n/a"
            seen = m["seen"]
            return f"{fmt(seen['at_risk']['2s']['auroc'], 2)} / {fmt(seen['safe']['auroc'], 2)}"

        worst = "n/a"
        comp = (rep.get("comparisons") or {}).get("rows") or {}
        gaps = [(v["seen/at_risk_2s"]["delta"], k, v["seen/at_risk_2s"]["ci95"]) for k, v in comp.items()]
        gaps = [g for g in gaps if isinstance(g[0], float) and math.isfinite(g[0])]
        if gaps:
            d, name, ci = min(gaps)
            worst = f"{d:+.3f}{_ci(ci, 3)} vs {name}"
        mine = "n/a"
        if ours in by:
            seen = by[ours]["seen"]
            ci = (seen.get("ci95") or {}).get("at_risk_2s")
            mine = f"{fmt(seen['at_risk']['2s']['auroc'], 2)}{_ci(ci)} / {fmt(seen['safe']['auroc'], 2)}"
        lines.append(
            f"| {n} | {ours or 'n/a'} | {mine} | {worst} | " + " | ".join(cell(m) for m in shown) + " |"
        )
    return lines


# Families of the comparators that "best baseline" ranges over in the share of the gap closed.
BASELINE_FAMILIES: tuple[str, ...] = ("safe", "baseline", "embedding", "snapshot", "reference", "signal")


def ceiling_lines(
    ceiling: dict[str, Any], paired: Sequence[dict[str, Any]], ours: Sequence[str]
) -> list[str]:
    """The Monte-Carlo ceiling (``salus ceiling``) of each at-risk view beside the best baseline
    and every ``salus`` model (``ours``), all on the same episodes
    (:func:`salus.predictor.ceiling.paired_gap`), with the share of the gap closed."""
    lines = [
        "",
        "## Monte-Carlo ceiling and share of the gap closed",
        "",
        f"Ceiling: replay each sampled at-risk episode's recorded actions to t, let the same policy "
        f"continue K = {ceiling.get('k')} times with fresh policy and world noise, P(fail) = the share of "
        "failed continuations; its ROC-AUC against the recorded outcome (episodes whose push was still to "
        "come are left out). T: the step of the SAFE-prediction view (T - 2), ranked by that view. Sample: "
        f"{(ceiling.get('sample') or {}).get('rule', 'see ceiling.json')}; pool: "
        f"{(ceiling.get('sample') or {}).get('pool', 'every episode')}. Every number of a row is on the same "
        "rows: each split seed's test episodes of that group that the ceiling continued, with that seed's "
        "models (an episode tested in two seeds counts twice). Best baseline: the fixed comparator with "
        "the highest mean over seeds on the whole test view of that group and time (the ranking of the "
        "tables above), scored on the same rows; the best of many comparators picked on a few dozen rows "
        "would be biased upwards. Share = (method - best baseline) / "
        "(ceiling - best baseline); the goal is >= 0.5. In brackets: the method minus the best baseline, "
        "95% bootstrap over episodes. A row with few failed or few succeeded episodes has no usable "
        "ROC-AUC, whatever its interval says.",
        "",
        "| at-risk | group | rows: episodes (failed / succeeded rows) | ceiling (95%) | best baseline | "
        + " | ".join(ours)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(ours),
    ]
    for r in paired:
        cells = [
            "T (prediction)" if r["time"] == "T" else r["time"],
            r["group"],
            f"{r['rows']}: {r['episodes']} ({r['rows_failed']} / {r['rows'] - r['rows_failed']})",
            f"{fmt(r['ceiling'], 2)}{_ci(r['ceiling_ci95'])}",
            f"{r['best_baseline']} {fmt(r['best_baseline_auroc'], 2)}",
        ]
        for name in ours:
            ci = (r.get("minus_best_ci95") or {}).get(name) or [math.nan, math.nan]
            cells.append(
                f"{fmt(r['auroc'].get(name, math.nan), 2)} (share {fmt(r['share'].get(name, math.nan), 2)}; "
                f"{ci[0]:+.2f} to {ci[1]:+.2f})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _agg_ci(row: dict[str, Any], key: str, digits: int = 3) -> str:
    """Mean over seeds with its interval (the wider of the shared-resample bootstrap and the seed
    interval, ``aggregate_seeds``) when it has one, else mean [min, max]."""
    v = row.get(key)
    if not v or not v.get("ci95_of_mean"):
        return _agg(row, key, digits)
    return f"{fmt(v['mean'], digits)}{_ci(v['ci95_of_mean'], digits)}"


def _agg(row: dict[str, Any], key: str, digits: int = 3) -> str:
    v = row.get(key)
    if not v:
        return "n/a"
    spread = "" if math.isnan(v["min"]) else f" [{v['min']:.{digits}f}, {v['max']:.{digits}f}]"
    return f"{fmt(v['mean'], digits)}{spread}"


GOAL_MARGIN = 0.05  # the predictor goal: +0.05 ROC-AUC over every comparator, interval above 0
GOAL_RECALL, GOAL_FPR = 0.60, 0.12  # event failures caught >= 0.5 s early at alpha 0.1, seen FPR


def _pick_label(agg: dict[str, Any]) -> str:
    """How the tables name our model: the model every seed picked, else "the validation pick"."""
    picks = agg["selected"]
    return str(picks[0]) if len(set(picks)) == 1 else "the validation pick"


def _goal_lines(agg: dict[str, Any], reports: Sequence[dict[str, Any]] = ()) -> list[str]:
    """The predictor goals, each met or missed by how much (numbers from ``agg`` only). When the
    seeds pick different models, "ours" is each seed's own pick (as in the headline)."""
    picks: list[str | None] = list(agg["selected"])
    if not picks or any(p is None for p in picks) or not agg["comparisons"]:
        return []
    ours = _pick_label(agg)
    rows = {m["name"]: m for m in agg["methods"]}
    lines = ["## Goals", "", "| goal | result | met |", "|---|---|---|"]
    keys = ("seen/safe", "seen/at_risk_2s", "unseen/safe", "unseen/at_risk_2s")
    for key in keys:
        deltas = {n: r[key] for n, r in agg["comparisons"].items() if key in r}  # leaking: left out
        if not deltas:
            continue
        misses = {n: d for n, d in deltas.items() if not (d["delta"] >= GOAL_MARGIN and d["ci95"][0] > 0)}
        worst = min(deltas.items(), key=lambda kv: kv[1]["delta"])
        res = (
            f"{len(deltas) - len(misses)}/{len(deltas)} comparators beaten by >= {GOAL_MARGIN}; smallest "
            f"margin {worst[1]['delta']:+.3f} against {worst[0]}"
        )
        if misses:
            res += f"; short on {', '.join(sorted(misses))}"
        lines.append(
            f"| {ours} beats every comparator on {key} by >= {GOAL_MARGIN} (interval > 0) | {res} | "
            f"{'yes' if not misses else 'no'} |"
        )

    def mean(name: str, key: str) -> float:
        v = rows.get(name, {}).get(key)
        return float(v["mean"]) if v else math.nan

    def pick_mean(key: str) -> float:
        """Mean over seeds of each seed's pick's value (the seeds where it is finite)."""
        vals = [
            rows.get(str(p), {}).get(key, {}).get("values", [math.nan] * len(picks))[s]
            for s, p in enumerate(picks)
        ]
        ok = [v for v in vals if math.isfinite(v)]
        return sum(ok) / len(ok) if ok else math.nan

    rec, fpr = pick_mean("seen/band@0.1/event_recall_0.5s"), pick_mean("seen/band@0.1/fpr")
    ok = rec >= GOAL_RECALL and fpr <= GOAL_FPR
    lines.append(
        f"| >= {GOAL_RECALL:.0%} of event failures caught >= 0.5 s early at alpha 0.1, seen FPR <= {GOAL_FPR} | "
        f"recall {fmt(rec, 2)}, FPR {fmt(fpr, 2)} (oracle: recall {fmt(mean('oracle-risk', 'seen/band@0.1/event_recall_0.5s'), 2)}) | "
        f"{'yes' if ok else 'no'} |"
    )
    safe_seen, safe_unseen = pick_mean("seen/safe"), pick_mean("unseen/safe")
    lines.append(
        f"| SAFE's simulation averages 82.3 / 77.0 (SAFE-LSTM), 81.4 / 78.0 (SAFE-MLP) seen / unseen; our "
        f"long-run target 0.92 / 0.85 | {ours} {fmt(safe_seen)} / {fmt(safe_unseen)}; "
        f"oracle (not deployable) {fmt(mean('oracle-risk', 'seen/safe'))} / {fmt(mean('oracle-risk', 'unseen/safe'))} "
        f"| {'yes' if safe_seen >= 0.92 and safe_unseen >= 0.85 else 'no'} |"
    )
    lines.append(_type_goal_line([str(p) for p in picks], reports))
    return [*lines, ""]


def _type_goal_line(picks: Sequence[str], reports: Sequence[dict[str, Any]]) -> str:
    """The per-type goal, from the numbers: every failure type with seen test failures has a
    finite ROC-AUC at T for each seed's pick (``picks``, one per report) in every seed."""
    found: dict[str, list[float]] = {}
    for r, ours in zip(reports, picks, strict=False):
        m = next((m for m in r["methods"] if m["name"] == ours), None)
        for t, v in ((m or {}).get("seen", {}).get("types") or {}).items():
            if v.get("n"):
                found.setdefault(t, []).append(float(v["auroc"]))
    ok = {t: all(math.isfinite(a) for a in vals) and len(vals) == len(reports) for t, vals in found.items()}
    met = bool(ok) and all(ok.values())
    res = ", ".join(
        f"{t} {fmt(sum(v) / len(v)) if all(math.isfinite(a) for a in v) else 'n/a'}" for t, v in found.items()
    )
    missing = sorted(t for t, good in ok.items() if not good)
    res = (res or "no seen failures") + (f"; not measured for {', '.join(missing)}" if missing else "")
    return (
        f"| per-type ROC-AUC at T reported for every failure type with seen test failures (mean over "
        f"seeds; which type `Risk` names is not a measurement here) | {res} | {'yes' if met else 'no'} |"
    )


def _unseen_task_lines(agg: dict[str, Any]) -> list[str]:
    """Unseen ROC-AUC per held-out task (one seed each under rotation): our pick, the best fixed
    comparator of that seed and the condition-only reference, each with the seed's bootstrap
    interval; leaking comparators left out."""
    rows = agg.get("unseen_by_task") or []
    if not rows or not any(r["tasks"] for r in rows):
        return []
    leaks = set(agg.get("leaks") or {})
    lines = [
        "",
        "## Unseen, per held-out task",
        "",
        "Each seed's unseen ROC-AUC on its own held-out task's episodes (95% bootstrap over those "
        "episodes); best comparator = the highest of that seed's fixed comparators (chosen on test: "
        "a reference in our disfavour), leaking comparators left out.",
        "",
        "| seed | held-out task | episodes | ours | ours SAFE | ours at-risk 2 s | best comparator SAFE | "
        "best comparator at-risk 2 s | condition-only SAFE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    from .evaluate import REFERENCE_NAME, _comparator_names

    def cell(v: dict[str, Any] | None) -> str:
        return "n/a" if not v else f"{fmt(v['auroc'], 2)}{_ci(v.get('ci95'))}"

    for r in rows:
        methods = r["methods"]
        comps = [n for n in _comparator_names(list(methods)) if n not in leaks]
        ours = methods.get(r["selected"] or "", {})
        cells = [str(r["seed"]), "+".join(r["tasks"]) or "none", str(r["n"]), str(r["selected"])]
        cells += [cell(ours.get("safe")), cell(ours.get("at_risk_2s"))]
        for metric in ("safe", "at_risk_2s"):
            finite = [n for n in comps if math.isfinite(methods[n][metric]["auroc"])]
            best = max(finite, key=lambda n: methods[n][metric]["auroc"]) if finite else None
            cells.append(f"{best} {cell(methods[best][metric])}" if best else "n/a")
        cells.append(cell(methods.get(REFERENCE_NAME, {}).get("safe")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def format_benchmark(
    agg: dict[str, Any],
    reports: Sequence[dict[str, Any]],
    *,
    commands: Sequence[str],
    header: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> str:
    """The benchmark over split seeds: mean [min, max] over seeds of each metric, the headline
    comparisons (mean difference, interval of the mean: see ``aggregate_seeds``)."""
    r0 = reports[0]
    lines = [
        "# Benchmark results",
        "",
        "Produced by (never edited by hand):",
        "",
        "```bash",
        *commands,
        "```",
        "",
    ]
    lines += [*header, ""] if header else []
    lines += _setup_lines(r0)
    held = agg.get("unseen_tasks") or []
    rotated = len({tuple(t) for t in held}) > 1
    lines += [
        f"Split seeds: {agg['n_seeds']} (each seed re-splits the seen episodes and retrains every model; "
        + (
            "each seed holds out another task, leave-one-task-out: "
            if rotated
            else "the held-out task stays unseen: "
        )
        + ", ".join(
            f"seed {s} {'+'.join(t) or 'none'}" for s, t in zip(agg.get("seeds") or [], held, strict=False)
        )
        + "). Numbers are mean [min, max] over seeds"
        + ("; an unseen mean is over the seeds' different held-out tasks." if rotated else "."),
        "",
        "Our predictor, per seed, chosen by the rule fixed in advance (`salus.predictor.selection`: "
        "validation ROC-AUC at T, or 5-fold cross-validation over training + validation episodes when "
        "validation holds < 60 episodes): "
        + ", ".join(
            f"{s} ({(r.get('selection') or {}).get('rule', 'validation')})"
            for s, r in zip(agg["selected"], reports, strict=False)
        )
        + ".",
        "",
    ]
    lines += _goal_lines(agg, reports)
    if agg["comparisons"]:
        ours = _pick_label(agg)
        lines += [
            f"## Headline: {ours} minus each fixed comparator",
            "",
            "Mean over seeds of the difference; 95% interval of that mean: the wider of a paired "
            "bootstrap whose resample of episode ids is shared by every seed (each seed's difference on "
            "its test episodes in the resample, averaged over seeds) and the t interval from the spread "
            "across seeds; **win** = interval above 0. The goal asks +0.05 with the interval above 0.",
            "",
            *_comparison_table(agg["comparisons"]),
        ]
    proto = r0["protocol"]
    leads = lead_names(proto)
    lead = leads[len(leads) // 2]  # the middle bin (0.25-0.75 s by default)
    lines += [
        "## Ranking metrics (mean [min, max] over seeds)",
        "",
        f"| method | family | seen SAFE | seen SAFE task-mean | seen at-risk 2 s | seen lead {_lead_label(lead)} "
        f"| unseen SAFE | unseen SAFE task-mean | unseen at-risk 2 s | unseen lead {_lead_label(lead)} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in agg["methods"]:
        cells = [row["name"], row["family"]]
        for g in ("seen", "unseen"):
            cells += [
                _agg(row, f"{g}/safe"),
                _agg(row, f"{g}/safe_task_mean"),
                _agg(row, f"{g}/at_risk_2s"),
                _agg(row, f"{g}/lead_{lead}"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _unseen_task_lines(agg)
    lines += _benchmark_view_lines(agg)
    lines += ["", *transfer_lines([], agg)] if transfer_lines([], agg) else []
    lines += _instant_lines(agg)
    lines += [
        "",
        "## Alarms (mean [min, max] over seeds)",
        "",
        "Event recall = drop/miss/collision caught at least 0.5 s before `failure_step`; FPR on test successes.",
        "",
        "| method | "
        + " | ".join(f"{k} @ {a:g}: seen FPR / recall" for k in proto["thresholds"] for a in proto["alphas"])
        + " |",
        "|---|" + "---|" * (len(proto["thresholds"]) * len(proto["alphas"])),
    ]
    for row in agg["methods"]:
        cells = []
        for k in proto["thresholds"]:
            for a in proto["alphas"]:
                if all(
                    any(m["name"] == row["name"] and _cannot_fire(m, k, a) for m in r["methods"])
                    for r in reports
                ):
                    cells.append("cannot fire")
                    continue
                cells.append(
                    f"{_agg(row, f'seen/{k}@{a:g}/fpr', 2)} / {_agg(row, f'seen/{k}@{a:g}/event_recall_0.5s', 2)}"
                )
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    lines += ["", *extra]
    lines += ["", f"## Full tables of split seed {r0['protocol']['seed']}", ""]
    full = format_markdown(r0, title="")
    lines += full.split("\n")[2:]
    return "\n".join(lines) + "\n"


def _pct(r: dict[str, Any]) -> str:
    """A rate with its Wilson interval, in percent: ``62% (55-68)``."""
    if not r or not r.get("n"):
        return "n/a"
    lo, hi = r["ci95"]
    return f"{100 * r['rate']:.0f}% ({100 * lo:.0f}-{100 * hi:.0f})"


def _gap(vs: dict[str, Any] | None) -> str:
    """A paired difference in points with its interval: ``+6.2 pts (+1.9, +10.8) **win**``."""
    if not vs or not math.isfinite(vs.get("delta", math.nan)):
        return "-"
    lo, hi = vs["ci95"]
    mark = " **win**" if lo > 0 else (" **loss**" if hi < 0 else "")
    return f"{100 * vs['delta']:+.1f} pts ({100 * lo:+.1f}, {100 * hi:+.1f}){mark}"


def _stat_pct(st: dict[str, Any]) -> str:
    lo, hi = st["ci95"]
    return f"{100 * st['value']:.0f}% ({100 * lo:.0f}-{100 * hi:.0f})"


def _equal_cost_lines(cl: dict[str, Any]) -> list[str]:
    """Success against help requests (and prevented against needless stops) at equal cost."""
    ec, sel = cl.get("equal_cost"), cl["selected"]
    if not ec:
        return []
    fixed = [f"{q:g}" for q in ec["fixed_rates"]]
    rates = ", ".join(f"{q:g}" for q in cl.get("sweep_rates", []))
    lines = [
        "### Equal cost: success against help requests per episode",
        "",
        "Each method's curve sweeps a constant threshold on its running max score, per group (the "
        f"group's episode maxima nearest to help rates {rates or 'of the sweep'}); random requests sweep "
        "the per-step hazard matched to the same rates on the group. Curves start at the policy alone (no "
        "request) and are read by linear interpolation; area = mean success over help rates 0 to 1. "
        f"Differences: paired bootstrap over the group's episodes; method minus random at the same rate in "
        f"the same group, and {sel} (the validation pick) minus each comparator.",
        "",
    ]
    for kind, x_name, y_name in (
        ("handover", "help rate", "success"),
        ("stop", "needless-stop rate", "failures prevented"),
    ):
        if kind == "stop":
            lines += [
                "### Equal cost: failures prevented against needless stops",
                "",
                "The same sweep read for stops: share of event failures stopped no later than the event "
                "against the share of would-be successes stopped.",
                "",
            ]
        head = ["group", "method", "area"] + [f"{y_name} at {x_name} {q}" for q in fixed]
        head += ["minus random: area"] + [f"minus random at {q}" for q in fixed]
        head += [f"{sel} minus it: area"] + [f"{sel} minus it at {q}" for q in fixed]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for g, by in ec[kind].items():
            ours = by.get(sel, {}).get("vs_methods", {})
            for m, e in by.items():
                keys = ["area", *fixed]
                cells = [g, m, *[_stat_pct(e[k]) for k in keys]]
                cells += [_gap(e.get("vs_random", {}).get(k)) for k in keys]
                cells += [_gap(ours.get(m, {}).get(k)) for k in keys]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _open_loop_lines(cl: dict[str, Any]) -> list[str]:
    """The fresh episodes scored open loop (the confirmation set), beside the test set's numbers."""
    ol = cl.get("open_loop") or {}
    if not ol:
        return []
    keys = [
        ("safe", "SAFE"),
        ("at_risk_2s", "at-risk 2 s"),
        ("at_risk_2s_unperturbed", "at-risk 2 s unperturbed"),
    ]
    lines = [
        "### Confirmation set, open loop",
        "",
        "The same fresh episodes scored by the protocol without any intervention (thresholds and models "
        "of the benchmark's first split seed), ROC-AUC with its 95% bootstrap interval; compare with the "
        "test set's numbers above.",
        "",
        "| method | " + " | ".join(f"{g} {label}" for g in ("seen", "unseen") for _, label in keys) + " |",
        "|---|" + "---|" * (2 * len(keys)),
    ]
    for name, row in ol.items():
        cells = [name]
        for g in ("seen", "unseen"):
            for k, _ in keys:
                v = row.get(f"{g}/{k}") or {}
                cells.append(f"{fmt(v.get('auroc'), 2)}{_ci(v.get('ci95'))}" if v else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def closed_loop_lines(cl: dict[str, Any], *, per_task_alpha: float = 0.1) -> list[str]:
    """The closed-loop section (``salus assist``'s ``closed_loop.json``) as markdown: the equal-cost
    curves' table, then the operating points (calibrated alphas)."""
    methods, alphas = cl["methods"], cl["alphas"]
    alone, ceil = cl["policy_alone"], cl["ceiling"]
    fc = cl.get("fresh_collect") or {}
    lines = [
        "## Closed loop: ask a person, or stop, at the first alarm",
        "",
        f"{cl['n_episodes']} fresh episodes (`{cl['fresh']}`: {fc.get('episodes', '?')} episodes, collection "
        f"seed {fc.get('seed', '?')}, none of whose seeds is in the benchmark dataset"
        + (f"; collected in {cl['fresh_collect_seconds']:.0f} s" if cl.get("fresh_collect_seconds") else "")
        + f"), models of `{cl['models']}`, "
        "thresholds at the operating points: "
        + str(cl["threshold"])
        + ". The person is the scripted expert, taking over at the alarm "
        "step; a handover after the failure event counts as a help request that saved nothing. Counterfactuals "
        "replay the policy-alone episode's actions up to the alarm (the monitor only watches until then), "
        f"{cl['counterfactual_episodes']} simulated episodes in {cl['simulation_s']:.0f} s; "
        f"{len(cl['replay_mismatches'])} episode(s) whose plain replay did not reproduce the recorded outcome "
        "were left out. Random = requests at a constant per-step rate. 95% Wilson intervals; gaps: paired "
        "bootstrap.",
        "",
        f"Policy alone: {_pct(alone['pooled'])} success; person in charge from the start (ceiling): "
        f"{_pct(ceil['pooled'])}.",
        "",
        *_equal_cost_lines(cl),
        *_open_loop_lines(cl),
        "### Handover at the calibrated alphas (pooled)",
        "",
        "Minus random: the method's success minus random's curve read at the method's own help rate.",
        "",
        "| method | alpha | help requests / episode | success with monitor | minus random, same rate | saves | late help | handovers that lost a success | needless requests (of successes) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        for a in alphas:
            r = cl["methods"][m][f"{a:g}"]["pooled"]
            lines.append(
                f"| {m} | {a:g} | {fmt(r['help_rate']['rate'], 2)} | {_pct(r['success'])} | {_gap(r.get('vs_random'))} | "
                f"{r['saves']} | {r['late_help']} | {r['harmed']} | {_pct(r['needless_help'])} |"
            )
    lines += [
        "",
        "### Stop at the calibrated alphas (pooled)",
        "",
        "A stop holds the robot at the alarm; the episode ends *stopped*. Prevented = a drop/miss/collision "
        "episode stopped no later than its event; timeouts (no event) are counted apart.",
        "",
        "| method | alpha | stops / episode | failures prevented (of events) | timeouts stopped | needless stops (of successes) | events missed or stopped late |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        for a in alphas:
            r = cl["methods"][m][f"{a:g}"]["pooled"]
            st = r["stop"]
            lines.append(
                f"| {m} | {a:g} | {fmt(r['help_rate']['rate'], 2)} | {_pct(st['prevented'])} | "
                f"{_pct(st['stopped_timeouts'])} | {_pct(st['needless'])} | {_pct(st['missed_events'])} |"
            )
    groups = [g for g in alone if g not in ("pooled",)]
    key = f"{per_task_alpha:g}"
    lines += [
        "",
        f"### Per task and seen/unseen (handover at alpha {per_task_alpha:g})",
        "",
        "Success / help requests per episode / minus random at that group's own rate.",
        "",
        "| group | n | policy alone | ceiling | " + " | ".join(methods) + " |",
        "|---|---|---|---|" + "---|" * len(methods),
    ]
    for g in groups:
        cells = [g, str(alone[g]["n"]), _pct(alone[g]), _pct(ceil[g])]
        for m in methods:
            r = cl["methods"][m].get(key, {}).get(g)
            cells.append(
                "n/a"
                if r is None
                else f"{_pct(r['success'])} / {fmt(r['help_rate']['rate'], 2)} / {_gap(r.get('vs_random'))}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]
