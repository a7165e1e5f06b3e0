"""Renamed to jetstream_assets.eligibility; this alias keeps imports of branches written before the rename
working until they are merged. New code imports jetstream_assets.eligibility."""

from jetstream_assets.eligibility import *  # noqa: F401,F403
