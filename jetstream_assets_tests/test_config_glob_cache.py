"""metric-config-parser's spec merges translate each glob key once and compare a key without wildcards as
text (`config/glob_cache.py`), with the same result: a wildcard key still overrides every metric it matches,
and a plain key the metric of that name only."""

import fnmatch
import re

from hypothesis import given, settings
from hypothesis import strategies as st

import metric_config_parser.metric as library_metric
from metric_config_parser.metric import MetricsSpec

import jetstream_assets.config  # noqa: F401 - installs the memoised translation
from jetstream_assets.config import glob_cache


def test_wildcard_merge_is_unchanged_and_translated_once():
    assert library_metric.fnmatch is not fnmatch
    translate = library_metric.fnmatch.translate
    translate.cache_clear()
    base = {"active_hours": {"select_expression": "1", "data_source": "d"},
            "active_days": {"select_expression": "2", "data_source": "d"}, "other": {"select_expression": "3"}}
    for _ in range(3):
        spec = MetricsSpec.from_dict({name: dict(table) for name, table in base.items()})
        spec.merge(MetricsSpec.from_dict({"active_*": {"friendly_name": "Active"}}))
        assert {k: v.friendly_name for k, v in spec.definitions.items()} == {
            "active_hours": "Active", "active_days": "Active", "other": None}
    info = translate.cache_info()
    assert info.misses == 1 and info.hits == 8  # 3 merges x 3 keys, one translation


def test_uninstall_gives_the_library_its_own_fnmatch_back():
    glob_cache.uninstall()
    try:
        assert library_metric.fnmatch is fnmatch and library_metric.re is re
    finally:
        glob_cache.install()
    assert library_metric.fnmatch is not fnmatch and library_metric.re is not re


NAMES = st.text(alphabet="ab_*?[]!-.\\\n", max_size=6)


@settings(max_examples=3000)
@given(NAMES, NAMES)
def test_a_key_matches_a_glob_as_the_compiled_translation_matches_it(glob, key):
    """What the library asks: `re.compile(fnmatch.translate(glob)).fullmatch(key)`, as a truth value."""
    mine = library_metric.re.compile(library_metric.fnmatch.translate(glob)).fullmatch(key)
    assert bool(mine) == bool(re.compile(fnmatch.translate(glob)).fullmatch(key))


def test_plain_names_are_compared_as_text_and_globs_compiled():
    assert type(library_metric.re.compile(library_metric.fnmatch.translate("active_hours"))).__name__ == "_Exactly"
    assert isinstance(library_metric.re.compile(library_metric.fnmatch.translate("active_*")), re.Pattern)
    assert library_metric.re.compile("(?s:a)\\Z").fullmatch("a")  # any other pattern: compiled as it is
