"""salus.monitor: the runtime monitor, the evaluation report and episode replays.

``Monitor.load(MODEL_DIR, policy=adapter)`` then ``action, risk = monitor.step(obs)`` (or
``risk = monitor.observe(obs, action)``) once per control step; ``render_report(evaluation, DIR)``
for the HTML report of an evaluation (``salus.predictor.evaluate_detailed``); ``replay_episode(DATA,
i, OUT)`` for an MP4 / GIF / PNG strip. Heavy modules (torch, matplotlib) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors (no import at run time)
    from salus.monitor.config import ATTRIBUTION_MODES as ATTRIBUTION_MODES
    from salus.monitor.config import MonitorConfig as MonitorConfig
    from salus.monitor.config import hold_action as hold_action
    from salus.monitor.monitor import Monitor as Monitor
    from salus.monitor.offline import offline_risk as offline_risk
    from salus.monitor.replay import REPLAY_FORMATS as REPLAY_FORMATS
    from salus.monitor.replay import ReplayCurves as ReplayCurves
    from salus.monitor.replay import replay_episode as replay_episode
    from salus.monitor.replay import write_replay as write_replay
    from salus.monitor.report import FIGURE_NAMES as FIGURE_NAMES
    from salus.monitor.report import ReportView as ReportView
    from salus.monitor.report import render_report as render_report
    from salus.monitor.risk import Risk as Risk
    from salus.monitor.risk import SignalContribution as SignalContribution

_LAZY: dict[str, str] = {
    "Monitor": "salus.monitor.monitor",
    "MonitorConfig": "salus.monitor.config",
    "Risk": "salus.monitor.risk",
    "SignalContribution": "salus.monitor.risk",
    "ATTRIBUTION_MODES": "salus.monitor.config",
    "hold_action": "salus.monitor.config",
    "offline_risk": "salus.monitor.offline",
    "ReportView": "salus.monitor.report",
    "render_report": "salus.monitor.report",
    "FIGURE_NAMES": "salus.monitor.report",
    "ReplayCurves": "salus.monitor.replay",
    "write_replay": "salus.monitor.replay",
    "replay_episode": "salus.monitor.replay",
    "REPLAY_FORMATS": "salus.monitor.replay",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
