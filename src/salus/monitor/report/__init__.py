"""The evaluation report a person reads: PNG figures and one HTML page, drawn from an
:class:`~salus.predictor.Evaluation` (``salus.predictor.evaluate_detailed``). It computes no metric
and refits no threshold: the numbers, the per-episode scores and the calibrated bands are the
evaluation's, so the page shows what ``salus evaluate`` prints.

- :mod:`.view`: what one report looks at (the evaluation, the primary method, the alpha shown);
- :mod:`.glance`: the page's first block (failures caught, lead time, false alarms, two examples);
- :mod:`.figures`: the figures (calibration, lead time, score curves, ROC, signals);
- :mod:`.page`: the HTML page (the evaluation's markdown tables around the figures);
- :mod:`.render`: :func:`render_report` writes the folder.
"""

from __future__ import annotations

from .figures import FIGURE_NAMES
from .glance import GLANCE_FIGURES, at_a_glance
from .render import render_report
from .view import ReportView

__all__ = ["FIGURE_NAMES", "GLANCE_FIGURES", "ReportView", "at_a_glance", "render_report"]
