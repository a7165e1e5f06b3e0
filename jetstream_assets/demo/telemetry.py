"""Synthetic telemetry in the shape of Mozilla's tables, with known per-branch effects.

Tables (BigQuery names; the local warehouse stores `<dataset>.<table>` as `<root>/<dataset>/<table>.parquet`):

- `telemetry.events`: Normandy `enroll` / `expose` / `unenroll` events, as mozanalysis' Normandy enrollments
  query and metric-hub's `normandy_events` data source read them.
- `telemetry.clients_daily`: one row per client and active day with the columns the demo metrics sum, the
  `experiments` map (slug -> branch, "simple" type) and environment fields (os, country, channel).
- `telemetry.clients_last_seen`: one row per client and active day with `days_seen_bits` and the segment
  fields (`is_regular_user_v3`, `is_new_or_resurrected_v3`, `activity_segments_v1`). The real table also
  carries a row for each of the 27 days after a client was last seen; the demo leaves those out because
  segments read the enrollment-date row, on which an enrolling client is always seen.

The simulation walks day by day over vectors of all clients (numpy, no per-client Python), so a million
clients over ~70 days take about a minute. Each client has a latent activity rate (regular, casual or
infrequent user), a heavy-tailed usage scale, a profile creation date and maybe a churn date. Each demo
experiment enrolls a share of clients (its bucket count / total) on the first day they are active within the
enrollment period, assigns a branch by the branch ratios and sends exposure events for a share of them.
From the enrollment date on, the client's values of a column are multiplied by the planted effect of its
branch; earlier data is never touched, so pre-enrollment periods show no difference between branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .experiments import (
    AD_CLICKS,
    ACTIVE_HOURS,
    EXPOSURE_SHARE,
    PLANTED_EFFECTS,
    SEARCH_COUNT,
    SEARCH_WITH_ADS,
    TAB_OPEN,
    URI_COUNT,
)
from .telemetry_tables import (
    CLIENTS_DAILY_SCHEMA,
    CLIENTS_LAST_SEEN_SCHEMA,
    EVENTS_SCHEMA,
    URI_COUNT_ALL,
    AtomicParquet,
    coded_strings,
    events_table,
    experiments_map,
    uuid_strings,
)

DATASET = "telemetry"
PRE_ENROLLMENT_DAYS = 35  # data before the earliest start: preenrollment_days28 needs 28 days
MAX_CLIENTS = 5_000_000  # the demo CLI stops at 1,000,000; benchmarks go to 5,000,000
_BITS_DAYS = 28
_PRIOR_27 = (1 << 27) - 1

# Columns a planted effect may multiply, and whether they hold counts (rounded stochastically so the
# expected value is exactly multiplied) or hours.
EFFECT_COLUMNS: dict[str, bool] = {
    ACTIVE_HOURS: False,
    "subsession_hours_sum": False,
    URI_COUNT: True,
    URI_COUNT_ALL: True,
    SEARCH_COUNT: True,
    SEARCH_WITH_ADS: True,
    AD_CLICKS: True,
    TAB_OPEN: True,
}

_COUNT_COLUMNS = (URI_COUNT, URI_COUNT_ALL, TAB_OPEN, SEARCH_COUNT, SEARCH_WITH_ADS, AD_CLICKS)
_OS = np.array(["Windows_NT", "Darwin", "Linux"])
_OS_P = [0.76, 0.16, 0.08]
_OS_VERSION = {"Windows_NT": "10.0", "Darwin": "23.6.0", "Linux": "6.8"}
_COUNTRY = np.array(["US", "DE", "FR", "GB", "CA", "BR", "IN", "JP", "PL", "IT", "ES", "MX", "Other"])
_COUNTRY_P = [0.27, 0.13, 0.08, 0.06, 0.04, 0.06, 0.07, 0.04, 0.04, 0.04, 0.04, 0.03, 0.10]
_CHANNEL = np.array(["release", "beta", "nightly", "esr"])
_CHANNEL_P = [0.90, 0.05, 0.02, 0.03]
_VERSION = np.array(["131.0", "132.0", "132.0.1", "133.0"])
_VERSION_P = [0.15, 0.45, 0.25, 0.15]
_ACTIVITY_SEGMENT = np.array(["infrequent_user", "casual_user", "regular_user", "core_user"])


class TelemetryError(ValueError):
    """The experiments or parameters given to the generator cannot produce telemetry."""


@dataclass
class _Experiment:
    slug: str
    start: int  # day index (0 = first simulated day, warm-up included)
    enrollment_last: int  # last day index on which clients enroll
    branches: list[str]
    ratios: np.ndarray
    share: float
    exposure_share: float
    experiment_type: str


def _parse_date(record: dict[str, Any], field: str) -> date | None:
    value = record.get(field)
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as e:
        raise TelemetryError(
            f"Experiment {record.get('slug')!r}: field {field} = {value!r} is not a YYYY-MM-DD date."
        ) from e


def _experiments(
    records: list[dict[str, Any]], first_day: date, yesterday: date
) -> list[_Experiment]:
    parsed = []
    for record in records:
        slug = record.get("slug")
        if not slug:
            raise TelemetryError(f"An experiment record has no slug: {record!r}")
        start = _parse_date(record, "startDate")
        if start is None:
            raise TelemetryError(f"Experiment {slug!r} has no startDate; give it one to generate telemetry.")
        enrollment_end = _parse_date(record, "enrollmentEndDate")
        if enrollment_end is None:
            if record.get("isEnrollmentPaused"):
                enrollment_end = start + timedelta(days=int(record.get("proposedEnrollment") or 7) - 1)
            else:
                enrollment_end = yesterday  # still enrolling
        enrollment_end = min(enrollment_end, yesterday)
        branches = record.get("branches") or []
        if not branches:
            raise TelemetryError(f"Experiment {slug!r} has no branches; add at least one {{slug, ratio}}.")
        ratios = np.array([float(b.get("ratio") or 1) for b in branches])
        bucket = record.get("bucketConfig") or {}
        share = float(bucket.get("count", 1000)) / float(bucket.get("total", 10000) or 10000)
        if not 0.0 <= share <= 1.0:
            raise TelemetryError(
                f"Experiment {slug!r}: bucketConfig count/total = {share} must be between 0 and 1."
            )
        parsed.append(
            _Experiment(
                slug=slug,
                start=(start - first_day).days,
                enrollment_last=(enrollment_end - first_day).days,
                branches=[b["slug"] for b in branches],
                ratios=ratios / ratios.sum(),
                share=share,
                exposure_share=EXPOSURE_SHARE.get(slug, 0.5),
                experiment_type="rollout" if record.get("isRollout") else "nimbus",
            )
        )
    return sorted(parsed, key=lambda e: e.slug)


def _stochastic_round(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Round so that the expectation is kept: a multiplied count stays unbiased."""
    return np.floor(x + rng.random(x.shape[0])).astype(np.int64)


