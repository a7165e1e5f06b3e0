"""The experiment source: Experimenter's v8 API in production, a local JSON file of v8 records by default."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import dagster as dg
from pydantic import Field

from .models import Experiment, ExperimenterRecordError

logger = logging.getLogger(__name__)

USER_AGENT = "jetstream-assets"


class ExperimenterUnavailableError(RuntimeError):
    """Experimenter (or the local file standing in for it) could not be read at all."""


class ExperimenterSnapshot(NamedTuple):
    experiments: list[Experiment]
    errors: list[ExperimenterRecordError]


class Experimenter(dg.ConfigurableResource):
    """Where experiments come from; set `url` for the Experimenter API or `path` for a local JSON file."""

    url: str | None = Field(
        default=None,
        description="Experimenter base URL, e.g. https://experimenter.services.mozilla.com",
    )
    path: str | None = Field(
        default=None,
        description="Local JSON file holding a list of v8 experiment records (the default source).",
    )
    timeout_seconds: float = Field(default=30.0, description="Per-request timeout.")
    retries: int = Field(default=2, description="Extra attempts after a failed request.")
    retry_backoff_seconds: float = Field(
        default=1.0, description="Wait before the first retry; doubles on each later one."
    )

    def fetch(self) -> ExperimenterSnapshot:
        """Every experiment; malformed records are logged and skipped so the others still get analysed."""
        records = self._read_all()
        experiments: list[Experiment] = []
        errors: list[ExperimenterRecordError] = []
        for record in records:
            try:
                experiments.append(Experiment.from_v8(record))
            except ExperimenterRecordError as e:
                logger.warning("%s", e, extra={"experiment": e.slug})
                errors.append(e)
        return ExperimenterSnapshot(experiments, errors)

    def get(self, slug: str) -> Experiment | None:
        """One experiment, or None when Experimenter does not know the slug."""
        record = self.record(slug)
        if record is None:
            return None
        experiment = Experiment.from_v8(record)
        if experiment.slug != slug:
            raise ExperimenterRecordError(
                slug, "slug", f"Experimenter answered with a different slug {experiment.slug!r}"
            )
        return experiment

    def record(self, slug: str) -> Any:
        """One experiment's v8 record as Experimenter sent it (name, descriptions...), or None."""
        if self._source() == "url":
            return self._get_json(self._experiments_url() + quote(slug, safe="") + "/", missing_ok=True)
        for record in self._read_all():
            if isinstance(record, dict) and record.get("slug") == slug:
                return record
        return None

    # --- sources -------------------------------------------------------------------------------------

    def _source(self) -> str:
        if self.url and self.path:
            raise ValueError(
                "Experimenter resource has both `url` and `path` set; set only one "
                "(url for the Experimenter API, path for a local JSON file)."
            )
        if self.url:
            return "url"
        if self.path:
            return "path"
        raise ValueError(
            "Experimenter resource has neither `url` nor `path` set; set `path` to a JSON file of v8 "
            "experiment records or `url` to the Experimenter base URL."
        )

    def _read_all(self) -> list[Any]:
        if self._source() == "url":
            url = self._experiments_url()
            records = self._get_json(url)
            where = url
        else:
            where = str(self.path)
            records = self._read_file()
        if not isinstance(records, list):
            raise ExperimenterUnavailableError(
                f"Experimenter data at {where} is not a JSON list of experiments "
                f"(got {type(records).__name__}); check the URL or file."
            )
        return records

    def _read_file(self) -> Any:
        path = Path(str(self.path)).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ExperimenterUnavailableError(
                f"Cannot read the Experimenter file {path}: {e}. Set the Experimenter resource's `path` "
                "to a JSON file with a list of v8 experiment records."
            ) from e
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ExperimenterUnavailableError(
                f"The Experimenter file {path} is not valid JSON ({e}); it must hold a list of v8 "
                "experiment records."
            ) from e

    def _experiments_url(self) -> str:
        return str(self.url).rstrip("/") + "/api/v8/experiments/"

    def _get_json(self, url: str, missing_ok: bool = False) -> Any:
        """GET with retries on network errors, 5xx and unparseable bodies (often a proxy's error page)."""
        import requests  # only the API needs it (a fifth of a second of every run's start with the file)

        attempts = max(0, self.retries) + 1
        last_problem = ""
        with requests.Session() as session:
            session.headers["User-Agent"] = USER_AGENT
            for attempt in range(attempts):
                if attempt:
                    time.sleep(self.retry_backoff_seconds * 2 ** (attempt - 1))
                try:
                    response = session.get(url, timeout=self.timeout_seconds)
                except requests.Timeout:
                    last_problem = f"no answer within {self.timeout_seconds} s"
                    logger.info("Experimenter %s: %s (attempt %d)", url, last_problem, attempt + 1)
                    continue
                except requests.RequestException as e:
                    last_problem = f"{type(e).__name__}: {e}"
                    logger.info("Experimenter %s: %s (attempt %d)", url, last_problem, attempt + 1)
                    continue
                if missing_ok and response.status_code == 404:
                    return None
                if response.status_code >= 500:
                    last_problem = f"HTTP {response.status_code}"
                    logger.info("Experimenter %s: %s (attempt %d)", url, last_problem, attempt + 1)
                    continue
                if response.status_code >= 400:
                    raise ExperimenterUnavailableError(
                        f"Experimenter refused {url} with HTTP {response.status_code}; check the "
                        "Experimenter resource's `url`."
                    )
                try:
                    return response.json()
                except ValueError:
                    snippet = response.text[:80]
                    last_problem = f"the answer is not JSON (starts with {snippet!r})"
                    logger.info("Experimenter %s: %s (attempt %d)", url, last_problem, attempt + 1)
                    continue
        raise ExperimenterUnavailableError(
            f"Experimenter is unreachable at {url} after {attempts} attempts: {last_problem}. "
            "Check the network or the Experimenter resource's `url` (or use `path` for a local file)."
        )
