"""The results report of one experiment: ``reports/<slug>.html``, one self-contained HTML page.

A data scientist opens it from the export store (a local folder or a bucket) with nothing but a browser:
no server, no internet (styles, SVG plots and a few lines of script are inline). It shows what
Experimenter's results page shows: the experiment's overview (name, dates, status, branches, outcomes,
enrolled and exposed clients with the sample ratio check), one tab per analysis period, page-wide
selectors for the segment and the analysis basis, and for every metric, grouped by outcome, each branch's
absolute value, its absolute and relative difference against the reference branch with their intervals,
a reading in words, the method (statistic, pre-treatments, covariate adjustment) and the plot over the
windows so far; then the metrics without results and the errors logged.

- ``model``: what the page shows, computed from the exports; ``overview``: the experiment, enrollment,
  errors; ``plots``: the SVG plots' geometry; ``render``: the page, from the Jinja template
  ``report.html.j2`` in an immutable sandbox with autoescaping (configs and data never become markup).
"""

from jetstream_assets.exports.report.build import build_report, configured_methods, failure_page
from jetstream_assets.exports.report.format import pct, reading
from jetstream_assets.exports.report.model import ReportError
from jetstream_assets.exports.report.overview import Timeline, with_log_fields
from jetstream_assets.exports.report.plots import nice_ticks

__all__ = ["ReportError", "Timeline", "build_report", "configured_methods", "failure_page", "nice_ticks", "pct", "reading",
           "with_log_fields"]
