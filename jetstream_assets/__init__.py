"""Mozilla Jetstream experiment analysis as a Dagster asset graph."""

import logging

# Analysis problems are reported in materialization metadata (and the monitoring logs); outside Dagster
# nothing is printed unless the application configures logging.
logging.getLogger("jetstream_assets").addHandler(logging.NullHandler())
