"""Size, depth and time bounds for untrusted configs, so that no file can take the service down.

* a metric-hub file over `MAX_FILE_BYTES` is refused unread; TOML nested deeper than `MAX_DEPTH`, or with
  a table or array of more than `MAX_ENTRIES` entries, is refused after parsing (tomli itself refuses
  1,000-part keys and 400-deep inline values);
* templates: see `sandbox` (output, steps and time per render and per experiment); `validate-config`
  renders the templates of one file (on every platform it tries) in `FILE_RENDER_SECONDS` together;
* one dry run may take `DRY_RUN_SECONDS` (DuckDB is interrupted from a timer, or from a `Watchdog` that
  serves every dry run of a call with one thread); the dry runs of one file
  under `validate-config` (isolating the metrics that break a query takes several) `FILE_DRY_RUN_SECONDS`
  together.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator
from typing import Any

#: a metric-hub file larger than this is refused unread (the largest real one is about 100 KiB)
MAX_FILE_BYTES = 1 << 20
#: tables and arrays nested deeper than this are refused (real configs nest 5 levels)
MAX_DEPTH = 20
#: entries of one table or array (the largest real one, firefox_desktop's [metrics], has about 220)
MAX_ENTRIES = 2_000
#: one dry run (DuckDB EXPLAIN of a config's SQL)
DRY_RUN_SECONDS = 10.0
#: every dry run `validate-config` makes for one file
FILE_DRY_RUN_SECONDS = 15.0
#: every template `validate-config` renders for one file (each platform it tries included)
FILE_RENDER_SECONDS = 20.0


class LimitExceeded(RuntimeError):
    """Work on an untrusted input went over its time budget; the message says which and what to do."""


def shape_problem(data: Any) -> tuple[str, str] | None:
    """(dotted path, what is wrong) for the first value nested deeper than `MAX_DEPTH` or holding more
    than `MAX_ENTRIES` entries; iteratively, so no input can exhaust the stack."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        shown = ".".join(path[:3]) + ("..." if len(path) > 3 else "")
        if len(path) > MAX_DEPTH:
            return shown, f"`{shown}` is nested more than {MAX_DEPTH} tables or arrays deep"
        if isinstance(node, dict | list) and len(node) > MAX_ENTRIES:
            return shown, (f"`{shown or 'the file'}` has {len(node):,} entries (at most {MAX_ENTRIES:,} in one "
                           "table or array): split it")
        if isinstance(node, dict):
            stack.extend((v, (*path, str(k))) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*path, f"[{i}]")) for i, v in enumerate(node))
    return None


_DEADLINE: contextvars.ContextVar[tuple[float, str] | None] = contextvars.ContextVar("deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """`check_deadline()` inside raises `LimitExceeded` once `seconds` have passed."""
    token = _DEADLINE.set((time.monotonic() + seconds, f"{what} took more than {seconds:g} s"))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check_deadline() -> None:
    current = _DEADLINE.get()
    if current is not None and time.monotonic() > current[0]:
        raise LimitExceeded(current[1])


@contextlib.contextmanager
def interrupt_after(connection: Any, seconds: float = DRY_RUN_SECONDS) -> Iterator[threading.Event]:
    """Interrupt the DuckDB `connection` if the block runs longer than `seconds`; the event yielded is
    set when it was interrupted (the query then fails with DuckDB's interrupt error)."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        connection.interrupt()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


class Watchdog:
    """`interrupt_after` for many blocks with one thread (a timer thread per dry run costs more than a
    dry run of a small query). Started by the first `guard`, stopped by `close` (joined: no thread left)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._armed: dict[object, tuple[float, Any, threading.Event]] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def guard(self, connection: Any, seconds: float = DRY_RUN_SECONDS) -> Iterator[threading.Event]:
        """As `interrupt_after(connection, seconds)`."""
        fired, token = threading.Event(), object()
        with self._changed:
            if self._closed:
                raise RuntimeError("the watchdog is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="dry-run-watchdog", daemon=True)
                self._thread.start()
            self._armed[token] = (time.monotonic() + seconds, connection, fired)
            self._changed.notify()
        try:
            yield fired
        finally:
            with self._changed:
                self._armed.pop(token, None)

    def _watch(self) -> None:
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                for token, (due, connection, fired) in list(self._armed.items()):
                    if due <= now:
                        del self._armed[token]
                        fired.set()
                        connection.interrupt()
                due = min((d for d, _, _ in self._armed.values()), default=None)
                self._changed.wait(None if due is None else due - now)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()
