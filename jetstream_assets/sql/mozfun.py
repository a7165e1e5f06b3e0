"""DuckDB macros standing in for the BigQuery persistent functions (`mozfun.*`, `udf.*`) that metric-hub
SQL calls. Names follow `transpile.udf_macro_name`: `mozfun.map.get_key` is `mozfun_map_get_key`.

Key/value data comes in two shapes locally: the demo telemetry stores maps as DuckDB MAP values, while
tables shaped like BigQuery's (`validation.synthetic_schemas`) keep BigQuery's ARRAY<STRUCT<key, value>>. DuckDB macros
cannot branch on an argument's type, but they can be overloaded on typed parameters, so `map.get_key` has
one overload per key/value list type (`KV_LIST_TYPES`) and a generic one for MAPs. A list whose type is
missing from `KV_LIST_TYPES` falls through to the MAP overload and fails to bind: add its type there.

Histograms are legacy-telemetry JSON strings (`{"bucket_count":..,"sum":..,"values":{"0":3,..}}`) or
their compact form (`bucket_count;histogram_type;sum;lo,hi;key:value,...`); `hist.extract` turns either
into BigQuery's STRUCT with `values` as a key-sorted ARRAY<STRUCT<key INT64, value INT64>>.
Semantics follow mozfun's documentation; bit-pattern helpers count bit 0 as the most recent day.
DuckDB 2 only accepts `lambda x: ...` lambdas (not `x -> ...`).
"""

from __future__ import annotations

import re

#: Value types of the key/value lists `map.get_key` accepts (keys are VARCHAR or BIGINT).
KV_VALUE_TYPES: tuple[str, ...] = (
    "VARCHAR",
    "BIGINT",
    "BOOLEAN",
    "DOUBLE",
    "STRUCT(branch VARCHAR)",
    "STRUCT(branch VARCHAR, extra STRUCT(type VARCHAR, enrollment_id VARCHAR))",
)
KV_KEY_TYPES: tuple[str, ...] = ("VARCHAR", "BIGINT")
KV_LIST_TYPES: tuple[str, ...] = tuple(
    f"STRUCT(key {k}, value {v})[]" for k in KV_KEY_TYPES for v in KV_VALUE_TYPES
)

_HIST_VALUES = "STRUCT(key BIGINT, value BIGINT)[]"
#: what `hist.extract` returns (BigQuery's histogram STRUCT)
HIST_TYPE = f'STRUCT(bucket_count BIGINT, histogram_type BIGINT, sum BIGINT, range BIGINT[], "values" {_HIST_VALUES})'

# A JSON histogram's `values` object, as a key-sorted list of (key, value) structs.
_JSON_VALUES = (
    "list_sort(list_transform("
    "map_entries(TRY_CAST(json_extract(h, '$.values') AS MAP(VARCHAR, BIGINT))), "
    "lambda e: {'key': TRY_CAST(e.key AS BIGINT), 'value': e.value}))"
)
# The compact form's `key:value,key:value` part.
_COMPACT_VALUES = (
    "list_sort(list_transform(list_filter(string_split(split_part(h, ';', 5), ','), lambda kv: kv <> ''), "
    "lambda kv: {'key': TRY_CAST(split_part(kv, ':', 1) AS BIGINT), "
    "'value': TRY_CAST(split_part(kv, ':', 2) AS BIGINT)}))"
)
_HIST_EXTRACT = (
    "(h) AS CASE "
    "WHEN h IS NULL OR trim(h) = '' THEN NULL "
    "WHEN starts_with(ltrim(h), '{') THEN {"
    "'bucket_count': TRY_CAST(json_extract_string(h, '$.bucket_count') AS BIGINT), "
    "'histogram_type': TRY_CAST(json_extract_string(h, '$.histogram_type') AS BIGINT), "
    "'sum': TRY_CAST(json_extract_string(h, '$.sum') AS BIGINT), "
    "'range': TRY_CAST(json_extract(h, '$.range') AS BIGINT[]), "
    f"'values': {_JSON_VALUES}}} "
    "ELSE {"
    "'bucket_count': TRY_CAST(split_part(h, ';', 1) AS BIGINT), "
    "'histogram_type': TRY_CAST(split_part(h, ';', 2) AS BIGINT), "
    "'sum': TRY_CAST(split_part(h, ';', 3) AS BIGINT), "
    "'range': TRY_CAST(string_split(split_part(h, ';', 4), ',') AS BIGINT[]), "
    f"'values': {_COMPACT_VALUES}}} END"
)


def _numeric_match(arg: str, pattern: str) -> str:
    """BigQuery's CAST(REGEXP_EXTRACT(arg, pattern) AS NUMERIC): NULL when nothing matches (DuckDB's
    regexp_extract gives '' there)."""
    return f"CAST(NULLIF(regexp_extract({arg}, '{pattern}', 1), '') AS DECIMAL(38, 9))"


