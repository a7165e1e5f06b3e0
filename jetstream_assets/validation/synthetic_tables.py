"""Small synthetic telemetry tables shaped after the SQL that real metric-hub configs generate.

Schemas come from `synthetic_schemas`. Values are plausible, not realistic: strings are drawn from the
literals the SQL compares them with (so filters such as `event_category = 'pictureinpicture'` match some
rows) and every table carries the clients of the experiments given, who enroll through Normandy `enroll`
events in `telemetry.events` (desktop) or Glean `nimbus_events` (other apps). With `clients=0` the tables
are empty: enough for dry runs.

Typical use (the real-config tests and `validate-config --synthetic`)::

    queries = experiment_queries(resolved, SampleExperiment("my-exp", date(2024, 1, 1)))
    write_sample_tables(root, [q.sql for q in queries], [SampleExperiment("my-exp", ...)])
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from metric_config_parser.experiment import Branch, Experiment

from jetstream_assets.config.resolve import PLATFORMS
from jetstream_assets.validation.synthetic_schemas import Column, SampleTablesError, TableKey, table_schemas

# ----------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class SampleExperiment:
    """An experiment whose clients enroll in the sample tables."""

    slug: str
    start_date: dt.date
    enrollment_days: int = 7
    branches: tuple[str, ...] = ("control", "treatment")
    app_name: str = "firefox_desktop"

    @property
    def last_enrollment_date(self) -> dt.date:
        return self.start_date + dt.timedelta(days=self.enrollment_days - 1)

    def experiment(self, outcomes: Iterable[str] = (), segments: Iterable[str] = ()) -> Experiment:
        """The Experimenter record of this experiment (what `resolve_config` takes)."""
        platform = PLATFORMS[self.app_name]
        return Experiment(
            experimenter_slug=self.slug,
            normandy_slug=self.slug,
            type="v6",
            status="Live",
            branches=[Branch(slug=b, ratio=1) for b in self.branches],
            start_date=dt.datetime.combine(self.start_date, dt.time(), dt.UTC),
            end_date=None,
            proposed_enrollment=self.enrollment_days,
            enrollment_end_date=dt.datetime.combine(self.last_enrollment_date, dt.time(), dt.UTC),
            reference_branch=self.branches[0],
            is_high_population=False,
            app_name=self.app_name,
            app_id=platform.app_id,
            outcomes=list(outcomes),
            segments=list(segments),
        )


@dataclass
class _Client:
    client_id: str
    group_id: str
    sample_id: int
    enrollments: dict[str, tuple[dt.date, str]]  # slug -> (enrollment date, branch)


class _Filler:
    """Values for one row of one table."""

    def __init__(self, rng: random.Random, experiments: list[SampleExperiment]) -> None:
        self.rng = rng
        self.experiments = experiments

    def value(self, col: Column, client: _Client, day: dt.date):
        rng = self.rng
        if col.kind == "struct":
            if {f.name for f in col.fields} == {"key", "value"}:
                return self._pair(col, client, day)
            return {f.name: self.value(f, client, day) for f in col.fields}
        if col.kind == "list":
            return self._list(col, client, day)
        if col.kind == "id":
            return client.client_id
        if col.kind == "group_id":
            return client.group_id
        if col.kind == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128)))
        if col.kind == "date":
            return day
        if col.kind == "ts":
            return dt.datetime.combine(day, dt.time(rng.randrange(24), rng.randrange(60)))
        if rng.random() < 0.1:
            return None
        if col.kind == "bool":
            return rng.random() < 0.5
        if col.kind == "bits":
            return rng.getrandbits(28) | 1
        if col.kind == "int":
            return rng.choice((0, 0, 1, 2, 3, 5, 8, 13))
        if col.kind == "float":
            return round(rng.expovariate(0.5), 3)
        if col.kind == "hist":
            return self._histogram()
        if col.kind == "json":
            def text() -> str:
                return rng.choice(col.literals) if col.literals and rng.random() < 0.8 else "other"

            paths = [p.removeprefix("$.") for p in col.json_paths if p not in ("$", "")]
            if paths:
                return json.dumps({p: text() for p in paths})
            return json.dumps(text())
        if col.kind == "branch":
            return rng.choice(self.experiments[0].branches) if self.experiments else "control"
        # strings: the literals the SQL compares with, sometimes something else
        if col.literals and rng.random() < 0.85:
            return rng.choice(col.literals)
        return f"{col.name}_{rng.randrange(3)}"

    def _histogram(self) -> str:
        rng = self.rng
        values = {str(k): rng.randrange(0, 20) for k in rng.sample((0, 1, 2, 5, 10, 50, 100), 3)}
        total = sum(int(k) * v for k, v in values.items())
        return json.dumps(
            {"bucket_count": 10, "histogram_type": 0, "sum": total, "range": [1, 100], "values": values}
        )

    def _pair(self, col: Column, client: _Client, day: dt.date):
        by_name = {f.name: f for f in col.fields}
        return {
            "key": self.value(by_name["key"], client, day),
            "value": self.value(by_name["value"], client, day),
        }

    def _list(self, col: Column, client: _Client, day: dt.date):
        element = col.element
        assert element is not None
        if element.kind == "struct" and {f.name for f in element.fields} == {"key", "value"}:
            key = next(f for f in element.fields if f.name == "key")
            value = next(f for f in element.fields if f.name == "value")
            if value.kind == "struct" and any(f.name == "branch" for f in value.fields):
                return self._experiments_list(value, client, day)
            keys = list(key.literals) or (["a", "b"] if key.kind == "str" else [0, 1, 2])
            if key.kind == "int":
                keys = [int(k) for k in keys if re.fullmatch(r"-?\d+", str(k))] or [0, 1, 2]
            chosen = self.rng.sample(keys, k=min(len(keys), self.rng.randint(1, 3)))
            return [{"key": k, "value": self.value(value, client, day)} for k in chosen]
        return [self.value(element, client, day) for _ in range(self.rng.randint(0, 2))]

    def _experiments_list(self, value: Column, client: _Client, day: dt.date):
        out = []
        for slug, (enrolled, branch) in client.enrollments.items():
            if day >= enrolled:
                v = {"branch": branch}
                if any(f.name == "extra" for f in value.fields):
                    v["extra"] = {"type": "nimbus", "enrollment_id": client.client_id}
                out.append({"key": slug, "value": v})
        return out


def _clients(experiments: list[SampleExperiment], n: int, rng: random.Random) -> list[_Client]:
    clients = []
    for i in range(n):
        enrollments = {}
        for e in experiments:
            if rng.random() < 0.8:  # some clients never enroll
                day = e.start_date + dt.timedelta(days=rng.randrange(e.enrollment_days))
                enrollments[e.slug] = (day, e.branches[i % len(e.branches)])
        clients.append(
            _Client(
                client_id=str(uuid.UUID(int=rng.getrandbits(128))),
                group_id=str(uuid.UUID(int=rng.getrandbits(128))),
                sample_id=rng.randrange(100),
                enrollments=enrollments,
            )
        )
    return clients


def _names(columns: list[Column]) -> set[str]:
    return {c.name for c in columns}


def _not_enrolling(row: dict) -> dict:
    """A random row must not enroll anyone: enrollments come from `_normandy_rows` and
    `_events_stream_rows` only, so branches and dates are the experiments' own."""
    category = row.get("event_category")
    if category == "normandy" and row.get("event_method") in ("enroll", "expose", "exposure"):
        row["event_method"] = "unenroll"
    if category == "nimbus_events" and row.get("event_name") in ("enrollment", "exposure"):
        row["event_name"] = "unenrollment"
    return row


