"""salus.monitor: the runtime monitor, the evaluation report and episode replays.

``Monitor.load(MODEL_DIR, policy=adapter)`` then ``action, risk = monitor.step(obs)`` (or
``risk = monitor.observe(obs, action)``) once per control step; ``render_report(inputs, DIR)`` for
the HTML report; ``replay_episode(DATA, i, OUT)`` for an MP4 / GIF / PNG strip. Heavy modules
(torch, matplotlib) are imported on first use.
"""

from __future__ import annotations

from typing import Any

from salus._lazy import load_lazy

_LAZY: dict[str, str] = {
    "Monitor": "salus.monitor.monitor",
    "MonitorConfig": "salus.monitor.monitor",
    "Risk": "salus.monitor.monitor",
    "SignalContribution": "salus.monitor.monitor",
    "ATTRIBUTION_MODES": "salus.monitor.monitor",
    "hold_action": "salus.monitor.monitor",
    "offline_risk": "salus.monitor.monitor",
    "Band": "salus.monitor.report",
    "EpisodeScores": "salus.monitor.report",
    "ReportInputs": "salus.monitor.report",
    "render_report": "salus.monitor.report",
    "FIGURE_NAMES": "salus.monitor.report",
    "build_report_inputs": "salus.monitor.evaluation",
    "ReplayCurves": "salus.monitor.replay",
    "write_replay": "salus.monitor.replay",
    "replay_episode": "salus.monitor.replay",
    "REPLAY_FORMATS": "salus.monitor.replay",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