#: udf.normalize_search_engine's families and the (lower-case) engine code prefixes of each
_SEARCH_ENGINES = (
    ("Google", ("google",)),
    ("DuckDuckGo", ("ddg", "duckduckgo")),
    ("Bing", ("bing",)),
    ("Yandex", ("yandex", "yasearch")),
    ("Amazon", ("amazon",)),
    ("Ebay", ("ebay",)),
)

#: Legacy `udf.*` names that BigQuery defines as plain wrappers of a `mozfun` function: the local engine
#: calls the mozfun macro under its own name (so `udf.get_key` keeps every `map.get_key` overload).
ALIASES: dict[str, str] = {
    "udf_get_key": "mozfun_map_get_key",
    "udf_json_extract_histogram": "mozfun_hist_extract",
    "udf_histogram_to_threshold_count": "mozfun_hist_threshold_count",
}

# `list_filter(...)[1]` is NULL when the key is absent, as mozfun returns NULL.
_GET_KEY_LIST = "list_filter(m, lambda e: e.key = k)[1].value"

MACROS: dict[str, str] = {
    # mozfun.map.get_key(map, key): the value for key, NULL when absent (MAPs + every KV list type)
    "mozfun_map_get_key": ", ".join(
        ["(m, k) AS m[k]"] + [f"(m {t}, k) AS {_GET_KEY_LIST}" for t in KV_LIST_TYPES]
    ),
    # sum of a keyed scalar's values (NULL for an empty or NULL map, as SUM over no rows)
    "mozfun_map_extract_keyed_scalar_sum": (
        "(m) AS list_sum(list_transform(m, lambda e: e.value))"
    ),
    # days since the most recent set bit (0 = seen today), NULL when never seen in the 28 days
    "mozfun_bits28_days_since_seen": (
        "(bits) AS CASE WHEN bits IS NULL OR (bits & 268435455) = 0 THEN NULL "
        "ELSE (SELECT min(i) FROM range(28) t(i) WHERE ((bits >> i) & 1) = 1) END"
    ),
    # whether any day in [start_offset, start_offset + n_bits) ago ... mozfun counts offsets as negative
    "mozfun_bits28_active_in_range": (
        "(bits, start_offset, n_bits) AS "
        "((bits >> (-start_offset - n_bits + 1)) & ((1 << n_bits) - 1)) > 0"
    ),
    # the 28-day pattern as a string of 0/1, oldest day first
    "mozfun_bits28_to_string": (
        "(bits) AS lpad(bin(bits & 268435455), 28, '0')"
    ),
    # ---- histograms --------------------------------------------------------------------------
    "mozfun_hist_extract": _HIST_EXTRACT,
    # observations in buckets whose lower bound is >= threshold (0 when none)
    "mozfun_hist_threshold_count": (
        "(h, threshold) AS COALESCE(list_sum(list_transform(list_filter("
        "mozfun_hist_extract(h).values, lambda e: e.key >= threshold), lambda e: e.value)), 0)"
    ),
    # several extracted histograms (a list, e.g. from ARRAY_AGG) summed bucket by bucket
    "mozfun_hist_merge": (
        "(hists) AS CASE WHEN len(list_filter(hists, lambda x: x IS NOT NULL)) = 0 THEN NULL ELSE {"
        "'bucket_count': list_max(list_transform(hists, lambda x: x.bucket_count)), "
        "'histogram_type': list_max(list_transform(hists, lambda x: x.histogram_type)), "
        "'sum': list_sum(list_transform(hists, lambda x: x.sum)), "
        "'range': list_max(list_transform(hists, lambda x: x.range)), "
        "'values': (SELECT list_sort(list({'key': u.key, 'value': u.value})) FROM ("
        "SELECT e.key AS key, sum(e.value)::BIGINT AS value "
        "FROM (SELECT unnest(flatten(list_transform(hists, lambda x: x.values))) AS e) "
        "GROUP BY e.key) u)} END"
    ),
    # for each requested fraction, the smallest bucket whose cumulative share reaches it; NULL for an
    # empty histogram (a subquery, not lambdas: DuckDB refuses subqueries such as hist.merge's in lambdas)
    "mozfun_hist_percentiles": (
        "(hist, percentiles) AS (SELECT CASE WHEN COALESCE(max(total), 0) = 0 THEN NULL "
        "ELSE list({'percentile': p, 'value': v} ORDER BY i) END FROM ("
        "SELECT pp.p::DOUBLE AS p, pp.i, min(c.key) FILTER (WHERE c.share >= pp.p) AS v, "
        "max(c.total) AS total "
        "FROM (SELECT unnest(percentiles) AS p, generate_subscripts(percentiles, 1) AS i) pp, "
        "(SELECT e.key AS key, sum(e.value) OVER (ORDER BY e.key) / sum(e.value) OVER () AS share, "
        "sum(e.value) OVER () AS total FROM (SELECT unnest(struct_extract(hist, 'values')) AS e)) c "
        "GROUP BY pp.p, pp.i))"
    ),
    # udf.keyed_histogram_get_sum(keyed histogram, key): the `sum` of that key's histogram (macros
    # cannot call the overloaded get_key: its overload is chosen when the body is bound)
    "udf_keyed_histogram_get_sum": (
        "(kh, target) AS mozfun_hist_extract(list_filter(kh, lambda e: e.key = target)[1].value).sum"
    ),
    # udf.histogram_max_key_with_nonzero_value(histogram): largest bucket holding observations
    "udf_histogram_max_key_with_nonzero_value": (
        "(h) AS list_max(list_transform(list_filter(mozfun_hist_extract(h).values, "
        "lambda e: e.value > 0), lambda e: e.key))"
    ),
    # ---- normalisation -----------------------------------------------------------------------
    # mozfun.norm.os: the OS family name
    "mozfun_norm_os": (
        "(os) AS CASE WHEN os IS NULL THEN NULL "
        "WHEN os ILIKE 'Windows%' OR os ILIKE 'WINNT%' THEN 'Windows' "
        "WHEN os ILIKE 'Darwin%' OR os ILIKE 'Mac%' THEN 'Mac' "
        "WHEN os ILIKE '%Android%' THEN 'Android' "
        "WHEN os ILIKE 'iOS%' OR os ILIKE 'iPhone%' OR os ILIKE 'iPad%' THEN 'iOS' "
        "WHEN os ILIKE '%Linux%' OR os ILIKE '%BSD%' OR os ILIKE 'SunOS%' OR os ILIKE 'Solaris%' "
        "THEN 'Linux' ELSE 'Other' END"
    ),
    # mozfun.norm.windows_version_info(os, os_version, build): 'Windows 10', 'Windows 11', ...
    "mozfun_norm_windows_version_info": (
        "(os, os_version, build) AS CASE "
        "WHEN os IS NULL OR NOT (os ILIKE 'Windows%' OR os ILIKE 'WINNT%') THEN NULL "
        "WHEN os_version = '10.0' AND build >= 22000 THEN 'Windows 11' "
        "WHEN os_version = '10.0' THEN 'Windows 10' "
        "WHEN os_version = '6.3' THEN 'Windows 8.1' "
        "WHEN os_version = '6.2' THEN 'Windows 8' "
        "WHEN os_version = '6.1' THEN 'Windows 7' "
        "WHEN os_version = '6.0' THEN 'Windows Vista' "
        "WHEN os_version IN ('5.1', '5.2') THEN 'Windows XP' "
        "ELSE NULL END"
    ),
    # Fenix/Focus build ids (client_info.app_build) to their build time: 8-digit `yDDDHHmm` (years
    # since 2018, day of year, hour, minute) or 10-digit, whose bits 3..19 count hours since 2014-12-28
    "mozfun_norm_fenix_build_to_datetime": (
        "(b) AS CASE "
        "WHEN length(b) = 8 AND TRY_CAST(b AS BIGINT) IS NOT NULL AND substr(b, 5, 2) < '24' "
        "AND substr(b, 7, 2) < '60' THEN make_timestamp(2018 + CAST(substr(b, 1, 1) AS BIGINT), 1, 1, "
        "CAST(substr(b, 5, 2) AS BIGINT), CAST(substr(b, 7, 2) AS BIGINT), 0) "
        "+ to_days(CAST(substr(b, 2, 3) AS INTEGER) - 1) "
        "WHEN length(b) = 10 AND TRY_CAST(b AS BIGINT) IS NOT NULL "
        "THEN TIMESTAMP '2014-12-28 00:00:00' "
        "+ to_hours(CAST((CAST(b AS BIGINT) & 1048575) >> 3 AS INTEGER)) "
        "ELSE NULL END"
    ),
    # mozfun.norm.extract_version(version, level): the 'major', 'minor' or 'patch' number of a dotted
    # version as NUMERIC ('16.03.1', 'minor' -> 3); NULL when that part is missing or the level unknown
    "mozfun_norm_extract_version": (
        "(version_string, extraction_level) AS CASE extraction_level "
        f"WHEN 'patch' THEN {_numeric_match('version_string', '^[0-9]+[.][0-9]+[.]([0-9]+)')} "
        f"WHEN 'minor' THEN {_numeric_match('version_string', '^[0-9]+[.]([0-9]+)')} "
        f"WHEN 'major' THEN {_numeric_match('version_string', '^([0-9]+)')} "
        "ELSE NULL END"
    ),
    # mozfun.norm.truncate_version(version, level): the version cut to 'major' or 'minor' as NUMERIC
    # ('5.1.5-ubuntu', 'minor' -> 5.1; '10', 'minor' -> 10); NULL for other levels and non-versions
    "mozfun_norm_truncate_version": (
        "(os_version, truncation_level) AS CASE truncation_level "
        f"WHEN 'minor' THEN {_numeric_match('os_version', '^([0-9]+[.]?[0-9]+)')} "
        f"WHEN 'major' THEN {_numeric_match('os_version', '^([0-9]+)')} "
        "ELSE NULL END"
    ),
    # udf.normalize_search_engine(engine): the partner family of an engine code, by case-insensitive
    # prefix ('google-b-d' -> 'Google', 'ddg' -> 'DuckDuckGo'); 'Other' for the rest, NULL stays NULL
    "udf_normalize_search_engine": (
        "(engine) AS CASE WHEN engine IS NULL THEN NULL "
        + "".join(
            f"WHEN {' OR '.join(f'starts_with(lower(engine), {prefix!r})' for prefix in prefixes)} THEN '{name}' "
            for name, prefixes in _SEARCH_ENGINES
        )
        + "ELSE 'Other' END"
    ),
    # udf.monetized_search(engine, country, distribution_id, submission_date): whether a search earns
    # revenue. Mozilla keeps the real agreements in a private project; the public definition (what a
    # project without access to it runs) answers FALSE for every search, and so does this one.
    "udf_monetized_search": "(engine, country, distribution_id, submission_date) AS FALSE",
    # ---- statistics --------------------------------------------------------------------------
    # most frequent element; ties go to the one seen last
    "mozfun_stats_mode_last": (
        "(xs) AS (SELECT x FROM (SELECT unnest(xs) AS x, generate_subscripts(xs, 1) AS i) "
        "WHERE x IS NOT NULL GROUP BY x ORDER BY count(*) DESC, max(i) DESC LIMIT 1)"
    ),
    # ---- JSON walking (the telemetry aggregates; aggregates/extract.py has BigQuery's versions) ----------
    # a JSON object's members as (key, value as JSON text); NULL for anything but an object
    "udf_json_entries": (
        "(s) AS list_transform(map_entries(TRY_CAST(TRY_CAST(s AS JSON) AS MAP(VARCHAR, JSON))), "
        "lambda e: {'key': e.key, 'value': CAST(e.value AS VARCHAR)})"
    ),
    "udf_json_valid": "(s) AS json_valid(s)",
    # a JSON array's items as JSON text; NULL for anything but an array
    "udf_json_items": (
        "(s) AS list_transform(TRY_CAST(TRY_CAST(s AS JSON) AS JSON[]), lambda e: CAST(e AS VARCHAR))"
    ),
}