def _normandy_rows(columns: list[Column], clients: list[_Client], filler: _Filler) -> list[dict]:
    """Normandy enroll + expose events (desktop's enrollment source) for every enrollment."""
    rows = []
    for client in clients:
        for slug, (day, branch) in client.enrollments.items():
            for method in ("enroll", "expose"):
                row = {c.name: filler.value(c, client, day) for c in columns}
                row.update(
                    event_category="normandy", event_method=method, event_string_value=slug,
                    event_object="nimbus_experiment",
                )
                if "event_map_values" in row:
                    row["event_map_values"] = [
                        {"key": "branch", "value": branch},
                        {"key": "branchSlug", "value": branch},
                        {"key": "enrollmentId", "value": client.client_id},
                    ]
                if "sample_id" in row:
                    row["sample_id"] = client.sample_id
                rows.append(row)
    return rows


def _events_stream_rows(columns: list[Column], clients: list[_Client], filler: _Filler) -> list[dict]:
    """Glean `nimbus_events` enrollment + exposure events in an `events_stream` table (the enrollment
    source of Glean apps), with experiment and branch in the JSON `event_extra`."""
    rows = []
    for client in clients:
        for slug, (day, branch) in client.enrollments.items():
            for name in ("enrollment", "exposure"):
                row = {c.name: filler.value(c, client, day) for c in columns}
                row.update(event_category="nimbus_events", event_name=name,
                           event_extra=json.dumps({"experiment": slug, "branch": branch}))
                if "sample_id" in row:
                    row["sample_id"] = client.sample_id
                rows.append(row)
    return rows


