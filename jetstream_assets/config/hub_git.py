"""git for the metric-hub loader: which commit a checkout is at, the last commit of each outcome file, and a
read-only snapshot of a commit's tree (extracted once into a shared cache folder, never touching the
checkout)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path



class MetricHubError(RuntimeError):
    """The metric-hub checkout cannot be found, cloned or read."""


def git(args: list[str], cwd: Path | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    if check and proc.returncode != 0:
        raise MetricHubError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip() if proc.returncode == 0 else ""


def git_toplevel(path: Path) -> Path | None:
    out = git(["rev-parse", "--show-toplevel"], cwd=path, check=False)
    return Path(out) if out else None


def git_rev(path: Path, rev: str) -> str | None:
    return git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=path, check=False) or None


def file_commits(git_root: Path, rev: str, pathspec: str) -> dict[str, str]:
    """Last commit touching each file under `pathspec` (repo-relative to git_root)."""
    out = git(["log", "--format=%x00%H", "--name-only", rev, "--", pathspec], cwd=git_root, check=False)
    result: dict[str, str] = {}
    sha = None
    for line in out.splitlines():
        if line.startswith("\x00"):
            sha = line[1:]
        elif line and sha is not None:
            result.setdefault(line, sha)
    return result


def snapshot(git_root: Path, sha: str, prefix: str) -> Path:
    """Extract the tree at `sha` (only `prefix`) into a cache folder, without touching the checkout.

    Snapshots are immutable, so concurrent processes can share one; extraction goes to a temporary
    folder that is renamed into place.
    """
    base = Path(tempfile.gettempdir()) / "jetstream_assets_metric_hub"
    target = base / sha
    if target.exists():
        return target / prefix
    base.mkdir(parents=True, exist_ok=True)
    args = ["archive", "--format=tar", sha]
    if prefix:
        args += ["--", prefix.rstrip("/")]
    proc = subprocess.run(["git", *args], cwd=git_root, capture_output=True)
    if proc.returncode != 0:
        raise MetricHubError(f"git archive {sha} failed in {git_root}: {proc.stderr.decode().strip()}")
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{sha}-"))
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(tmp, filter="data")
    try:
        tmp.rename(target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target / prefix