def generate_telemetry(
    warehouse_root: Path,
    *,
    clients: int,
    today: date,
    experiments: list[dict],
    effects: dict = PLANTED_EFFECTS,
    seed: int = 0,
) -> dict[str, int]:
    """Write `telemetry.{events,clients_daily,clients_last_seen}` under `warehouse_root`; rows per table.

    Covers (earliest experiment start - 35 days) to yesterday, so every pre-enrollment period has data.
    The same arguments always give the same tables. Each file is replaced atomically.
    """
    if not isinstance(clients, int) or clients < 1 or clients > MAX_CLIENTS:
        raise TelemetryError(f"clients must be an integer from 1 to {MAX_CLIENTS:,}; got {clients!r}.")
    if not experiments:
        raise TelemetryError("No experiments given: the demo telemetry needs at least one to enroll clients.")
    yesterday = today - timedelta(days=1)
    starts = []
    for record in experiments:
        start = _parse_date(record, "startDate")
        if start is None:
            raise TelemetryError(
                f"Experiment {record.get('slug')!r} has no startDate; give it one to generate telemetry."
            )
        starts.append(start)
    data_start = min(starts) - timedelta(days=PRE_ENROLLMENT_DAYS)
    if data_start > yesterday:
        raise TelemetryError(f"All experiments start after {yesterday}; nothing to generate.")
    # Simulate 27 extra days first so days_seen_bits (and the v3 segments) are filled on the first day.
    first_day = data_start - timedelta(days=_BITS_DAYS - 1)
    n_days = (yesterday - first_day).days + 1
    emit_from = (data_start - first_day).days
    exps = _experiments(experiments, first_day, yesterday)
    for slug, branches in (effects or {}).items():
        for branch, columns in branches.items():
            unknown = set(columns) - set(EFFECT_COLUMNS)
            if unknown:
                raise TelemetryError(
                    f"Planted effect for {slug!r} branch {branch!r} names columns {sorted(unknown)} that the "
                    f"demo telemetry does not have; use some of {sorted(EFFECT_COLUMNS)}."
                )

    rng = np.random.default_rng(seed)
    # Effects draw from their own stream so that the same seed gives the same base telemetry with or
    # without planted effects: the difference between the two is exactly the effect.
    effect_rng = np.random.default_rng([seed, 1])
    n = clients
    root = Path(warehouse_root) / DATASET

    # -- clients ---------------------------------------------------------------------------------
    raw_ids = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    client_id = uuid_strings(raw_ids)
    sample_id = (raw_ids[:, 0].astype(np.int64) * 256 + raw_ids[:, 1]) % 100
    kind = rng.choice(3, size=n, p=[0.45, 0.30, 0.25])  # regular, casual, infrequent
    alpha = np.array([8.0, 3.0, 1.0])[kind]
    beta = np.array([1.5, 4.0, 6.0])[kind]
    p_active = rng.beta(alpha, beta)
    is_new = rng.random(n) < 0.18
    first_seen = np.where(
        is_new,
        rng.integers(0, n_days, size=n),
        -rng.integers(1, 3 * 365, size=n),
    )
    p_active = np.where(is_new, np.maximum(p_active, 0.3), p_active)
    churn_day = np.where(rng.random(n) < 0.12, rng.integers(1, n_days + 1, size=n), n_days + 1)
    churn_day = np.maximum(churn_day, first_seen + 1)
    hours_scale = rng.lognormal(np.log(1.1), 0.9, size=n)
    uri_rate = rng.lognormal(np.log(28.0), 0.5, size=n)
    search_rate = rng.gamma(0.8, 2.0, size=n)
    ads_share = rng.beta(4.0, 5.0, size=n)
    ad_ctr = rng.beta(0.3, 6.0, size=n)
    tab_rate = rng.lognormal(np.log(4.0), 0.8, size=n)
    os_code = rng.choice(len(_OS), size=n, p=_OS_P)
    country_code = rng.choice(len(_COUNTRY), size=n, p=_COUNTRY_P)
    channel_code = rng.choice(len(_CHANNEL), size=n, p=_CHANNEL_P)
    version_code = rng.choice(len(_VERSION), size=n, p=_VERSION_P)
    is_default = rng.random(n) < 0.38
    fxa = rng.random(n) < 0.27
    epoch = np.datetime64(first_day, "D")
    first_seen_date = (epoch + first_seen.astype("timedelta64[D]"))
    first_seen_arr = pa.array(first_seen_date)

    os_arr = coded_strings(os_code, _OS)
    os_version_arr = coded_strings(os_code, [_OS_VERSION[o] for o in _OS])
    country_arr = coded_strings(country_code, _COUNTRY)
    channel_arr = coded_strings(channel_code, _CHANNEL)
    version_arr = coded_strings(version_code, _VERSION)

    # -- enrollment plans --------------------------------------------------------------------------
    n_exp = len(exps)
    exp_slugs = [e.slug for e in exps]
    branch_names: list[str] = sorted({b for e in exps for b in e.branches})
    branch_index = {b: i for i, b in enumerate(branch_names)}
    eligible = np.zeros((n_exp, n), dtype=bool)
    branch_of = np.zeros((n_exp, n), dtype=np.int32)  # index into the experiment's branches
    branch_global = np.zeros((n_exp, n), dtype=np.int32)  # index into branch_names
    will_expose = np.zeros((n_exp, n), dtype=bool)
    expose_delay = np.zeros((n_exp, n), dtype=np.int64)
    for i, e in enumerate(exps):
        eligible[i] = rng.random(n) < e.share
        branch_of[i] = rng.choice(len(e.branches), size=n, p=e.ratios)
        branch_global[i] = np.array([branch_index[b] for b in e.branches], dtype=np.int32)[branch_of[i]]
        will_expose[i] = rng.random(n) < e.exposure_share
        expose_delay[i] = rng.geometric(0.55, size=n) - 1
    enroll_day = np.full((n_exp, n), -1, dtype=np.int64)
    exposed = np.zeros((n_exp, n), dtype=bool)
    unenrolled = np.zeros((n_exp, n), dtype=bool)
    # Effect multipliers per experiment: (column, branch-index array of multipliers per branch)
    effect_plan: list[tuple[int, str, np.ndarray, bool]] = []
    for i, e in enumerate(exps):
        planted = (effects or {}).get(e.slug, {})
        columns = sorted({c for b in planted.values() for c in b})
        for column in columns:
            multipliers = np.array([planted.get(b, {}).get(column, 1.0) for b in e.branches])
            effect_plan.append((i, column, multipliers, EFFECT_COLUMNS[column]))

    bits = np.zeros(n, dtype=np.int64)
    active_bits = np.zeros(n, dtype=np.int64)
    # every table is written one day at a time, so each Parquet row group holds one submission date and
    # a date filter skips the other days' row groups (as BigQuery's date partitions do)
    writers = {
        "clients_daily": AtomicParquet(root / "clients_daily.parquet", CLIENTS_DAILY_SCHEMA),
        "clients_last_seen": AtomicParquet(root / "clients_last_seen.parquet", CLIENTS_LAST_SEEN_SCHEMA),
        "events": AtomicParquet(root / "events.parquet", EVENTS_SCHEMA),
    }
    try:
        for d in range(n_days):
            day = first_day + timedelta(days=d)
            weekend = day.weekday() >= 5
            p = p_active * (0.85 if weekend else 1.0)
            active = (rng.random(n) < p) & (first_seen <= d) & (d < churn_day)
            active |= first_seen == d  # a new profile is seen on its creation day
            bits = ((bits << 1) | active) & ((1 << _BITS_DAYS) - 1)
            idx = np.flatnonzero(active)
            m = idx.size

            # Base values for the active clients of the day (before any experiment's effect).
            hours = hours_scale[idx] * rng.lognormal(-0.18, 0.6, size=m)
            values: dict[str, np.ndarray] = {
                ACTIVE_HOURS: hours,
                "subsession_hours_sum": hours * (1.3 + rng.exponential(1.5, size=m)),
                URI_COUNT: rng.poisson(uri_rate[idx] * hours).astype(np.float64),
                TAB_OPEN: rng.poisson(tab_rate[idx]).astype(np.float64),
                SEARCH_COUNT: rng.poisson(search_rate[idx]).astype(np.float64),
            }
            values[URI_COUNT_ALL] = values[URI_COUNT] + rng.poisson(0.06 * values[URI_COUNT])
            values[SEARCH_WITH_ADS] = rng.binomial(
                values[SEARCH_COUNT].astype(np.int64), ads_share[idx]
            ).astype(np.float64)
            values[AD_CLICKS] = rng.binomial(values[SEARCH_WITH_ADS].astype(np.int64), ad_ctr[idx]).astype(
                np.float64
            )
            pings = 1 + rng.poisson(2.0, size=m)

            # Enrollment, exposure and unenrollment of the day.
            day_events: list[tuple[np.ndarray, int, str, np.ndarray]] = []
            for i, e in enumerate(exps):
                if e.start <= d <= e.enrollment_last:
                    new = active & eligible[i] & (enroll_day[i] < 0)
                    enroll_day[i][new] = d
                    new_idx = np.flatnonzero(new)
                    if new_idx.size:
                        day_events.append((new_idx, i, "enroll", branch_global[i][new_idx]))
                enrolled_today = active & (enroll_day[i] >= 0)
                if not enrolled_today.any():
                    continue
                expose_now = (
                    enrolled_today & will_expose[i] & ~exposed[i] & (d >= enroll_day[i] + expose_delay[i])
                )
                again = enrolled_today & exposed[i] & (rng.random(n) < 0.15)
                exposed[i] |= expose_now
                ex_idx = np.flatnonzero(expose_now | again)
                if ex_idx.size:
                    day_events.append((ex_idx, i, "expose", branch_global[i][ex_idx]))
                leave = enrolled_today & ~unenrolled[i] & (d > enroll_day[i]) & (rng.random(n) < 0.002)
                unenrolled[i] |= leave
                un_idx = np.flatnonzero(leave)
                if un_idx.size:
                    day_events.append((un_idx, i, "unenroll", branch_global[i][un_idx]))

            # Planted effects: only from each client's own enrollment date on.
            for i, column, multipliers, is_count in effect_plan:
                ed = enroll_day[i][idx]
                treated = (ed >= 0) & (ed <= d)
                if not treated.any():
                    continue
                factor = np.where(treated, multipliers[branch_of[i][idx]], 1.0)
                if np.all(factor == 1.0):
                    continue
                values[column] = values[column] * factor
                if is_count:
                    changed = factor != 1.0
                    values[column][changed] = _stochastic_round(values[column][changed], effect_rng)

            qualified = np.zeros(n, dtype=bool)
            qualified[idx[(values[ACTIVE_HOURS] > 0) & (values[URI_COUNT] > 0)]] = True
            active_bits = ((active_bits << 1) | qualified) & ((1 << _BITS_DAYS) - 1)
            if d < emit_from:
                continue
            date_arr = pa.array(np.full(m, np.datetime64(day, "D")))
            take = pa.array(idx)
            exp_map = experiments_map(
                idx, d, enroll_day, branch_global, exp_slugs, branch_names, native=False
            )
            prior = (bits[idx] >> 1) & _PRIOR_27
            seen_days = np.bitwise_count(bits[idx])
            # activity_segments_v1: 1-6, 7-13, 14-20 or 21+ of the last 28 days seen
            activity = np.searchsorted([7, 14, 21], seen_days, side="right")
            common = {
                "submission_date": date_arr,
                "client_id": client_id.take(take),
                "sample_id": pa.array(sample_id[idx]),
                "normalized_channel": channel_arr.take(take),
                "country": country_arr.take(take),
                "os": os_arr.take(take),
            }
            writers["clients_daily"].write(
                pa.table(
                    {
                        **common,
                        "os_version": os_version_arr.take(take),
                        "app_version": version_arr.take(take),
                        "first_seen_date": first_seen_arr.take(take),
                        "is_default_browser": pa.array(is_default[idx]),
                        "fxa_configured": pa.array(fxa[idx]),
                        "pings_aggregated_by_this_row": pa.array(pings),
                        ACTIVE_HOURS: pa.array(np.round(values[ACTIVE_HOURS], 4)),
                        "subsession_hours_sum": pa.array(np.round(values["subsession_hours_sum"], 4)),
                        **{c: pa.array(values[c].astype(np.int64)) for c in _COUNT_COLUMNS},
                        "experiments": exp_map,
                    },
                    schema=CLIENTS_DAILY_SCHEMA,
                )
            )
            writers["clients_last_seen"].write(
                pa.table(
                    {
                        **common,
                        "first_seen_date": first_seen_arr.take(take),
                        "days_seen_bits": pa.array(bits[idx]),
                        "days_active_bits": pa.array(active_bits[idx]),
                        "is_regular_user_v3": pa.array(np.bitwise_count(prior) >= 14),
                        "is_new_or_resurrected_v3": pa.array(prior == 0),
                        "activity_segments_v1": coded_strings(activity, _ACTIVITY_SEGMENT),
                        "experiments": exp_map,
                    },
                    schema=CLIENTS_LAST_SEEN_SCHEMA,
                )
            )
            events: list[pa.Table] = []
            for ev_idx, i, method, branch_codes in day_events:
                events.append(
                    events_table(
                        ev_idx, method, exps[i], branch_codes, branch_names, day, d, rng,
                        client_id=client_id, sample_id=sample_id, channel=channel_arr, country=country_arr,
                        os_arr=os_arr, version=version_arr,
                        experiments=experiments_map(
                            ev_idx, d, enroll_day, branch_global, exp_slugs, branch_names, native=True
                        ),
                    )
                )
            if events:
                writers["events"].write(pa.concat_tables(events))
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.commit()
    return {f"{DATASET}.{name}": w.rows for name, w in writers.items()}


