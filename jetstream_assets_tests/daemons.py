"""A dagster-daemon for tests: started on a home's instance, stopped (with its code server and run workers)
at the end; runs launched through the instance's queue with `dagster job launch`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import dagster as dg
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent


def env_for(home: Path, dagster_home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "JETSTREAM_HOME": str(home), "DAGSTER_HOME": str(dagster_home), **extra}


@contextlib.contextmanager
def running_daemon(env: dict[str, str], module: str, log: Path):
    """`dagster-daemon run -m <module>` in its own process group, killed with everything it started."""
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-m", module], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        # the code server (and a run it still executes) may outlive the daemon: end the whole group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def launch(env: dict[str, str], module: str, job: str, *tag_sets: dict[str, str]) -> list[str]:
    """Submit one run of `job` per tag set through the instance's run coordinator (the queue), all at once;
    their run ids."""
    run_ids = [str(uuid.uuid4()) for _ in tag_sets]
    processes = [
        subprocess.Popen(
            [str(BIN / "dagster"), "job", "launch", "-m", module, "-j", job, "--tags", json.dumps(tags),
             "--run-id", run_id],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for tags, run_id in zip(tag_sets, run_ids)
    ]
    for process in processes:
        out, _ = process.communicate(timeout=180)
        assert process.returncode == 0, out
    return run_ids


def wait_for(what: str, condition: Callable[[], object], timeout: float, log: Path | None = None):
    """Poll `condition` until it returns something true; fail naming `what` (and the daemon's log tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


def failures(instance, run_id: str) -> str:
    """The run's failure messages (with their errors), for an assertion's message."""
    kinds = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.ENGINE_EVENT}
    out = []
    for record in instance.get_records_for_run(run_id, of_type=kinds).records:
        event = record.event_log_entry.dagster_event
        error = getattr(event.event_specific_data, "error", None)
        out.append(f"{event.event_type_value}: {event.message} {error.to_string() if error else ''}")
    return "\n".join(out)
