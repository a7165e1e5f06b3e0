"""The aggregates service's rules: which metrics may be shown, and which query parameters are accepted.

From the environment, as the aggregates service reads them:
- METRICS_BLACKLIST: regular expressions; a metric matching one (whole name) is never shown, on any
  channel. Either a JSON list (`["USER_DATA.*", "GC_MS"]`) or names separated by commas.
- PUBLIC_RELEASE_METRICS: metrics shown on the release channel (JSON list or comma-separated).
- ALLOW_ALL_RELEASE_METRICS: "True" shows every release metric not blacklisted.
Release-channel metrics are hidden unless one of the last two allows them.

Parameters: an unknown query parameter gets 405 with the cleaned URL (unknown parameters removed) in the
`Allow` header; a missing one 404; a malformed one 400. Values are checked here before anything reads data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

RELEASE_CHANNEL = "release"
MAX_DATES = 366
MAX_VALUE_LENGTH = 200
# the `child` dimension: the process; upstream's older `true` (content) and `false` (parent) are accepted
CHILD_VALUES = ("parent", "content", "gpu")
CHILD_ALIASES = {"true": "content", "false": "parent"}
FILTER_PARAMS = ("application", "architecture", "os", "osVersion", "label", "child")
ENDPOINT_PARAMS: dict[str, tuple[str, ...]] = {
    "channels": (),
    "dates": (),
    "filters": ("channel", "version"),
    "aggregates": ("version", "dates", "metric", *FILTER_PARAMS),
}
_VERSION = re.compile(r"[0-9]{1,6}")
_DATE = re.compile(r"[0-9]{8}")


class RulesError(ValueError):
    """A rule in the environment is malformed; the message names the variable and what to write."""


class RequestError(Exception):
    """A request the service refuses: HTTP status, a message for the caller, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _names(variable: str, raw: str) -> list[str]:
    raw = raw.strip()
    if not raw:
        return []
    if raw.startswith("["):
        try:
            values = json.loads(raw)
        except json.JSONDecodeError as e:
            raise RulesError(f"{variable} is not a valid JSON list ({e}); write e.g. [\"GC_MS\", \"USER_DATA.*\"].") from e
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise RulesError(f"{variable} must be a JSON list of strings, e.g. [\"GC_MS\"].")
        return [v.strip() for v in values if v.strip()]
    return [v.strip() for v in raw.split(",") if v.strip()]


@dataclass(frozen=True)
class Rules:
    """Which metrics the service shows; built from the environment by `from_env`."""

    blacklist: tuple[re.Pattern, ...] = ()
    public_release_metrics: frozenset[str] = field(default_factory=frozenset)
    allow_all_release_metrics: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Rules:
        env = os.environ if environ is None else environ
        patterns = []
        for expression in _names("METRICS_BLACKLIST", env.get("METRICS_BLACKLIST", "")):
            try:
                patterns.append(re.compile(expression))
            except re.error as e:
                raise RulesError(
                    f"METRICS_BLACKLIST entry {expression!r} is not a valid regular expression ({e}); "
                    "fix it or remove it (a list may be JSON to allow commas inside expressions)."
                ) from e
        flag = env.get("ALLOW_ALL_RELEASE_METRICS", "").strip()
        if flag.lower() not in ("", "true", "false", "1", "0"):
            raise RulesError(f"ALLOW_ALL_RELEASE_METRICS must be True or False (got {flag!r}).")
        return cls(
            blacklist=tuple(patterns),
            public_release_metrics=frozenset(_names("PUBLIC_RELEASE_METRICS", env.get("PUBLIC_RELEASE_METRICS", ""))),
            allow_all_release_metrics=flag.lower() in ("true", "1"),
        )

    def blocked(self, metric: str) -> bool:
        """True when a blacklist expression matches the whole metric name."""
        return any(p.fullmatch(metric) for p in self.blacklist)

    def allowed(self, channel: str, metric: str) -> bool:
        """Whether `metric` may be shown on `channel`: never when blacklisted; on release only when public."""
        if self.blocked(metric):
            return False
        if channel == RELEASE_CHANNEL:
            return self.allow_all_release_metrics or metric in self.public_release_metrics
        return True


def cleaned_url(path: str, params: list[tuple[str, str]], allowed: tuple[str, ...]) -> str:
    """The request's URL with only the accepted parameters (what the 405 reply's `Allow` header gives)."""
    kept = [(k, v) for k, v in params if k in allowed]
    url = quote(path, safe="/")
    return f"{url}?{urlencode(kept)}" if kept else url


def check_params(path: str, params: list[tuple[str, str]], endpoint: str) -> dict[str, str]:
    """The accepted parameters as a dict, or the 405 (unknown) / 400 (repeated) reply."""
    allowed = ENDPOINT_PARAMS[endpoint]
    unknown = sorted({k for k, _ in params if k not in allowed})
    if unknown:
        accepted = ", ".join(allowed) if allowed else "no query parameters"
        raise RequestError(
            405,
            f"Unknown query parameter(s) {', '.join(map(_show, unknown))}; this endpoint accepts {accepted}. "
            "The Allow header has the URL without them.",
            {"Allow": cleaned_url(path, params, allowed)},
        )
    values: dict[str, str] = {}
    for key, value in params:
        if key in values:
            raise RequestError(400, f"Query parameter {key!r} is given more than once; give it once.")
        values[key] = value
    return values


def require(values: dict[str, str], names: tuple[str, ...]) -> None:
    missing = [n for n in names if not values.get(n)]
    if missing:
        raise RequestError(
            404, f"Missing query parameter(s) {', '.join(missing)}: {', '.join(names)} are all required."
        )


def _show(value: str) -> str:
    """A caller's value, quoted and shortened, for messages."""
    text = value if len(value) <= 60 else value[:57] + "..."
    return repr(text)


def check_value(name: str, value: str) -> str:
    if len(value) > MAX_VALUE_LENGTH:
        raise RequestError(400, f"Query parameter {name} is longer than {MAX_VALUE_LENGTH} characters.")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise RequestError(400, f"Query parameter {name} contains control characters.")
    return value


def check_version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise RequestError(400, f"version {_show(value)} is not a major version number such as 42.")
    return value


def check_child(value: str) -> str:
    """The process a `child` value names: parent, content or gpu (true = content, false = parent)."""
    value = CHILD_ALIASES.get(value, value)
    if value not in CHILD_VALUES:
        raise RequestError(400, f"child {_show(value)} must be one of {', '.join(CHILD_VALUES)} (or true/false).")
    return value


def parse_dates(value: str) -> tuple[str, ...]:
    """Comma-separated YYYYMMDD dates, each a real date, at most MAX_DATES distinct (given order kept)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise RequestError(400, "dates contains control characters.")
    parts = value.split(",")
    if len(parts) > MAX_DATES:
        raise RequestError(400, f"dates lists {len(parts)} dates; ask for at most {MAX_DATES} at once.")
    dates: list[str] = []
    for part in parts:
        part = part.strip()
        if not _DATE.fullmatch(part):
            raise RequestError(400, f"dates: {_show(part)} is not a date written YYYYMMDD (e.g. 20150615).")
        try:
            dt.datetime.strptime(part, "%Y%m%d")
        except ValueError:
            raise RequestError(400, f"dates: {part} is not a calendar date.") from None
        if part not in dates:
            dates.append(part)
    return tuple(dates)
