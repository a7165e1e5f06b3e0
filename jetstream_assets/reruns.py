"""Split into jetstream_assets.run_tags (run tags, the tagging run coordinator) and
jetstream_assets.stale_outputs (a full rerun's purge); this alias keeps imports of branches written before
the split working until they are merged. New code imports those modules."""

from jetstream_assets.run_tags import *  # noqa: F401,F403
from jetstream_assets.stale_outputs import *  # noqa: F401,F403
