"""The report page from its Jinja template, rendered in an immutable sandbox with autoescaping: every value
from a config, the Experimenter record or the data is text in the page, never markup or script."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from jetstream_assets.exports.report.format import BASIS_LABELS, count, segment_label
from jetstream_assets.exports.report.overview import message, window_label

TEMPLATES = Path(__file__).parent


@cache
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(count=count, segment=segment_label, window=window_label, message=message,
                       basis=lambda b: BASIS_LABELS.get(b, str(b)))
    return env


def render(**context: Any) -> str:
    return environment().get_template("report.html.j2").render(**context)


def render_failure(**context: Any) -> str:
    return environment().get_template("failure.html.j2").render(**context)
