"""The sandbox's cache of compiled templates: metric-config-parser builds a new environment for every
expression it renders, so the same `select_expression` is compiled once and its code reused, but each
template is bound to its own environment's globals and filters, and every bound still applies."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError

from jetstream_assets.config import sandbox
from jetstream_assets.config.sandbox import BoundedSandbox, TemplateLimitError


def _code(template) -> object:
    return template.root_render_func.__code__


def test_a_source_is_compiled_once_across_environments():
    source = "SUM({{ column }}) -- compiled once"
    first = BoundedSandbox().from_string(source)
    second = BoundedSandbox().from_string(source)
    assert _code(first) is _code(second)
    assert first.render(column="a") == "SUM(a) -- compiled once"
    assert second.render(column="b") == "SUM(b) -- compiled once"


def test_the_same_source_under_other_globals_renders_with_its_own_functions():
    """Two commits of metric-hub with different functions.toml: the same metric renders each one's."""
    source = "{{ agg_sum('x') }} / {{ agg_count('x') }}"
    old = BoundedSandbox()
    old.globals.update(agg_sum=lambda e: f"SUM({e})", agg_count=lambda e: f"COUNT({e})")
    new = BoundedSandbox()
    new.globals.update(agg_sum=lambda e: f"COALESCE(SUM({e}), 0)", agg_count=lambda e: f"COUNTIF({e} > 0)")
    assert old.from_string(source).render() == "SUM(x) / COUNT(x)"
    assert new.from_string(source).render() == "COALESCE(SUM(x), 0) / COUNTIF(x > 0)"
    assert old.from_string(source).render() == "SUM(x) / COUNT(x)"
    # globals passed to from_string (how metric-config-parser could pass them) are per template too
    env = BoundedSandbox()
    assert env.from_string("{{ g }}", globals={"g": "one"}).render() == "one"
    assert env.from_string("{{ g }}", globals={"g": "two"}).render() == "two"


def test_an_environment_with_other_filters_never_reuses_code_folded_with_the_first():
    """Jinja folds `'Ab'|shout` at compile time: the filter it used is part of the cache key."""
    upper, lower = BoundedSandbox(), BoundedSandbox()
    upper.filters["shout"] = str.upper
    lower.filters["shout"] = str.lower
    source = "{{ 'Ab'|shout }}"
    assert upper.from_string(source).render() == "AB"
    assert lower.from_string(source).render() == "ab"


def test_a_cached_template_still_counts_its_steps():
    source = "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}done"
    env = BoundedSandbox()
    assert env.from_string(source).render(n=3) == "done"  # compiled and cached
    cached = BoundedSandbox().from_string(source)
    assert _code(cached) is _code(env.from_string(source))
    with pytest.raises(TemplateLimitError):
        cached.render(n=1000)


def test_a_cached_template_is_still_sandboxed():
    source = "{{ value.__class__ }}"
    with pytest.raises(SecurityError):
        BoundedSandbox().from_string(source).render(value="x")
    with pytest.raises(SecurityError):
        BoundedSandbox().from_string(source).render(value="y")


def test_a_source_refused_once_is_refused_before_the_cache():
    source = "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}refused later"
    BoundedSandbox().from_string(source).render(n=2)
    with pytest.raises(TemplateLimitError):
        BoundedSandbox().from_string(source).render(n=1000)
    with pytest.raises(TemplateLimitError):
        BoundedSandbox().from_string(source)  # refused at once, though its code is cached


def test_the_cache_keeps_at_most_its_bound_of_templates_and_characters(monkeypatch):
    cache = sandbox._CompiledCache()
    monkeypatch.setattr(cache, "MAX_ENTRIES", 3)
    monkeypatch.setattr(cache, "MAX_CHARS", 100)
    monkeypatch.setattr(sandbox, "_COMPILED", cache)
    env = BoundedSandbox()
    for i in range(10):
        assert env.from_string(f"{{{{ {i} }}}}").render() == str(i)
    assert len(cache) == 3
    env.from_string("x" * 60 + "{{ 1 }}")
    env.from_string("y" * 60 + "{{ 2 }}")
    assert len(cache) == 1  # 134 characters of source would pass MAX_CHARS: the older one left
    env.from_string("z" * 200)  # larger than the whole cache: compiled, never kept
    assert len(cache) == 1
