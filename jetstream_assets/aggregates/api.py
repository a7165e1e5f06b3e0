"""The telemetry aggregates HTTP API (the aggregates service's endpoints and replies), as a Starlette app.

    GET /aggregates_by/{build_id|submission_date}/channels/
    GET /aggregates_by/{family}/channels/{channel}/dates/
    GET /filters/?channel=&version=
    GET /aggregates_by/{family}/channels/{channel}/?version=&dates=&metric=[&application=&architecture=
        &os=&osVersion=&label=&child=]
    GET /status

Every reply is JSON. Successful replies are cacheable (`Cache-Control: public, max-age`, an `ETag`, and 304
for a matching `If-None-Match`); errors are `{"status", "error"}` with `Cache-Control: no-store`. Bad input
is always a 4xx naming the parameter; a store that cannot be read is a 503. Endpoints are synchronous:
Starlette runs them in its thread pool, so slow reads never block the event loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jetstream_assets.aggregates.compute import AGGREGATES_DATASET, FAMILIES, parse_table_name
from jetstream_assets.aggregates.dashboard import dashboard
from jetstream_assets.aggregates.probes import COUNT_PREFIX, ProbeRegistry
from jetstream_assets.aggregates.rules import (
    RELEASE_CHANNEL,
    RequestError,
    Rules,
    check_child,
    check_params,
    check_value,
    check_version,
    parse_dates,
    require,
)
from jetstream_assets.aggregates.store import AggregateStore, MetricQuery, StoreError

logger = logging.getLogger("jetstream_assets.aggregates")
DEFAULT_CACHE_SECONDS = 3600
DEFAULT_PORT = 8000
_CORS = {"Access-Control-Allow-Origin": "*"}
IGNORED_METRICS = ("SEARCH_COUNTS",)  # never served, as the service


def _json(payload, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()
    return Response(body, status_code=status, media_type="application/json", headers={**_CORS, **(headers or {})})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"status": status, "error": message}, status, {"Cache-Control": "no-store", **(headers or {})})


class AggregatesApi:
    """Request handling over a store, the metric rules and the probe definitions."""

    def __init__(self, store: AggregateStore, rules: Rules, registry: ProbeRegistry, cache_seconds: int):
        self.store = store
        self.rules = rules
        self.registry = registry
        self.cache_control = f"public, max-age={int(cache_seconds)}"

    # -- helpers -----------------------------------------------------------------------------------
    def _ok(self, request: Request, payload) -> Response:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()
        # weak: the same tag for the gzip and plain encodings of one reply
        etag = 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {**_CORS, "Cache-Control": self.cache_control, "ETag": etag}
        tags = [t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")]
        if etag.removeprefix("W/") in tags or "*" in tags:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @staticmethod
    def _params(request: Request, endpoint: str) -> dict[str, str]:
        return check_params(request.url.path, request.query_params.multi_items(), endpoint)

    @staticmethod
    def _family(request: Request) -> str:
        family = request.path_params["prefix"]
        if family not in FAMILIES:
            raise RequestError(
                404, f"Unknown aggregates family {family[:60]!r}; use /aggregates_by/build_id/ or "
                     "/aggregates_by/submission_date/.")
        return family

    def _channel(self, family: str, channel: str) -> str:
        check_value("channel", channel)
        if not self.store.has_channel(family, channel):
            known = ", ".join(self.store.channels(family)) or "none yet"
            raise RequestError(404, f"Unknown channel {channel[:60]!r} in {family} aggregates (channels: {known}).")
        return channel

    def _metric_unavailable(self, metric: str, channel: str) -> RequestError:
        # one message for blocked, non-public and undefined metrics: the reply never tells them apart
        return RequestError(
            404, f"Metric {metric[:100]!r} is not available on channel {channel[:60]!r}; "
                 "/filters/?channel=...&version=... lists the metrics of a channel and version.")

    # -- endpoints ---------------------------------------------------------------------------------
    def status(self, request: Request) -> Response:
        return Response("OK", media_type="text/plain", headers={**_CORS, "Cache-Control": "no-store"})

    def channels(self, request: Request) -> Response:
        family = self._family(request)
        self._params(request, "channels")
        channels = self.store.channels(family)
        if not self.rules.allow_all_release_metrics:  # as the service: release is not listed
            channels = [c for c in channels if c != RELEASE_CHANNEL]
        return self._ok(request, channels)

    def dates(self, request: Request) -> Response:
        family = self._family(request)
        self._params(request, "dates")
        channel = self._channel(family, request.path_params["channel"])
        return self._ok(request, self.store.dates(family, channel))

    def filters(self, request: Request) -> Response:
        values = self._params(request, "filters")
        require(values, ("channel", "version"))
        channel = check_value("channel", values["channel"])
        version = check_version(values["version"])
        if not any(self.store.has_channel(f, channel) for f in FAMILIES):
            raise RequestError(404, f"Unknown channel {channel[:60]!r}.")
        if version not in self.store.versions(channel):
            raise RequestError(404, f"No aggregates for version {version} on channel {channel!r}.")
        options = self.store.filter_options(channel, version)
        metrics = sorted({m.removeprefix(COUNT_PREFIX) for m in options.get("metric", [])})
        reply = {
            "metric": [m for m in metrics if self.rules.allowed(channel, m)],
            "application": options.get("application", []),
            "architecture": options.get("architecture", []),
            "os": options.get("os_pair", []),
            "child": options.get("child", []),
        }
        return self._ok(request, {k: v for k, v in reply.items() if v})

    def aggregates(self, request: Request) -> Response:
        family = self._family(request)
        values = self._params(request, "aggregates")
        require(values, ("dates", "version", "metric"))
        for name, value in values.items():
            if name != "dates":  # a long list of dates is fine; parse_dates bounds it
                check_value(name, value)
        dates = parse_dates(values["dates"])
        version = check_version(values["version"])
        metric = values["metric"]
        filters = []
        for name in ("application", "architecture", "os", "osVersion", "label", "child"):
            if name in values:
                value = check_child(values[name]) if name == "child" else values[name]
                if name == "os" and "," in value:  # the "name,version" pairs /filters/ lists
                    value, os_version = value.split(",", 1)
                    filters.append(("osVersion", os_version))
                filters.append((name, value))
        channel = check_value("channel", request.path_params["channel"])
        if not self.rules.allowed(channel, metric) or metric in IGNORED_METRICS:
            raise self._metric_unavailable(metric, channel)
        channel = self._channel(family, channel)
        if version not in self.store.versions(channel):
            raise RequestError(404, f"No aggregates for version {version} on channel {channel!r}.")
        found = None
        if not metric.startswith(COUNT_PREFIX):  # count histograms are stored as [[COUNT]]_<NAME>
            for name in (metric, COUNT_PREFIX + metric):
                query = MetricQuery(family, channel, version, name, dates, tuple(filters))
                found = self.store.aggregates(query)
                if found is not None:
                    break
        if found is None:
            raise RequestError(
                404, f"No {family} aggregates of {metric[:100]!r} for version {version} on channel {channel!r} for "
                     "these dates and filters; /filters/?channel=...&version=... lists the metrics.")
        return self._ok(request, {"buckets": found.buckets, "data": found.data, "kind": found.kind,
                                  "description": self.registry.description(metric)})


def create_app(
    store: AggregateStore,
    rules: Rules | None = None,
    registry: ProbeRegistry | None = None,
    cache_seconds: int | None = None,
) -> Starlette:
    """The ASGI app; `rules` default to the environment's (METRICS_BLACKLIST, ...); `registry` gives
    descriptions (none: histograms have none, scalars one naming them)."""
    if cache_seconds is None:
        cache_seconds = int(os.environ.get("AGGREGATES_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))
    api = AggregatesApi(store, rules if rules is not None else Rules.from_env(), registry or ProbeRegistry(),
                        cache_seconds)

    async def request_error(request: Request, exc: RequestError) -> Response:
        return _error(exc.status, exc.message, exc.headers)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = {404: f"No such endpoint: {request.url.path[:100]!r}.",
                   405: f"Method {request.method} is not allowed here; use GET."}.get(exc.status_code, exc.detail)
        return _error(exc.status_code, message, dict(exc.headers or {}))

    async def store_error(request: Request, exc: StoreError) -> Response:
        logger.error("Aggregates store error on %s: %s", request.url.path, exc)
        return _error(503, f"The aggregates cannot be read right now: {exc}")

    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("Unexpected error on %s", request.url.path)
        return _error(500, "Internal error; the service log has the details.")

    routes = [
        Route("/", dashboard),
        Route("/status", api.status),
        Route("/filters/", api.filters),
        Route("/aggregates_by/{prefix}/channels/", api.channels),
        Route("/aggregates_by/{prefix}/channels/{channel}/dates/", api.dates),
        Route("/aggregates_by/{prefix}/channels/{channel}/", api.aggregates),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(GZipMiddleware, minimum_size=1024)],
        exception_handlers={RequestError: request_error, HTTPException: http_error, StoreError: store_error,
                            Exception: unexpected},
    )


def serve(home=None, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
    """`jetstream-assets serve`: the API over the home's aggregates (or BigQuery's, when configured)."""
    import dagster as dg
    import uvicorn

    from jetstream_assets.resources import build_warehouse, home_dir

    if not 1 <= int(port) <= 65535:
        raise ValueError(f"--port must be between 1 and 65535 (got {port}).")
    rules = Rules.from_env()  # a malformed METRICS_BLACKLIST stops the start, not a request
    with dg.build_resources({"warehouse": build_warehouse(home_dir(home))}) as resources:
        warehouse = resources.warehouse
        store = AggregateStore.for_warehouse(warehouse)
        app = create_app(store, rules, ProbeRegistry.for_home(home_dir(home)))
        tables = [t for t in warehouse.list_tables(dataset=AGGREGATES_DATASET) if parse_table_name(t)]
        print(f"Telemetry aggregates API on http://{host}:{port}/aggregates_by/build_id/channels/ "
              f"({len(tables)} aggregates tables in the {AGGREGATES_DATASET} dataset)", flush=True)
        if not tables:
            print("  no aggregates yet: run the demo, or materialize the telemetry_aggregates job's dates", flush=True)
        uvicorn.run(app, host=host, port=int(port), log_level="warning")
