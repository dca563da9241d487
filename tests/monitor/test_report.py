"""The HTML report draws an evaluation (the protocol's numbers, bands and scores) and loads in a
real headless Chromium with every image decoded."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from salus._json import to_json
from salus.errors import InvalidInputError, InvalidNameError
from salus.monitor.report import FIGURE_NAMES, ReportView, render_report
from salus.monitor.report.figures import draw_timelines, pick_examples, roc_points
from salus.monitor.report.glance import GLANCE_FIGURES, at_a_glance, glance_html
from salus.predictor.protocol import alarm_steps, running_max

from .synthetic import synthetic_evaluation

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)

_PROBE = (
    "<script>window.addEventListener('load',function(){var r=[];"
    "document.querySelectorAll('img').forEach(function(i){"
    "r.push(i.getAttribute('src')+' '+i.complete+' '+i.naturalWidth+' '+i.naturalHeight)});"
    "var p=document.createElement('pre');p.id='salus-img-check';p.textContent=r.join('\\n');"
    "document.body.appendChild(p);});</script>"
)


def _browser_images(index: Path) -> dict[str, tuple[int, int]]:
    """Load the page in headless Chromium; returns src -> (naturalWidth, naturalHeight) per <img>."""
    probe = index.with_name("_probe.html")
    probe.write_text(index.read_text().replace("</body>", _PROBE + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri(),
        ]  # fmt: skip
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True).stdout
    m = re.search(r"<pre id=\"salus-img-check\">(.*?)</pre>", dom, re.S)
    assert m, f"the probe script did not run; DOM starts: {dom[:300]}"
    out = {}
    for line in m.group(1).strip().splitlines():
        src, complete, w, h = line.split()
        out[src] = (int(w), int(h)) if complete == "true" else (0, 0)
    return out


@pytest.fixture(scope="module")
def evaluation():
    return synthetic_evaluation()


@pytest.fixture(scope="module")
def report(evaluation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_report(evaluation, tmp_path_factory.mktemp("report"), meta={"dataset": "synthetic"})


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make system-deps)")
def test_report_renders_in_headless_chromium_with_every_image(report: Path) -> None:
    images = _browser_images(report)
    glance = [f"{n}.png" for n in GLANCE_FIGURES.values()]
    assert sorted(images) == sorted([*glance, *(f"{n}.png" for n in FIGURE_NAMES)])
    assert list(images)[:2] == glance  # the at-a-glance pictures are the page's first images
    for src, (w, h) in images.items():
        assert w >= 400 and h >= 300, f"{src} did not load in the browser ({w}x{h})"

    # The check can fail: a page whose image is missing reports a zero-size image.
    broken = report.with_name("broken.html")
    broken.write_text(report.read_text().replace("roc.png", "no_such_figure.png"))
    images = _browser_images(broken)
    assert images["no_such_figure.png"] == (0, 0)
    assert images["timelines.png"][0] > 0


def test_report_numbers_are_the_evaluations(evaluation, report: Path) -> None:
    """results.json is the evaluation's report; report.json and the figures copy from it."""
    results = json.loads(report.with_name("results.json").read_text())
    assert results["methods"] == to_json(evaluation.report["methods"], non_finite="null")
    assert results["comparisons"] == to_json(evaluation.report["comparisons"], non_finite="null")
    summary = json.loads(report.with_name("report.json").read_text())
    assert summary["primary_method"] == "ours" == evaluation.report["selection"]["selected"]
    assert summary["alpha"] == 0.1 and summary["figures"] == [f"{n}.png" for n in FIGURE_NAMES]
    view = ReportView.of(evaluation)
    for g, idx in view.groups:
        entry = view.entry("ours")[g]
        h = summary["headline"][g]
        assert h["safe_auroc"] == pytest.approx(entry["safe"]["auroc"])
        for kind in ("band", "constant"):
            a = entry["alarms"][kind]["0.1"]
            assert h["alarms"][kind]["fpr"] == pytest.approx(a["fpr"])
            assert summary["calibration_fpr"][g][kind]["0.1"] == pytest.approx(a["fpr"])
            assert summary["lead_time"][g][kind]["n"] == len(a["lead_s"])
        # what the protocol says about the sanity scores, as the report carries it
        assert summary["roc_auc"][g]["time"] == pytest.approx(0.5)
        assert summary["roc_auc"][g]["peek"] > 0.95
        # the drawn ROC curve is the curve of the evaluation's ROC-AUC
        for name in ("ours", "baseline:baseline_0", "signal:signal_0"):
            pts = roc_points(view, name, idx)
            assert pts is not None
            assert np.trapezoid(pts[1], pts[0]) == pytest.approx(view.entry(name)[g]["safe"]["auroc"])


