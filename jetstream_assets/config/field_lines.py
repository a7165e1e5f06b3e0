"""The line a field of a metric-hub file is written on (for error messages), read from the file's text."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .hub_file import field_line, key_line


@functools.lru_cache(maxsize=16)
def _file_text(path: str, stamp: tuple[int, int]) -> str:
    return Path(path).read_text(encoding="utf-8")


def _read(path) -> str | None:
    try:
        st = os.stat(path)
        return _file_text(str(path), (st.st_mtime_ns, st.st_size))
    except (OSError, UnicodeDecodeError):
        return None


def line_of(path, field: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    parts = field.split(".")
    for n in range(len(parts), 0, -1):  # the nearest enclosing table that is written out
        line = field_line(text, ".".join(parts[:n]))
        if line:
            return line
    return None


def key_line_of(path, table: str, key: str) -> int | None:
    """Line of `key = ...` inside `[table]` (the table's own line when the key is not found there)."""
    start = line_of(path, table)
    text = _read(path)
    return start if text is None else key_line(text, start, key)