def _glean_event_rows(columns: list[Column], clients: list[_Client], filler: _Filler) -> list[dict]:
    """Glean `nimbus_events` enrollment + exposure events in an `events` ping table (`UNNEST(events)`),
    as custom enrollment queries read them."""
    events_col = next(c for c in columns if c.name == "events")
    rows = []
    for client in clients:
        for slug, (day, branch) in client.enrollments.items():
            row = {c.name: filler.value(c, client, day) for c in columns}
            events = []
            for name in ("enrollment", "exposure"):
                event = filler.value(events_col.element, client, day) if events_col.element else {}
                if isinstance(event, dict):
                    event.update(category="nimbus_events", name=name)
                    if "extra" in event:
                        event["extra"] = [
                            {"key": "experiment", "value": slug},
                            {"key": "branch", "value": branch},
                        ]
                    events.append(event)
            row["events"] = events
            rows.append(row)
    return rows


@dataclass
class SampleTables:
    """What `write_sample_tables` wrote."""

    root: Path
    tables: dict[TableKey, Path]
    schemas: dict[TableKey, list[Column]]
    first_date: dt.date
    last_date: dt.date
    clients: int


def write_sample_tables(
    root: str | Path,
    sqls: Iterable[str],
    experiments: Iterable[SampleExperiment],
    *,
    first_date: dt.date | None = None,
    last_date: dt.date | None = None,
    clients: int = 40,
    seed: int = 0,
    exclude_datasets: Iterable[str] = ("mozanalysis",),
    schemas: dict[TableKey, list[Column]] | None = None,
) -> SampleTables:
    """Write `<root>/<dataset>/<table>.parquet` for every base table `sqls` read.

    Each client has a row per table on most days between `first_date` (default: 30 days before the
    earliest start, for pre-enrollment windows) and `last_date` (default: 28 days after the latest
    enrollment end), and enrolls in each experiment on a day of its enrollment period. With
    `clients=0` the tables are empty (enough for dry runs) and no experiment is needed. `schemas`
    (from `table_schemas`) replaces deriving them from `sqls`.
    """
    experiments = list(experiments)
    if not experiments and clients:
        raise SampleTablesError("give at least one SampleExperiment: sample tables carry its enrollments")
    rng = random.Random(seed)
    today = dt.date.today()
    first = first_date or min((e.start_date for e in experiments), default=today) - dt.timedelta(days=30)
    last = last_date or max((e.last_enrollment_date for e in experiments), default=today) + dt.timedelta(
        days=28
    )
    if last < first:
        raise SampleTablesError(f"last_date {last} is before first_date {first}")
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    schemas = dict(schemas) if schemas is not None else table_schemas(sqls, exclude_datasets)
    people = _clients(experiments, clients, rng)
    filler = _Filler(rng, experiments)
    written: dict[TableKey, Path] = {}
    for key, columns in schemas.items():
        if not columns:
            columns = [Column("client_id", "id", pa.string()), Column("submission_date", "date", pa.date32())]
            schemas[key] = columns
        rows = []
        for client in people:
            for day in days:
                if rng.random() < 0.6:
                    rows.append(_not_enrolling({c.name: filler.value(c, client, day) for c in columns}))
        names = _names(columns)
        if {"event_category", "event_method", "event_string_value"} <= names:
            rows += _normandy_rows(columns, people, filler)
        extra = next((c for c in columns if c.name == "event_extra"), None)
        if {"event_category", "event_name"} <= names and extra is not None and extra.kind == "json":
            rows += _events_stream_rows(columns, people, filler)
        events = next((c for c in columns if c.name == "events" and c.kind == "list"), None)
        if events is not None and events.element is not None and events.element.kind == "struct" and {
            "category", "name"
        } <= _names(events.element.fields):
            rows += _glean_event_rows(columns, people, filler)
        schema = pa.schema([pa.field(c.name, c.arrow) for c in columns])
        table = pa.Table.from_pylist(rows, schema=schema)
        path = Path(root) / key[0] / f"{key[1]}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)
        written[key] = path
    return SampleTables(Path(root), written, schemas, first, last, clients)


