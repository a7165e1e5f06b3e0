"""What a run imports: with the local engines and the Experimenter file, a `run` never loads requests (only
the API needs it), the BigQuery client library or the protobuf messages of gRPC errors (mozanalysis imports
them; they are deferred until used), nor scipy.stats (the statistics and the SRM check compute their
quantiles with the scipy.special functions scipy.stats uses, bit for bit); the deferred libraries work
unchanged when something uses them, and nothing is deferred when a Google engine is selected."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from jetstream_assets.checks.enrollments import sample_ratio_mismatch
from jetstream_assets.statistics.estimators import st
from jetstream_assets_tests.worlds import build_world, demo_environment

NEVER_LOADED = ("google.cloud.bigquery.client", "google.cloud.bigquery_storage_v1", "google.auth.crypt",
                "google.protobuf", "scipy.stats", "requests", "urllib3")


def _python(code: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_local_run_loads_neither_the_bigquery_client_nor_scipy_stats(tmp_path):
    with build_world(tmp_path / "home", clients=200) as world:
        env = demo_environment(world.home)
        env.pop("DAGSTER_HOME")
        probe = (
            "import json, sys\nfrom jetstream_assets.cli import main\n"
            "code = main(['run', '--experiment', 'demo-live', '--date', '2026-11-20', '--home', "
            f"{str(world.home)!r}])\n"
            f"print(json.dumps({{'code': code, 'loaded': [m for m in {NEVER_LOADED!r} if m in sys.modules],"
            " 'statistics': 'jetstream_assets.statistics.estimators' in sys.modules,"
            " 'deferred': type(sys.modules.get('google.cloud.bigquery')).__name__}))\n"
        )
        found = _python(probe, env)
    assert found["code"] == 0 and found["statistics"]  # the run computed statistics
    assert found["loaded"] == []
    assert found["deferred"] == "_LazyModule"  # mozanalysis imported it, nothing used it


def test_the_deferred_bigquery_library_works_when_used():
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETSTREAM_BIGQUERY_")}
    probe = (
        "import json, sys\nimport jetstream_assets.sql.queries\nimport mozanalysis.bq\n"
        "before = 'google.cloud.bigquery.client' in sys.modules\n"
        "from google.cloud import bigquery\nimport google.cloud.bigquery.job as job\n"
        "from google.cloud.bigquery.client import Client\n"
        "from google.api_core import exceptions\nfrom google.rpc import error_details_pb2\n"
        "same = bigquery.QueryJobConfig is job.QueryJobConfig and mozanalysis.bq.bigquery.Client is Client\n"
        "same = same and exceptions.error_details_pb2.ErrorInfo is error_details_pb2.ErrorInfo\n"
        "print(json.dumps({'before': before, 'same': same, 'after': 'google.cloud.bigquery.client' in sys.modules}))\n"
    )
    assert _python(probe, env) == {"before": False, "same": True, "after": True}


@pytest.mark.parametrize("engine", [{"JETSTREAM_BIGQUERY_PROJECT": "moz-fx-data-experiments"},
                                    {"JETSTREAM_GCS_BUCKET": "mozanalysis"}])
def test_nothing_is_deferred_when_a_google_engine_is_selected(engine):
    env = {**os.environ, **engine}
    probe = (
        "import json, sys\nimport jetstream_assets.sql.queries\n"
        "print(json.dumps([type(sys.modules[m]).__name__ for m in ('google.cloud.bigquery', 'google.rpc.status_pb2')]"
        " + ['google.protobuf' in sys.modules]))\n"
    )
    assert _python(probe, env) == ["module", "module", True]


def test_the_quantiles_are_scipy_stats_own_bit_for_bit():
    rng = np.random.default_rng(7)
    q = rng.uniform(0, 1, 500)
    a, b, df = rng.uniform(0.5, 5e4, 500), rng.uniform(0.5, 5e4, 500), rng.uniform(1, 5e4, 500)
    assert np.array_equal(st.beta.ppf(q, a, b), stats.beta.ppf(q, a, b))
    assert np.array_equal(st.t.ppf(q, df), stats.t.ppf(q, df))
    assert np.array_equal(st.norm.ppf(q), stats.norm.ppf(q))
    assert st.beta.ppf([0.025, 0.975], 3, 8).tolist() == stats.beta.ppf([0.025, 0.975], 3, 8).tolist()
    assert st.beta.mean(3, 8) == stats.beta.mean(3, 8)
    assert st.t.ppf(0.975, 7) == stats.t.ppf(0.975, 7) and st.norm.ppf(0.975) == stats.norm.ppf(0.975)
    assert st.gamma is stats.gamma  # any other distribution is scipy.stats' own


@pytest.mark.parametrize("observed", [{"control": 5000, "treatment": 5200}, {"a": 10, "b": 31, "c": 17}])
def test_the_srm_p_value_is_scipy_stats_chi_square(observed):
    ratios = {branch: 1.0 for branch in observed}
    result = sample_ratio_mismatch(observed, ratios)
    assert result.p_value == float(stats.chi2.sf(result.chi_square, result.degrees_of_freedom))

