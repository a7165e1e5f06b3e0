"""An experiment resolves against private copies of what its platform's definitions define, copied entry by
entry when first asked for: each getter finds what metric-config-parser's own getter finds on the loaded
collection, as a copy of its own that the next experiment never sees. Within one experiment a data source
resolves once, to what it resolves to every time."""

import datetime as dt
import pickle
from pathlib import Path

import pytest
from metric_config_parser.config import ConfigCollection
from metric_config_parser.data_source import DataSourceDefinition

from jetstream_assets.config import PLATFORMS, load_metric_hub, scoped
from jetstream_assets.config.scoped import _KINDS, definition_entries, scoped_collection
from jetstream_assets.validation.resolution import stand_in_experiment

SAMPLE = Path("/work/shared/metric-hub-sample")


@pytest.fixture(scope="module")
def loaded():
    return load_metric_hub(SAMPLE)


def _slugs(loaded, app):
    """Every slug any platform's definitions define for each getter (other platforms' too: not found)."""
    everywhere = set()
    for other in PLATFORMS:
        everywhere |= set(definition_entries(loaded.configs, other))
    return sorted(everywhere | {(getter, "not_defined_anywhere") for getter in _KINDS})


@pytest.mark.parametrize("app", ["firefox_desktop", "fenix", "firefox_ios"])
def test_each_getter_finds_what_the_librarys_finds_as_a_private_copy(loaded, app):
    src = loaded.configs
    scoped = scoped_collection(loaded, stand_in_experiment("x", app, dt.date(2026, 1, 1)))
    found = 0
    for getter, slug in _slugs(loaded, app):
        original = getattr(ConfigCollection, getter)(src, slug, app)  # the library's own lookup
        mine = getattr(scoped, getter)(slug, app)
        if original is None:
            assert mine is None, (getter, slug)
            continue
        found += 1
        assert mine is not original and pickle.dumps(mine) == pickle.dumps(original), (getter, slug)
        assert getattr(scoped, getter)(slug, app) is mine  # asked again: the same copy, as from a whole copy
        assert getattr(scoped, getter)(slug, "some_other_app") is None
    assert found > 20


def test_an_entry_changed_by_one_experiment_is_not_seen_by_the_next(loaded):
    experiment = stand_in_experiment("x", "firefox_desktop", dt.date(2026, 1, 1))
    first, second = scoped_collection(loaded, experiment), scoped_collection(loaded, experiment)
    slug = next(s for g, s in definition_entries(loaded.configs, "firefox_desktop") if g == "get_metric_definition")
    mine = first.get_metric_definition(slug, "firefox_desktop")
    mine.analysis_bases = ["exposures"]  # what metric-config-parser does for an experiment's override
    assert second.get_metric_definition(slug, "firefox_desktop").analysis_bases != ["exposures"]
    assert loaded.configs.get_metric_definition(slug, "firefox_desktop").analysis_bases != ["exposures"]


def test_the_copy_holds_no_definitions_list_a_library_method_could_reach_around_the_getters(loaded):
    scoped = scoped_collection(loaded, stand_in_experiment("x", "firefox_desktop", dt.date(2026, 1, 1)))
    assert scoped.definitions == []


SLUGS = sorted(p.stem for p in (SAMPLE / "jetstream").glob("*.toml"))[:12]


def _resolved(loaded, slug):
    from jetstream_assets.config import resolve_config

    resolved = resolve_config(stand_in_experiment(slug, "firefox_desktop", dt.date(2026, 1, 1)), loaded,
                              as_validate=True)
    return resolved.config, [str(e) for e in resolved.errors]


def test_data_sources_resolved_once_per_experiment_resolve_as_every_time(loaded, monkeypatch):
    """With each data source resolved once per experiment, experiments resolve to what they resolve to when
    the library resolves it for every metric."""
    once = {slug: _resolved(loaded, slug) for slug in SLUGS}
    scoped.uninstall()
    try:
        every_time = {slug: _resolved(loaded, slug) for slug in SLUGS}
    finally:
        scoped.install()
    assert once == every_time


def test_a_data_source_resolves_once_per_experiment_and_a_failure_every_time(loaded, monkeypatch):
    calls = []

    def counted(self, spec, conf, configs):
        calls.append(self.name)
        if self.name == "broken":
            raise ValueError("broken")
        return object()

    monkeypatch.setattr(scoped, "_LIBRARY_RESOLVE", counted)
    experiment = stand_in_experiment("x", "firefox_desktop", dt.date(2026, 1, 1))
    first, second = scoped_collection(loaded, experiment), scoped_collection(loaded, experiment)
    definition = first.get_data_source_definition("clients_daily", "firefox_desktop")
    spec, conf = object(), object()
    a = DataSourceDefinition.resolve(definition, spec, conf, first)
    assert DataSourceDefinition.resolve(definition, spec, conf, first) is a and calls == ["clients_daily"]
    assert DataSourceDefinition.resolve(definition, object(), conf, first) is not a  # another spec
    assert DataSourceDefinition.resolve(definition, spec, conf, second) is not a  # another experiment
    assert DataSourceDefinition.resolve(definition, spec, conf, loaded.configs) is not a  # not a scoped one
    broken = DataSourceDefinition(name="broken")
    for _ in range(2):
        with pytest.raises(ValueError, match="broken"):
            DataSourceDefinition.resolve(broken, spec, conf, first)
    assert calls.count("broken") == 2


def test_the_librarys_whole_definitions_readers_are_refused_not_answered_empty():
    """A scoped collection's `definitions` list is empty (entries are copied through the getters): the library's
    readers of the whole list would answer "none" silently, so they raise instead."""
    import pytest

    from jetstream_assets.config.scoped import _ScopedCollection

    collection = _ScopedCollection()
    for reader, args in (("get_platform_definitions", ("firefox_desktop",)),
                         ("get_segments_for_app", ("firefox_desktop",))):
        with pytest.raises(NotImplementedError, match="one entry at a time"):
            getattr(collection, reader)(*args)
