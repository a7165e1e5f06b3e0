"""The home folder everything local lives under (JETSTREAM_HOME, default ./.jetstream_home). Kept free of heavy
imports: the CLI reads it before it knows which subcommand runs."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = ".jetstream_home"


def home_dir(home: str | os.PathLike | None = None) -> Path:
    return Path(home or os.environ.get("JETSTREAM_HOME", DEFAULT_HOME)).absolute()
