"""Mozilla Jetstream experiment analysis as a Dagster asset graph."""

import logging
import os

from jetstream_assets.lazy_imports import defer_unused_engines

# Statistics multiply small matrices; OpenBLAS' thread pool spins for each of them, which on a machine
# running DuckDB and other steps costs more than it saves (bootstrap_mean: ~25% less CPU with one thread).
# Set before numpy loads (it reads this once); an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Google client libraries the local engines never use load when first used, not with mozanalysis
# (lazy_imports.py).
defer_unused_engines()

# Analysis problems are reported in materialization metadata (and the monitoring logs); outside Dagster
# nothing is printed unless the application configures logging.
logging.getLogger("jetstream_assets").addHandler(logging.NullHandler())
