"""The HTML report: figures, numbers, and a real headless Chromium load with every image decoded."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from salus.errors import InvalidInputError, InvalidNameError
from salus.monitor.report import FIGURE_NAMES, Band, EpisodeScores, first_alarm, render_report, score_at_time

from .synthetic import synthetic_inputs

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
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    inputs = synthetic_inputs()
    index = render_report(inputs, tmp_path_factory.mktemp("report"))
    return index, inputs


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make system-deps)")
def test_report_renders_in_headless_chromium_with_every_image(report: tuple[Path, object]) -> None:
    index, _ = report
    images = _browser_images(index)
    assert sorted(images) == sorted(f"{n}.png" for n in FIGURE_NAMES)
    for src, (w, h) in images.items():
        assert w >= 400 and h >= 300, f"{src} did not load in the browser ({w}x{h})"

    # The check can fail: a page whose image is missing reports a zero-size image.
    broken = index.with_name("broken.html")
    broken.write_text(index.read_text().replace("roc.png", "no_such_figure.png"))
    images = _browser_images(broken)
    assert images["no_such_figure.png"] == (0, 0)
    assert images["timelines.png"][0] > 0


def test_report_numbers_match_the_protocol(report: tuple[Path, object]) -> None:
    import json

    index, inputs = report
    summary = json.loads(index.with_name("report.json").read_text())
    for split in ("seen", "unseen"):
        eps = inputs.split_episodes(split)  # type: ignore[attr-defined]
        t = min(ep.length for ep in eps if ep.success)
        assert summary["eval_time"][split] == {eps[0].task: t}  # one task per split here
        y = [not ep.success for ep in eps]
        s = [ep.scores["stac_single"][:t].max() for ep in eps]
        assert summary["roc_auc"][split]["stac_single"] == pytest.approx(roc_auc_score(y, s))
        # a score equal to elapsed time carries no information at time T
        assert summary["roc_auc"][split]["time"] == pytest.approx(0.5)
        band = inputs.bands["salus_mlp"]  # type: ignore[attr-defined]
        alarms = [first_alarm(ep.scores["salus_mlp"], band) >= 0 for ep in eps]
        c = summary["confusion"][split]
        assert c["tp"] == sum(a and f for a, f in zip(alarms, y, strict=True))
        assert c["fp"] == sum(a and not f for a, f in zip(alarms, y, strict=True))
        assert c["tp"] + c["fp"] + c["tn"] + c["fn"] == len(eps)
    html = index.read_text()
    assert "salus_mlp" in html and "<table>" in html
    for name in FIGURE_NAMES:
        assert index.with_name(f"{name}.png").stat().st_size > 10_000


def test_alarm_and_running_max_helpers() -> None:
    band = Band(center=np.zeros(3), upper=np.array([0.5, 0.5, 0.2]), alpha=0.1)
    assert first_alarm(np.array([0.1, 0.4, 0.3, 0.1]), band) == 2  # past the band's end: last value
    assert first_alarm(np.array([0.3, 0.1, 0.1]), band) == 2  # the running max is what is compared
    assert first_alarm(np.array([0.1, np.nan, 0.1]), band) == -1
    assert score_at_time(np.array([0.1, 0.9, 0.2]), 1) == pytest.approx(0.1)
    assert score_at_time(np.array([0.1, 0.9, 0.2]), 99) == pytest.approx(0.9)


def test_bad_report_inputs_are_clear_errors() -> None:
    inputs = synthetic_inputs(n_per_split=4)
    with pytest.raises(InvalidInputError, match="must be equal"):
        Band(center=np.zeros(3), upper=np.zeros(4), alpha=0.1)
    with pytest.raises(InvalidInputError, match="failure_step"):
        EpisodeScores(index=0, split="seen", task="t", success=False, failure_step=-1, scores={"a": [0.0]})
    with pytest.raises(InvalidNameError, match="valid methods"):
        type(inputs)(
            episodes=inputs.episodes, method_kinds=inputs.method_kinds, primary_method="nope",
            bands=inputs.bands, alpha=0.1,
        )  # fmt: skip
    with pytest.raises(InvalidNameError, match="method kind"):
        type(inputs)(
            episodes=inputs.episodes, method_kinds={**inputs.method_kinds, "time": "oracle"},
            primary_method="salus_mlp", bands=inputs.bands, alpha=0.1,
        )  # fmt: skip
