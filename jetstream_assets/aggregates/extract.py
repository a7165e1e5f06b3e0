"""The aggregation of one submission date's main pings, as one BigQuery-dialect query over the ping table.

The pings stay JSON text in the warehouse and are parsed there (BigQuery's JSON functions; DuckDB's `json`
extension locally, through the `Warehouse`'s transpiler), so on BigQuery no Python touches a ping. Objects
are walked with one helper, `udf.json_entries(json_text)` -> ARRAY<STRUCT<key STRING, value STRING>> (the
value as JSON text), and arrays with `udf.json_items(json_text)` -> ARRAY<STRING>: DuckDB macros locally
(`sql/mozfun.py`), temporary SQL functions of the same query on BigQuery (`bigquery_script`).

The rules are the aggregates service's (python_mozaggregator):
- dimensions: the submission date; channel; version = the major number; build date = the build id's first
  8 characters (a build id that does not start with a date drops the ping); application; architecture; os;
  osVersion (Linux's cut to 3 characters); label (a keyed probe's key); child = the process:
  the ping's own payload is `parent`, `childPayloads` entries and `processes.content` are `content`,
  `processes.gpu` is `gpu`; scalars come from `processes.{parent,content,gpu}` only;
- a histogram needs an object `values`, an integer `sum` >= 0 and an integer `histogram_type`; its bucket keys
  must be integers (others are skipped), a value that is not an integer counts 0; `count` is the number of
  histograms aggregated, `sum` the sum of their sums;
- a count histogram (type 4) is `[[COUNT]]_<NAME>`: its `sum` is one value; simple measurements (numbers, or
  objects of numbers one level down) are `SIMPLE_MEASURES_<NAME>[_<SUB>]`; numeric scalars (booleans count
  1/0) `SCALARS_<NAME>`, a keyed scalar's keys in capitals as labels; each value >= 0 counts once into the
  bucket it falls in, `sum` adds the values;
- ignored: the keyed histograms in IGNORED_KEYED_HISTOGRAMS, scalars and keyed scalars whose name starts with
  `browser.engagement.navigation`, the private event-count keyed scalars, string scalars;
- use counters: when a payload's `TOP_LEVEL_CONTENT_DOCUMENTS_DESTROYED` (`CONTENT_DOCUMENTS_DESTROYED`) has
  an integer sum, a `USE_COUNTER2_*_PAGE` (`*_DOCUMENT`) histogram's bucket 0 becomes destroyed minus its
  bucket 1, and the histogram is skipped when bucket 1 is not a positive integer.
"""

from __future__ import annotations

import datetime as dt
import re

IGNORED_KEYED_HISTOGRAMS = ("MESSAGE_MANAGER_MESSAGE_SIZE", "VIDEO_DETAILED_DROPPED_FRAMES_PROPORTION", "SEARCH_COUNTS")
IGNORED_SCALAR_PREFIX = "browser.engagement.navigation"
IGNORED_KEYED_SCALARS = ("telemetry.event_counts", "telemetry.dynamic_event_counts")
PING_DIMENSIONS = ("build_date", "channel", "version", "application", "architecture", "os", "osVersion")
GROUP_COLUMNS = (*PING_DIMENSIONS, "metric", "label", "child")
MAX_VALUE = 1e18
_BUILD_DATE = r"^(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])"

# BigQuery: the helpers inlined (single statements, so a stage can write its destination table)
BIGQUERY_HELPERS = {
    "udf.json_entries": ("ARRAY(SELECT AS STRUCT k AS key, TO_JSON_STRING(j[k]) AS value "
                         "FROM (SELECT SAFE.PARSE_JSON({arg}, wide_number_mode => 'round') AS j), "
                         "UNNEST(JSON_KEYS(j, 1)) AS k WHERE JSON_TYPE(j) = 'object')"),
    "udf.json_items": "JSON_QUERY_ARRAY({arg})",
    "udf.json_valid": "(SAFE.PARSE_JSON({arg}, wide_number_mode => 'round') IS NOT NULL)",
}


def _text(value: str) -> str:
    """A SQL string literal of trusted text (names fixed in this module)."""
    if not re.fullmatch(r"[A-Za-z0-9_.\[\] ]*", value):
        raise ValueError(f"unexpected character in a SQL constant: {value!r}")
    return f"'{value}'"


def _q(expr: str, path: str) -> str:
    return f"CAST(JSON_QUERY({expr}, '{path}') AS STRING)"


def _v(expr: str, path: str) -> str:
    return f"JSON_VALUE({expr}, '{path}')"


