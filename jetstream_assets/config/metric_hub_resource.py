"""The metric-hub as a Dagster resource: a local folder or a git checkout of a remote, loaded with
`metric_hub.load_metric_hub` (its own module so that reading metric-hub files needs no Dagster)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field

from .hub_git import git, git_rev, git_toplevel
from .metric_hub import LoadedConfigs, load_metric_hub


class MetricHub(dg.ConfigurableResource):
    """The metric-hub configuration repository (a local folder or a git checkout of a remote)."""

    path: str = Field(description="Local metric-hub checkout or folder (the clone target with url).")
    url: str | None = Field(
        default=None, description="Git remote; cloned into `path` when missing, fetched by refresh()."
    )
    ref: str | None = Field(
        default=None, description="Branch, tag or commit to read; default the checkout's HEAD."
    )

    def _root(self) -> Path:
        return Path(self.path).expanduser()

    def _clone(self) -> None:
        root = self._root()
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-clone-"))
        try:
            git(["clone", "--quiet", str(self.url), str(tmp)])
            try:
                tmp.rename(root)
            except OSError:  # cloned concurrently by another process
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def load(self) -> LoadedConfigs:
        """Parsed configs of the current commit; cheap to call repeatedly (cached in-process)."""
        if self.url and not self._root().exists():
            self._clone()
        return load_metric_hub(self._root(), self.ref, remote="origin" if self.url else None)

    def commit(self) -> str | None:
        """Commit `load()` would read, without parsing anything (for sensors)."""
        root = self._root()
        if not root.exists() or git_toplevel(root) is None:
            return None
        if self.ref:
            for rev in ([f"origin/{self.ref}"] if self.url else []) + [self.ref]:
                if sha := git_rev(root, rev):
                    return sha
            return None
        return git_rev(root, "HEAD")

    def commits_since(self, old: str) -> list[str] | None:
        """Commits after `old` up to the current one, oldest first (first parents: merges count once);
        None when `old` is not an ancestor any more (history rewritten) or is gone."""
        root = self._root()
        head = self.commit()
        if head is None or git_rev(root, old) is None:
            return None
        if subprocess.run(["git", "merge-base", "--is-ancestor", old, head], cwd=root).returncode != 0:
            return None
        out = git(["rev-list", "--reverse", "--first-parent", f"{old}..{head}"], cwd=root)
        return [line for line in out.splitlines() if line]

    def load_at(self, commit: str) -> LoadedConfigs:
        """Parsed configs of an older commit (read from a snapshot; the checkout is left alone)."""
        return load_metric_hub(self._root(), commit)

    def refresh(self) -> str | None:
        """Clone or fetch + fast-forward from `url`; returns the commit now loaded."""
        root = self._root()
        if self.url:
            if not root.exists():
                self._clone()
            else:
                git(["fetch", "--quiet", "--prune", "origin"], cwd=root)
                upstream = git(
                    ["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"], cwd=root, check=False
                )
                if upstream:
                    git(["merge", "--ff-only", "--quiet", upstream], cwd=root)
        return self.commit()
