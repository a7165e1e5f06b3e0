"""The per-branch `identity` count of each basis is the number of clients the statistics analysed."""

import datetime as dt
import shutil
import textwrap
from pathlib import Path

import pandas as pd
from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.planner import Cell
from jetstream_assets.assets.statistics import compute_window_statistics
from jetstream_assets.config import load_metric_hub, resolve_config
from jetstream_assets.sql import names
from jetstream_assets.validation.resolution import stand_in_experiment
from jetstream_assets.warehouse.local import LocalWarehouse
from jetstream_assets.windows import AnalysisWindow

SAMPLE = Path("/work/shared/metric-hub-sample")
SLUG = "count-check"


def _cell(tmp_path: Path) -> Cell:
    hub = tmp_path / "hub"
    (hub / "definitions").mkdir(parents=True)
    (hub / "jetstream").mkdir()
    shutil.copy(SAMPLE / "definitions/functions.toml", hub / "definitions/functions.toml")
    (hub / "definitions/firefox_desktop.toml").write_text(textwrap.dedent("""
        [data_sources.clients_daily]
        from_expression = "mozdata.telemetry.clients_daily"
    """))
    (hub / f"jetstream/{SLUG}.toml").write_text(textwrap.dedent("""
        [metrics]
        weekly = ["clicks"]
        [metrics.clicks]
        select_expression = "SUM(clicks)"
        data_source = "clients_daily"
        analysis_bases = ["enrollments", "exposures"]
        statistics = { sum = {} }
    """))
    experiment = stand_in_experiment(SLUG, "firefox_desktop", dt.date(2024, 6, 1))
    resolved = resolve_config(experiment, load_metric_hub(hub))
    window = AnalysisWindow(AnalysisPeriod.WEEK, 1, 0, 6)
    return Cell(SLUG, dt.date(2024, 6, 1), experiment, resolved, 7, [window])


def test_exposures_count_is_the_clients_analysed(tmp_path):
    """Defect: the exposures basis counted exposure dates in the enrollments table (2 per branch here)
    while its statistics ran on the exposed clients of the metrics table (3 control, 4 treatment, as a
    custom exposure signal over the analysis window finds them): the count must be the latter."""
    cell = _cell(tmp_path)
    warehouse = LocalWarehouse(root=str(tmp_path / "warehouse"))
    day = pd.Timestamp("2024-05-01")
    branch = ["control"] * 5 + ["treatment"] * 5
    enrollments = pd.DataFrame({
        "analysis_id": [f"c{i}" for i in range(10)], "branch": branch,
        "enrollment_date": day, "num_enrollment_events": 1,
        "exposure_date": [day, day, None, None, None, day, day, None, None, None],
        "num_exposure_events": 1,
    })
    warehouse.write_dataframe(enrollments, names.enrollments_table(SLUG))
    for basis, exposed in (("enrollments", [True] * 10),
                           ("exposures", [True, True, True, False, False, True, True, True, True, False])):
        metrics = enrollments.assign(
            exposure_date=[day if e else None for e in exposed], clicks=range(10),
            analysis_window_start=0, analysis_window_end=6,
        )
        warehouse.write_dataframe(metrics, names.metrics_table(SLUG, basis, AnalysisPeriod.WEEK, 1))
    rows, errors = compute_window_statistics(cell, cell.windows[0], warehouse)
    assert not errors
    counts = rows[rows.metric == "identity"].set_index(["analysis_basis", "branch"])["point"].to_dict()
    assert counts == {("enrollments", "control"): 5, ("enrollments", "treatment"): 5,
                      ("exposures", "control"): 3, ("exposures", "treatment"): 4}
    sums = rows[(rows.metric == "clicks") & (rows.analysis_basis == "exposures")].set_index("branch")["point"]
    assert sums.to_dict() == {"control": 0 + 1 + 2, "treatment": 5 + 6 + 7 + 8}