def _int(expr: str, path: str) -> str:
    """An integer member (JSON integer literal only), else NULL."""
    return (f"IF(REGEXP_CONTAINS({_q(expr, path)}, r'^-?[0-9]{{1,18}}$'), "
            f"SAFE_CAST({_v(expr, path)} AS INT64), NULL)")


def _number(raw: str) -> str:
    """A JSON value (as JSON text) as a number: booleans 1/0, numbers as they are, anything else NULL."""
    return (f"CASE WHEN {raw} = 'true' THEN 1.0 WHEN {raw} = 'false' THEN 0.0 "
            f"WHEN REGEXP_CONTAINS({raw}, r'^-?[0-9][0-9.eE+-]*$') THEN SAFE_CAST({raw} AS FLOAT64) END")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(_text(v) for v in values)


def pings_sql(table_ref: str, day: dt.date, source_filter: str = "") -> str:
    """The day's pings with their dimensions (valid or not: `reason` says why one is dropped)."""
    # a range on the column itself: partition pruning on BigQuery, row-group pruning on Parquet
    where = (f"submission_timestamp >= TIMESTAMP '{day.isoformat()} 00:00:00+00' "
             f"AND submission_timestamp < TIMESTAMP '{day + dt.timedelta(days=1)} 00:00:00+00'")
    if source_filter:
        where += f" AND ({source_filter})"
    return f"""
docs AS (
  SELECT document_id, normalized_channel AS channel, metadata.uri.app_name AS application,
    metadata.uri.app_version AS app_version, metadata.uri.app_build_id AS app_build_id,
    IF(udf.json_valid(payload), payload, NULL) AS doc
  FROM `{table_ref}`
  WHERE {where}
),
parsed AS (
  SELECT document_id, channel, application,
    REGEXP_EXTRACT(app_version, r'^[^.]+') AS version,
    SUBSTR(app_build_id, 1, 8) AS build_date,
    REGEXP_CONTAINS(app_build_id, r'{_BUILD_DATE}') AS build_ok,
    {_v('doc', '$.application.architecture')} AS architecture,
    {_v('doc', '$.environment.system.os.name')} AS os,
    {_v('doc', '$.environment.system.os.version')} AS os_version,
    {_q('doc', '$.payload')} AS payload, doc IS NULL AS invalid
  FROM docs
),
pings AS (
  SELECT document_id, build_date, channel, version, application, architecture, os,
    CASE WHEN os = 'Linux' THEN SUBSTR(os_version, 1, 3) ELSE os_version END AS osVersion, payload,
    CASE
      WHEN invalid THEN 'payload is not valid JSON'
      WHEN payload IS NULL OR NOT STARTS_WITH(payload, '{{') THEN 'no payload object'
      WHEN channel IS NULL THEN 'no channel'
      WHEN application IS NULL THEN 'no application name'
      WHEN version IS NULL THEN 'no application version'
      WHEN build_ok IS NOT TRUE THEN 'build id does not start with a date'
      WHEN architecture IS NULL THEN 'no application.architecture'
      WHEN os IS NULL OR os_version IS NULL THEN 'no environment.system.os name and version'
    END AS reason
  FROM parsed
)"""


def pings_stage_sql(table_ref: str, day: dt.date, source_filter: str = "") -> str:
    """Stage 1, BigQuery SQL: the day's pings, one row each: document id, dimensions, `reason` (why the
    aggregation drops it; NULL for a good one) and the `payload` member as JSON text."""
    return (f"WITH {pings_sql(table_ref, day, source_filter).strip()}\n"
            f"SELECT document_id, {', '.join(PING_DIMENSIONS)}, reason, payload FROM pings")


