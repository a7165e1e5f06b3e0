"""The demo world: synthetic telemetry shaped like Mozilla's tables, demo experiments with known per-branch
effects, and a demo metric-hub git repository. `run.py` (the `demo` command) puts them together."""

from .config_repo import create_config_repo
from .experiments import PLANTED_EFFECTS, demo_experiments, expected_uplift, write_experimenter_file
from .telemetry import generate_telemetry

__all__ = [
    "PLANTED_EFFECTS",
    "create_config_repo",
    "demo_experiments",
    "expected_uplift",
    "generate_telemetry",
    "write_experimenter_file",
]
