"""Renamed to jetstream_assets.planner; this alias keeps imports of branches written before the rename
working until they are merged. New code imports jetstream_assets.planner."""

from jetstream_assets.planner import *  # noqa: F401,F403
