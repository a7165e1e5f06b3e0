"""The demo metric-hub: the package's `metric_hub/` folder committed into a real git repository.

A real repository matters because every resolved analysis config records the commit it came from, and the
config sensor reruns experiments when a new commit changes their files. Rerunning the demo is idempotent:
when the repository already holds these files at HEAD, no new commit is made and the sensor sees nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).parent / "metric_hub"
AUTHOR_NAME = "jetstream-assets demo"
AUTHOR_EMAIL = "jetstream-assets-demo@localhost"
COMMIT_MESSAGE = "Demo metric-hub configuration"


class ConfigRepoError(RuntimeError):
    """The demo config repository could not be created or updated."""


def demo_config_files() -> list[Path]:
    """The files of the demo metric-hub, relative to its root, in a stable order."""
    if not SOURCE.is_dir():
        raise ConfigRepoError(
            f"The demo metric-hub folder {SOURCE} is missing; "
            "reinstall jetstream_assets with its package data."
        )
    return sorted(
        p.relative_to(SOURCE)
        for p in SOURCE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
    )


def _git(dest: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": AUTHOR_NAME,
        "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
        "GIT_COMMITTER_NAME": AUTHOR_NAME,
        "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
        "GIT_TERMINAL_PROMPT": "0",
    }
    # A stray GIT_DIR / GIT_WORK_TREE would point git at another repository.
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(var, None)
    try:
        result = subprocess.run(
            ["git", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false", "-C", str(dest), *args],
            capture_output=True,
            text=True,
            env=env,
        )
    except FileNotFoundError as e:
        raise ConfigRepoError("git is not installed; the demo metric-hub must be a git repository.") from e
    if check and result.returncode != 0:
        raise ConfigRepoError(
            f"`git {' '.join(args)}` failed in {dest}: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result


def _is_repo_root(dest: Path) -> bool:
    return (dest / ".git").exists()


def create_config_repo(dest: Path) -> str:
    """Copy the demo metric-hub into `dest`, commit it, and return the commit sha.

    If `dest` already is that repository with the same content at HEAD, return HEAD without a new commit.
    Files of the demo are reset to the package's version; other files in `dest` are left alone.
    """
    dest = Path(dest).expanduser().resolve()
    files = demo_config_files()
    if dest.exists() and not dest.is_dir():
        raise ConfigRepoError(f"The demo config repository path {dest} is a file; give a folder.")
    if dest.is_dir() and not _is_repo_root(dest) and any(dest.iterdir()):
        raise ConfigRepoError(
            f"{dest} exists, is not empty and is not a git repository; give an empty or new folder for the "
            f"demo metric-hub, or remove it."
        )
    dest.mkdir(parents=True, exist_ok=True)
    if not _is_repo_root(dest):
        _git(dest, "init", "--quiet", "--initial-branch=main")

    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        source = SOURCE / rel
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)

    _git(dest, "add", "--", *(str(rel) for rel in files))
    has_head = _git(dest, "rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode == 0
    if has_head and _git(dest, "diff", "--cached", "--quiet", check=False).returncode == 0:
        return _git(dest, "rev-parse", "HEAD").stdout.strip()
    _git(dest, "commit", "--quiet", "--no-verify", "-m", COMMIT_MESSAGE, "--", *(str(rel) for rel in files))
    return _git(dest, "rev-parse", "HEAD").stdout.strip()
