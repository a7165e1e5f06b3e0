"""The demo world: synthetic telemetry shaped like Mozilla's tables, demo experiments with known per-branch
effects, and a demo metric-hub git repository. `run.py` (the `demo` command, added to the CLI by `command.py`)
puts them together.

The names below load on first use (PEP 562), so `jetstream-assets demo --help` answers without numpy and the
generators."""

import importlib

_EXPORTS = {
    "PLANTED_EFFECTS": "experiments",
    "create_config_repo": "config_repo",
    "demo_experiments": "experiments",
    "expected_uplift": "experiments",
    "generate_telemetry": "telemetry",
    "write_experimenter_file": "experiments",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