def sections_sql(pings_ref: str) -> str:
    """Stage 2, BigQuery SQL: one row per (good ping, process source) with the JSON text of its histograms,
    keyed histograms, simple measurements, scalars and keyed scalars."""
    dims = ", ".join(PING_DIMENSIONS)
    null = "CAST(NULL AS STRING)"
    branch = ("SELECT {dims}, {child} AS child, {h} AS histograms, {k} AS keyed, {s} AS simple, {sc} AS scalars, "
              "{ks} AS keyed_scalars FROM {src}")
    branches = [
        branch.format(dims=dims, child="'parent'", h=_q("payload", "$.histograms"), k=_q("payload", "$.keyedHistograms"),
                      s=_q("payload", "$.simpleMeasurements"), sc=_q("payload", "$.processes.parent.scalars"),
                      ks=_q("payload", "$.processes.parent.keyedScalars"), src="valid"),
        *(branch.format(dims=dims, child=f"'{p}'", h=_q("payload", f"$.processes.{p}.histograms"),
                        k=_q("payload", f"$.processes.{p}.keyedHistograms"), s=null,
                        sc=_q("payload", f"$.processes.{p}.scalars"), ks=_q("payload", f"$.processes.{p}.keyedScalars"),
                        src="valid") for p in ("content", "gpu")),
        branch.format(dims=", ".join(f"v.{d}" for d in PING_DIMENSIONS), child="'content'", h=_q("c", "$.histograms"),
                      k=_q("c", "$.keyedHistograms"), s=_q("c", "$.simpleMeasurements"), sc=null, ks=null,
                      src="valid AS v, UNNEST(udf.json_items(" + _q("v.payload", "$.childPayloads") + ")) AS c"),
    ]
    return (f"WITH valid AS (SELECT * FROM `{pings_ref}` WHERE reason IS NULL)\n"
            + "\nUNION ALL\n".join(branches))


def entries_sql(sections_ref: str) -> str:
    """Stage 3, BigQuery SQL: one row per histogram ('h': its type, sum, values and layout) or per value ('v':
    simple measurement or scalar) of the stage-2 sections, the ignored probes left out."""
    dims = ", ".join(PING_DIMENSIONS)
    use_counter = (
        "CASE WHEN pages >= 0 AND STARTS_WITH(name, 'USE_COUNTER2_') AND ENDS_WITH(name, '_PAGE') THEN pages "
        "WHEN docs >= 0 AND STARTS_WITH(name, 'USE_COUNTER2_') AND ENDS_WITH(name, '_DOCUMENT') THEN docs END")
    null_int = "CAST(NULL AS INT64)"
    value_tail = (f"{null_int} AS htype, {null_int} AS hsum, CAST(NULL AS STRING) AS hist, "
                  f"{null_int} AS destroyed, {null_int} AS used")
    return f"""
SELECT {dims}, child, name AS metric, label, 'h' AS entry, CAST(NULL AS FLOAT64) AS value, htype, hsum, hist,
  destroyed, used
FROM (
  SELECT {dims}, child, name, label, hist,
    {_int('hist', '$.histogram_type')} AS htype,
    {_int('hist', '$.sum')} AS hsum,
    STARTS_WITH({_q('hist', '$.values')}, '{{') AS has_values,
    {use_counter} AS destroyed,
    CASE WHEN ({use_counter}) IS NOT NULL THEN {_int('hist', '$.values."1"')} END AS used
  FROM (
    SELECT {dims}, child, h.key AS name, '' AS label, h.value AS hist,
      COALESCE({_int('histograms', '$.TOP_LEVEL_CONTENT_DOCUMENTS_DESTROYED.sum')}, -1) AS pages,
      COALESCE({_int('histograms', '$.CONTENT_DOCUMENTS_DESTROYED.sum')}, -1) AS docs
    FROM `{sections_ref}`, UNNEST(udf.json_entries(histograms)) AS h
    UNION ALL
    SELECT {dims}, child, k.key AS name, e.key AS label, e.value AS hist, -1 AS pages, -1 AS docs
    FROM `{sections_ref}`, UNNEST(udf.json_entries(keyed)) AS k, UNNEST(udf.json_entries(k.value)) AS e
    WHERE k.key NOT IN ({_in(IGNORED_KEYED_HISTOGRAMS)})
  )
)
WHERE htype IS NOT NULL AND hsum >= 0 AND has_values AND (destroyed IS NULL OR used > 0)
UNION ALL
SELECT {dims}, child, metric, label, 'v' AS entry, value, {value_tail}
FROM (
  SELECT {dims}, child, CONCAT('SIMPLE_MEASURES_', UPPER(e.key)) AS metric, '' AS label, {_number('e.value')} AS value
  FROM `{sections_ref}`, UNNEST(udf.json_entries(simple)) AS e
  UNION ALL
  SELECT {dims}, child, CONCAT('SIMPLE_MEASURES_', UPPER(e.key), '_', UPPER(s.key)) AS metric, '' AS label,
    {_number('s.value')} AS value
  FROM `{sections_ref}`, UNNEST(udf.json_entries(simple)) AS e, UNNEST(udf.json_entries(e.value)) AS s
  UNION ALL
  SELECT {dims}, child, CONCAT('SCALARS_', UPPER(e.key)) AS metric, '' AS label, {_number('e.value')} AS value
  FROM `{sections_ref}`, UNNEST(udf.json_entries(scalars)) AS e
  WHERE NOT STARTS_WITH(e.key, {_text(IGNORED_SCALAR_PREFIX)})
  UNION ALL
  SELECT {dims}, child, CONCAT('SCALARS_', UPPER(k.key)) AS metric, UPPER(e.key) AS label,
    {_number('e.value')} AS value
  FROM `{sections_ref}`, UNNEST(udf.json_entries(keyed_scalars)) AS k, UNNEST(udf.json_entries(k.value)) AS e
  WHERE NOT STARTS_WITH(k.key, {_text(IGNORED_SCALAR_PREFIX)}) AND k.key NOT IN ({_in(IGNORED_KEYED_SCALARS)})
)
WHERE value >= 0 AND value < {MAX_VALUE}
"""