def macro_statements(skip: frozenset[str] = frozenset()) -> list[str]:
    """CREATE MACRO statements for a fresh DuckDB connection (dependencies first), but those in `skip`."""
    return [macro_statement(name) for name in MACROS if name not in skip]


_WORD = re.compile(r"\w+")


def macro_words(sql: str) -> list[str]:
    """The macro names as they appear in DuckDB `sql`, in any case, lower-cased: each word starting
    `mozfun_` or `udf_` with no word character before it (a superset of the calls: a column could be named
    so too). Found with `str.find` in the lower-cased text: a case-insensitive pattern tried at every
    character took a tenth of the time over validate-config's DuckDB SQL."""
    low = sql.lower()
    found = []
    for prefix in ("mozfun_", "udf_"):
        at = low.find(prefix)
        while at >= 0:
            word = _WORD.match(low, at).group()
            if len(word) > len(prefix) and (at == 0 or not (low[at - 1].isalnum() or low[at - 1] == "_")):
                found.append(word)  # (`\b` before it: no word character)
            at = low.find(prefix, at + len(prefix))
    return found


#: the other macros each macro's body calls
_CALLS: dict[str, frozenset[str]] = {
    name: frozenset(n for n in macro_words(body) if n in MACROS and n != name)
    for name, body in MACROS.items()
}


def macros_called(sql: str) -> list[str]:
    """The macros DuckDB `sql` calls, and those their bodies call, dependencies first (`MACROS` order):
    a connection that compiles few queries creates only these (`macro_statement`)."""
    todo = [n for n in macro_words(sql) if n in MACROS]
    wanted: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(_CALLS[name])
    return [n for n in MACROS if n in wanted]


def macro_statement(name: str) -> str:
    return f"CREATE OR REPLACE MACRO {name}{MACROS[name]}"


def macro_names() -> frozenset[str]:
    """Functions the local engine provides, by macro name (for clear "unknown function" errors)."""
    return frozenset(MACROS) | frozenset(ALIASES)
