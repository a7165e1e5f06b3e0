"""A code location for daemon-backed tests: the analysis job without the sensors, so that only the runs a test
launches run (the real location's Experimenter sensor would start its own)."""

import dagster as dg

from jetstream_assets.jobs import ANALYSIS_ASSETS, analysis_job
from jetstream_assets.resources import build_resources

defs = dg.Definitions(assets=ANALYSIS_ASSETS, jobs=[analysis_job], resources=build_resources())
