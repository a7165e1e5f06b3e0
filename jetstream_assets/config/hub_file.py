"""One metric-hub file: read (size, TOML, shape limits), parsed entry by entry so one broken entry is
dropped and reported instead of the whole file, and located (the line a table or key is written on)."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli
from jinja2.exceptions import SecurityError
from metric_config_parser.analysis import AnalysisSpec
from metric_config_parser.definition import DefinitionSpec
from metric_config_parser.outcome import OutcomeSpec

from .limits import MAX_FILE_BYTES, shape_problem
from .sandbox import check_function_definition

# Top-level tables Jetstream's config validation accepts (anything else is almost always a typo).
ANALYSIS_KEYS = frozenset(
    {
        "metrics",
        "experiment",
        "segments",
        "data_sources",
        "parameters",
        "friendly_name",
        "description",
        "population",
        "project",
        "alerts",
        "dimensions",
        "functions",
        "daily",
        "weekly",
        "28_day",
        "overall",
        "preenrollment_weekly",
        "preenrollment_days28",
    }
)
# Sections whose entries can be parsed (and dropped) one at a time.
_ENTRY_SECTIONS = ("metrics", "data_sources", "segments")
_PERIOD_KEYS = frozenset(
    {"daily", "weekly", "28_day", "overall", "preenrollment_weekly", "preenrollment_days28"}
)



@dataclass(frozen=True)
class ConfigFileError:
    """A metric-hub file (or one entry of it) that could not be loaded.

    `field` None means the whole file was skipped; otherwise only that entry (e.g.
    `metrics.active_hours`) was dropped and the rest of the file loaded.
    """

    path: str
    field: str | None
    cause: str
    line: int | None = None

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    def __str__(self) -> str:
        what = f"field `{self.field}` was dropped" if self.field else "the file was skipped"
        return f"{self.location}: {self.cause} ({what})"




_LINE_RE = re.compile(r"line (\d+)")


def _toml_line(exc: Exception) -> int | None:
    line = getattr(exc, "lineno", None)
    if isinstance(line, int):
        return line
    m = _LINE_RE.search(str(exc))
    return int(m.group(1)) if m else None


_HEADER = re.compile(r"[ \t]*\[[ \t]*([^\[\]]+?)[ \t]*\]")
_KEY = re.compile(r"[ \t]*([^\s=\[\]]+?)[ \t]*=")


@functools.lru_cache(maxsize=16)
def _line_index(text: str) -> tuple[dict[str, int], dict[str, int]]:
    """(table path -> line of the first header at or under it, key -> line of its first `key =`): built
    once per file, so locating thousands of fields of a large file stays linear."""
    headers: dict[str, int] = {}
    keys: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), 1):
        if m := _HEADER.match(line):
            parts = [p.strip() for p in m.group(1).split(".")]
            for n in range(1, len(parts) + 1):
                headers.setdefault(".".join(parts[:n]), number)
        elif m := _KEY.match(line):
            keys.setdefault(m.group(1), number)
    return headers, keys


def field_line(text: str, field_path: str) -> int | None:
    """Line of the table header (or key) that defines `field_path`, e.g. `metrics.foo`."""
    headers, keys = _line_index(text)
    line = headers.get(".".join(p.strip() for p in field_path.split(".")))
    return line if line is not None else keys.get(field_path.split(".")[-1])


def key_line(text: str, table_line: int | None, key: str) -> int | None:
    """Line of `key = ...` inside the table whose header is on `table_line` (also inline, as in
    `x = { key = 1 }`); the table's own line when the key is not written there."""
    if table_line is None:
        return None
    lines = text.split("\n")
    own = re.compile(rf"\b{re.escape(key)}[ \t]*=")
    inside = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=|[{{,][ \t]*{re.escape(key)}[ \t]*=")
    if table_line <= len(lines) and own.search(lines[table_line - 1]):
        return table_line
    for number in range(table_line + 1, len(lines) + 1):
        line = lines[number - 1]
        if line.lstrip().startswith("["):
            break
        if inside.search(line):
            return number
    return table_line


def describe(exc: BaseException) -> str:
    """A one-line cause, unwrapping cattrs' grouped structuring errors."""
    inner = getattr(exc, "exceptions", None)
    if inner:
        notes = [str(n) for n in getattr(exc, "__notes__", [])]
        sub = describe(inner[0])
        return f"{sub}" + (f" ({notes[0]})" if notes else "")
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return text if name in ("ValueError", "Exception") else f"{name}: {text}"


def parse_isolating_entries(
    data: dict[str, Any],
    parse: Callable[[dict[str, Any]], Any],
    rel: str,
    text: str,
    errors: list[ConfigFileError],
) -> Any | None:
    """Parse a whole file; when that fails, find the entries that break it, drop them, and retry.

    Only entries of `[metrics.*]`, `[data_sources.*]` and `[segments.*]` are isolated: one broken
    shared metric must not take a platform's other metrics down with it.
    """
    try:
        return parse(copy.deepcopy(data))
    except Exception as exc:  # noqa: BLE001 - any parser error is a config problem
        whole_file_error = exc

    bad: list[tuple[str, str, Exception]] = []
    for section in _ENTRY_SECTIONS:
        entries = data.get(section)
        if not isinstance(entries, dict):
            continue
        for key, value in entries.items():
            if key in _PERIOD_KEYS or not isinstance(value, dict):
                continue
            if section == "segments" and key == "data_sources":
                for ds_key, ds_value in value.items():
                    try:
                        parse({"segments": {"data_sources": {ds_key: copy.deepcopy(ds_value)}}})
                    except Exception as exc:  # noqa: BLE001
                        bad.append((section, f"data_sources.{ds_key}", exc))
                continue
            try:
                parse({section: {key: copy.deepcopy(value)}})
            except Exception as exc:  # noqa: BLE001
                bad.append((section, key, exc))

    if bad:
        pruned = copy.deepcopy(data)
        for section, key, _ in bad:
            holder = pruned[section]
            *parents, last = key.split(".")
            for p in parents:
                holder = holder[p]
            holder.pop(last, None)
        try:
            result = parse(copy.deepcopy(pruned))
        except Exception:  # noqa: BLE001 - fall through to a whole-file error
            pass
        else:
            for section, key, exc in bad:
                fp = f"{section}.{key}"
                errors.append(ConfigFileError(rel, fp, describe(exc), field_line(text, fp)))
            return result

    errors.append(ConfigFileError(rel, None, describe(whole_file_error), None))
    return None


def read_toml(path: Path, rel: str, errors: list[ConfigFileError]) -> tuple[dict, str] | None:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            errors.append(ConfigFileError(
                rel, None, f"the file is {size:,} bytes; metric-hub files over {MAX_FILE_BYTES:,} bytes "
                "(1 MiB) are refused: split it", None,
            ))
            return None
        text = path.read_text(encoding="utf-8")
        data = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        cause = str(exc).split(" (at line")[0]
        errors.append(ConfigFileError(rel, None, f"TOML syntax error: {cause}", _toml_line(exc)))
    except RecursionError as exc:  # tomli refuses 1,000-part keys and 400-deep inline values this way
        errors.append(ConfigFileError(rel, None, f"TOML nested too deeply: {exc}", None))
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(ConfigFileError(rel, None, f"cannot read file: {exc}", None))
    else:
        problem = shape_problem(data)
        if problem is None:
            return data, text
        where, cause = problem
        errors.append(ConfigFileError(rel, None, cause, field_line(text, where.split(".")[0]) if where else None))
    return None


def safe_functions(data: dict, rel: str, text: str, errors: list[ConfigFileError]) -> dict:
    """`data` without the `[functions.<slug>]` whose definition uses more than `{select_expr}`
    (metric-config-parser expands it with `str.format`, outside the template sandbox)."""
    functions = data.get("functions")
    if not isinstance(functions, dict):
        return data
    safe = dict(functions)
    for slug, function in functions.items():
        definition = function.get("definition") if isinstance(function, dict) else None
        try:
            check_function_definition(definition)
        except ValueError as exc:  # SecurityError is not a ValueError: both are refusals
            cause = str(exc)
        except SecurityError as exc:
            cause = str(exc)
        else:
            continue
        del safe[slug]
        fp = f"functions.{slug}.definition"
        errors.append(ConfigFileError(rel, fp, cause, field_line(text, f"functions.{slug}")))
    return {**data, "functions": safe}


def unexpected_keys(data: dict, rel: str, text: str, errors: list[ConfigFileError]) -> bool:
    unexpected = sorted(set(data) - ANALYSIS_KEYS)
    for key in unexpected:
        errors.append(
            ConfigFileError(
                rel,
                key,
                f"unexpected top-level table `{key}` (allowed: {', '.join(sorted(ANALYSIS_KEYS))})",
                field_line(text, key),
            )
        )
    return bool(unexpected)


def analysis_spec(data: dict) -> AnalysisSpec:
    return AnalysisSpec.from_dict(data)


def definition_spec(data: dict) -> DefinitionSpec:
    return DefinitionSpec.from_dict(data)


def outcome_spec(data: dict) -> OutcomeSpec:
    return OutcomeSpec.from_dict(data)