def test_at_a_glance_counts_the_per_episode_alarms(evaluation, report: Path) -> None:
    """The summary's counts and lead times equal a count of each test episode's first alarm at the
    evaluation's band (primary method, alpha 0.1), and its examples are the documented picks."""
    glance = json.loads(report.with_name("report.json").read_text())["at_a_glance"]
    view = ReportView.of(evaluation)
    assert [glance[k] for k in ("method", "alpha", "threshold", "can_fire")] == ["ours", 0.1, "band", True]
    band, hz = evaluation.bands["ours"]["band"][0.1], evaluation.episodes.control_hz
    timeout_step = evaluation.report["protocol"]["timeout_step"]
    caught_all, false_all = [], []
    for order, (g, idx) in enumerate(view.groups):
        caught, after, false, leads, n_ev, n_ok, t_hit, n_to = 0, 0, 0, [], 0, 0, 0, 0
        for i in idx:
            ep = evaluation.episodes[i]
            a = band.alarm_step(np.maximum.accumulate(np.asarray(view.method("ours").scores[i], float)))
            if ep.success:
                n_ok += 1
                if a >= 0:
                    false += 1
                    false_all.append((a, order, i))
            elif ep.failure_type == "timeout":  # apart: never a lead time
                n_to += 1
                t_hit += 0 <= a <= timeout_step
            else:
                n_ev += 1
                if 0 <= a <= ep.failure_step:
                    caught += 1
                    leads.append((ep.failure_step - a) / hz)
                    caught_all.append(((ep.failure_step - a) / hz, order, i))
                after += a > ep.failure_step
        row = glance["groups"][g]
        assert (row["n_event"], row["n_success"], row["n_timeout"]) == (n_ev, n_ok, n_to)
        assert (row["caught"], row["caught_after_event"], row["false_alarms"]) == (caught, after, false)
        assert row["timeouts_alarmed"] == t_hit and row["n_episodes"] == len(idx)
        assert row["caught_share"] == pytest.approx(caught / n_ev)
        assert row["false_alarm_share"] == pytest.approx(false / n_ok)
        assert row["lead_s_median"] == pytest.approx(float(np.median(leads)))
        assert row["lead_s_iqr"] == pytest.approx(list(np.percentile(leads, [25, 75])))
        assert caught > 0 and false > 0  # the synthetic data exercises both
        # the summary agrees with the alarm table's numbers
        table = view.alarms("ours", g, "band")
        assert row["false_alarm_share"] == pytest.approx(table["fpr"])
        assert row["lead_s_median"] == pytest.approx(table["lead_s_median"])
    med = float(np.median([x[0] for x in caught_all]))
    typical = min(caught_all, key=lambda x: (abs(x[0] - med), x[1], x[2]))
    ex = glance["examples"]
    assert (ex["caught"]["episode"], ex["caught"]["lead_s"]) == (typical[2], pytest.approx(typical[0]))
    assert ex["caught"]["median_lead_s"] == pytest.approx(med)
    assert ex["false_alarm"]["episode"] == sorted(false_all)[(len(false_all) - 1) // 2][2]
    assert evaluation.episodes[ex["false_alarm"]["episode"]].success
    assert glance["figures"] == [f"{n}.png" for n in GLANCE_FIGURES.values()]
    for name in glance["figures"]:
        assert report.with_name(name).stat().st_size > 10_000
    # the block is the page's first: before the meta table and the comparator tables
    page = report.read_text()
    first = page.index("<section id='at-a-glance'>")
    assert first < page.index("<table class='meta'>") < page.index("ours against each fixed comparator")
    assert first < page.index("src='glance_caught.png'") < page.index("src='glance_false_alarm.png'")
    assert first < min(page.index(f"src='{n}.png'") for n in FIGURE_NAMES)


def test_at_a_glance_says_when_the_band_cannot_fire(evaluation, tmp_path: Path) -> None:
    never = {
        kind: {a: dataclasses.replace(b, half_width=math.inf) for a, b in by.items()}
        for kind, by in evaluation.bands["ours"].items()
    }
    swapped = dataclasses.replace(evaluation, bands={**evaluation.bands, "ours": never})
    glance = at_a_glance(ReportView.of(swapped))
    assert glance["can_fire"] is False and glance["figures"] == []
    assert all("caught" not in row and "lead_s_median" not in row for row in glance["groups"].values())
    text = glance_html(glance)
    assert "cannot fire at alpha = 0.1" in text and "<img" not in text and "median" not in text
    # no false alarm at all: said in words, no picture
    normal = at_a_glance(ReportView.of(evaluation))
    text = glance_html({**normal, "examples": {**normal["examples"], "false_alarm": None}})
    assert "No false alarm" in text and "glance_false_alarm.png" not in text and "glance_caught.png" in text


def test_page_shows_every_table_and_figure(evaluation, report: Path) -> None:
    page = report.read_text()
    for text in (
        "ours against each fixed comparator",  # headline comparisons
        "chosen on validation",  # the validation selection
        "Ranking metrics",  # SAFE-comparable, at-risk, lead
        "Per failure type",
        "Alarms: one-sided functional band, alpha = 0.1",
        "Alarms: constant threshold, alpha = 0.05",
        "Calibration",
        "Lead time of event failures",
        "Score curves",
    ):
        assert text in page, text
    assert page.count("<details>") == 4  # the alarm tables at the other alphas are folded
    assert "<tr class='primary'>\n<td>ours</td>" in page
    for name in FIGURE_NAMES:
        assert f"src='{name}.png'" in page
        assert report.with_name(f"{name}.png").stat().st_size > 10_000


def test_score_curves_use_the_evaluations_bands(evaluation, report: Path, tmp_path: Path) -> None:
    """The examples' alarms are the protocol's at the evaluation's fitted thresholds (no refit):
    with the primary's thresholds swapped for infinite ones, no example alarms any more."""
    view = ReportView.of(evaluation)
    normal = json.loads(report.with_name("report.json").read_text())["timeline_examples"]
    assert [[ex["group"], ex["episode"]] for ex in normal] == [list(x) for x in pick_examples(view)]
    for ex in normal:
        run = running_max(view.method("ours").scores[ex["episode"]])
        for kind, step in ex["alarm_step"].items():
            assert step == int(alarm_steps([run], view.band(kind))[0])
    assert any(ex["alarm_step"]["band"] >= 0 for ex in normal)

    never = {
        kind: {a: dataclasses.replace(b, half_width=math.inf) for a, b in by.items()}
        for kind, by in evaluation.bands["ours"].items()
    }
    swapped = dataclasses.replace(evaluation, bands={**evaluation.bands, "ours": never})
    examples = draw_timelines(ReportView.of(swapped), tmp_path / "timelines.png")
    assert examples and all(v == -1 for ex in examples for v in ex["alarm_step"].values())


def test_picked_examples_cover_each_outcome(evaluation) -> None:
    view = ReportView.of(evaluation)
    picked = pick_examples(view)
    eps = [evaluation.episodes[i] for _, i in picked]
    assert len(picked) == 6 and len(set(picked)) == 6
    assert any(ep.success for ep in eps) and any(ep.failed for ep in eps)
    assert {g for g, _ in picked} == {"seen", "unseen"}


def test_bad_report_choices_are_clear_errors(evaluation, tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError, match="valid methods"):
        render_report(evaluation, tmp_path, primary="nope")
    with pytest.raises(InvalidInputError, match="alpha 0.3 was not evaluated"):
        render_report(evaluation, tmp_path, alpha=0.3)
    view = ReportView.of(evaluation, primary="baseline:baseline_0", alpha=0.2)
    assert view.primary == "baseline:baseline_0" and view.alpha == 0.2


def _closed_loop_result() -> dict:
    """``salus assist``'s result layout on hand-made counterfactuals (metrics from the real code)."""
    from salus.predictor.closed_loop import FreshEpisode, closed_loop_metrics, sweep_plans

    rng = np.random.default_rng(0)
    eps = [
        FreshEpisode(f"e{i}", ("push", "stack")[i % 2], i % 2 == 1, bool(s), -1 if s else 40, "none" if s else "drop", 90)
        for i, s in enumerate(rng.random(60) < 0.4)
    ]  # fmt: skip
    alphas = (0.05, 0.1, 0.2)
    plans = {
        m: {a: np.where(rng.random(60) < 2 * a + 0.1, rng.integers(0, 60, 60), -1) for a in alphas}
        for m in ("ours", "knn")
    }
    handover = {(e.key, t): bool(rng.random() < 0.7) for e in eps for t in range(90)}
    runs = {m: [np.maximum.accumulate(rng.random(90)) for _ in eps] for m in ("ours", "knn")}
    sweeps = sweep_plans(runs, eps, seed=0)
    metrics = closed_loop_metrics(eps, plans, handover, sweeps=sweeps, selected="ours")
    return {
        "selected": "ours", "alphas": list(alphas), "sweep_rates": [0.5, 1.0],
        "threshold": "band", "fresh": "fresh.zarr", "models": "models", "fresh_collect": {"seed": 1},
        "replay_mismatches": [], "counterfactual_episodes": 123, "simulation_s": 4.0, **metrics,
    }  # fmt: skip


def test_closed_loop_figure_and_tables_join_the_page(evaluation, tmp_path: Path) -> None:
    cl = _closed_loop_result()
    index = render_report(evaluation, tmp_path, closed_loop=cl)
    page = index.read_text()
    assert "src='closed_loop.png'" in page and (tmp_path / "closed_loop.png").stat().st_size > 10_000
    assert "Closed loop: ask a person, or stop, at the first alarm" in page
    assert "Equal cost: success against help requests per episode" in page
    assert "Handover at the calibrated alphas (pooled)" in page
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["closed_loop"]["ours"]["help"] == [
        cl["methods"]["ours"][f"{a:g}"]["pooled"]["help_rate"]["rate"] for a in cl["alphas"]
    ]
    assert (
        summary["closed_loop"]["random"]["curve"]["help"]
        == cl["equal_cost"]["handover"]["pooled"]["random"]["points"]["x"]
    )
    assert "closed_loop.png" in summary["figures"]
    if CHROMIUM is not None:  # the browser loads it too
        w, h = _browser_images(index)["closed_loop.png"]
        assert w >= 400 and h >= 300


def test_the_confirmation_set_is_reported_open_loop() -> None:
    """`salus assist` keeps the fresh episodes' open-loop ROC-AUC per method (the protocol's own
    numbers, with their intervals) and the closed-loop section prints them."""
    from salus.monitor.assist import _open_loop
    from salus.predictor.tables import _open_loop_lines

    from .synthetic import synthetic_evaluation

    ev = synthetic_evaluation(n=200, n_boot=50)
    ol = _open_loop(ev.report)
    ours = next(m for m in ev.report["methods"] if m["name"] == "ours")
    assert ol["ours"]["seen/safe"]["auroc"] == ours["seen"]["safe"]["auroc"]
    assert ol["ours"]["unseen/at_risk_2s"]["auroc"] == ours["unseen"]["at_risk"]["2s"]["auroc"]
    assert ol["ours"]["seen/safe"]["ci95"] == ours["seen"]["ci95"]["safe"]
    md = "\n".join(_open_loop_lines({"open_loop": ol}))
    assert "### Confirmation set, open loop" in md
    row = next(line for line in md.splitlines() if line.startswith("| ours |"))
    assert f"{ours['seen']['safe']['auroc']:.2f}" in row