def aggregates_sql(entries_ref: str) -> str:
    """Stage 4, BigQuery SQL: per group of GROUP_COLUMNS one 'group' row (count, sum, and one of its
    histograms as `sample`, for its layout) and per non-empty bucket one 'cell' row (bucket key or value, n). A count histogram
    (type 4) counts as one value, its sum, under `[[COUNT]]_<NAME>`."""
    group = ", ".join(GROUP_COLUMNS)
    named = (f"SELECT {', '.join(PING_DIMENSIONS)}, "
             f"IF(htype = 4, CONCAT({_text('[[COUNT]]_')}, metric), metric) AS metric, label, child, "
             f"(entry = 'v' OR htype = 4) AS valued, IF(entry = 'v', value, CAST(hsum AS FLOAT64)) AS total, "
             f"hist, destroyed, used FROM `{entries_ref}`")
    return f"""
WITH entries AS ({named})
SELECT 'group' AS row_kind, {group}, COUNT(*) AS n_entries, SUM(total) AS total,
  MAX(IF(valued, NULL, hist)) AS sample, CAST(NULL AS FLOAT64) AS bucket, CAST(NULL AS INT64) AS n
FROM entries GROUP BY {group}
UNION ALL
SELECT 'cell' AS row_kind, {group}, CAST(NULL AS INT64) AS n_entries, CAST(NULL AS FLOAT64) AS total,
  CAST(NULL AS STRING) AS sample, bucket, n
FROM (
  SELECT {group}, CAST(SAFE_CAST(v.key AS INT64) AS FLOAT64) AS bucket,
    SUM(IF(REGEXP_CONTAINS(v.value, r'^[0-9]{{1,18}}$'), SAFE_CAST(v.value AS INT64), 0)) AS n
  FROM entries, UNNEST(udf.json_entries({_q('hist', '$.values')})) AS v
  WHERE NOT valued AND REGEXP_CONTAINS(v.key, r'^-?[0-9]{{1,10}}$') AND NOT (destroyed IS NOT NULL AND v.key = '0')
  GROUP BY {group}, bucket
  UNION ALL
  SELECT {group}, 0.0 AS bucket, SUM(destroyed - used) AS n FROM entries WHERE NOT valued AND destroyed IS NOT NULL
  GROUP BY {group}
  UNION ALL
  SELECT {group}, total AS bucket, COUNT(*) AS n FROM entries WHERE valued GROUP BY {group}, bucket
)
"""


def rejects_sql(pings_ref: str) -> str:
    """BigQuery SQL: the stage-1 pings the aggregation drops, per reason, with a few document ids."""
    return (f"SELECT reason, COUNT(*) AS pings, ARRAY_AGG(document_id ORDER BY document_id LIMIT 5) AS examples "
            f"FROM `{pings_ref}` WHERE reason IS NOT NULL GROUP BY reason ORDER BY reason")


def dates_sql(table_ref: str) -> str:
    """BigQuery SQL: every submission date in the ping table, with its pings."""
    return (f"SELECT FORMAT_DATE('%Y-%m-%d', DATE(submission_timestamp)) AS day, COUNT(*) AS pings "
            f"FROM `{table_ref}` GROUP BY day ORDER BY day")


def for_bigquery(sql: str) -> str:
    """The SQL with each helper call replaced by its BigQuery expression (JSON functions only)."""
    for name, template in BIGQUERY_HELPERS.items():
        while (start := sql.find(name + "(")) >= 0:
            depth, index = 0, start + len(name)
            for index in range(start + len(name), len(sql)):
                depth += {"(": 1, ")": -1}.get(sql[index], 0)
                if depth == 0:
                    break
            argument = sql[start + len(name) + 1:index]
            sql = sql[:start] + template.format(arg=argument) + sql[index + 1:]
    return sql
