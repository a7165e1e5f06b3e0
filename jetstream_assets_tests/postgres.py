"""A throwaway PostgreSQL server for tests: Debian's `postgresql` binaries, a cluster in a temporary folder,
listening on 127.0.0.1 on a free port; as the `postgres` user when the tests run as root (CI does)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from jetstream_assets_tests.worlds import free_port


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `apt-get install postgresql` (.ci/run installs it).")
    return Path(found[-1]).parent


@contextlib.contextmanager
def postgres_server(db_name: str = "dagster"):
    """Yields the connection settings (host, port, user, db) of a running server; stops and removes it after."""
    bin_dir = postgres_bin()
    user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
    folder = Path(tempfile.mkdtemp(prefix="jetstream-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data, port = folder / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, user=user, cwd=folder, timeout=120)

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    server = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
        user=user, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start (exit {server.poll()}) in {folder}")
            time.sleep(0.3)
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", db_name)
        yield {"host": "127.0.0.1", "port": str(port), "user": "postgres", "db": db_name}
    finally:
        server.send_signal(signal.SIGINT)  # "fast" shutdown: disconnects the clients
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)
