"""metric-config-parser's per-metric deep copy of statistic parameters and dedent of names and descriptions
(`config/fast_paths.py`) return what `copy.deepcopy` and `textwrap.dedent` return, for any input."""

import copy
import datetime as dt
import textwrap

import metric_config_parser.metric as library_metric
import metric_config_parser.segment as library_segment
from hypothesis import given, settings
from hypothesis import strategies as st

import jetstream_assets.config  # noqa: F401 - installs the fast paths
from jetstream_assets.config import fast_paths

ATOMS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
PLAIN = st.recursive(ATOMS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                         max_size=4), max_leaves=20)


@settings(max_examples=1000)
@given(PLAIN)
def test_plain_data_copies_as_deepcopy_copies_it(data):
    mine, theirs = fast_paths.deepcopy(data), copy.deepcopy(data)
    assert mine == theirs and repr(mine) == repr(theirs)  # same values, same key order
    if isinstance(data, dict | list):
        assert mine is not data


def test_containers_are_new_at_every_level_and_anything_else_goes_to_deepcopy():
    params = {"pre_treatments": [{"name": "remove_nulls"}], "covariate_adjustment": {"period": "preenrollment_week"}}
    mine = fast_paths.deepcopy(params)
    mine["pre_treatments"][0].pop("name")  # what the library does with its copy
    assert params["pre_treatments"][0] == {"name": "remove_nulls"}
    assert fast_paths.deepcopy({}) == {} and fast_paths.deepcopy({}) is not fast_paths.deepcopy({})
    shared = [1]
    twice = fast_paths.deepcopy({"a": shared, "b": shared})
    assert twice["a"] is twice["b"] and twice["a"] is not shared  # kept shared, as deepcopy does
    loop: list = []
    loop.append(loop)
    copied = fast_paths.deepcopy(loop)
    assert copied[0] is copied
    dated = {"start": dt.date(2026, 1, 1), "t": (1, [2])}
    assert fast_paths.deepcopy(dated) == dated and fast_paths.deepcopy(dated)["t"][1] is not dated["t"][1]


TEXT = st.text(alphabet=" \t\nab\r\x0b\xa0", max_size=40)


@settings(max_examples=2000)
@given(TEXT)
def test_text_dedents_as_textwrap_dedents_it(text):
    assert fast_paths.dedent(text) == textwrap.dedent(text)


def test_descriptions_as_metric_hub_writes_them():
    for text in ["Active hours", "", "line one\nline two\n", "\n    indented\n    text\n", "a\n  \nb", " lead",
                 "a\n\tb", "a\n\n", "  \n  x"]:
        assert fast_paths.dedent(text) == textwrap.dedent(text), text


def test_installed_in_the_library_and_uninstall_gives_its_own_back():
    assert library_metric.dedent is fast_paths.dedent and library_segment.dedent is fast_paths.dedent
    assert library_metric.copy.deepcopy is fast_paths.deepcopy
    fast_paths.uninstall()
    try:
        assert library_metric.dedent is textwrap.dedent and library_metric.copy is copy
    finally:
        fast_paths.install()
    assert library_metric.copy.deepcopy is fast_paths.deepcopy
