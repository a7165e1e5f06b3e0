"""validate-config against metric-config-parser on the same metric-hub files, side by side in one run.

    .venv/bin/python bench/validate.py [--hub /work/shared/metric-hub-sample] [--rounds 3]

Reference: what Jetstream's `validate_config` does before its BigQuery dry run, with
mozilla-metric-config-parser: load the metric-hub (a git checkout: the jetstream folder and the
definitions), then per experiment config parse the file and resolve it against its platform's defaults
(`Config.validate`). Ours: `validate_configs(files, synthetic=True)`: load, resolve, build every query
with mozanalysis and dry-run them all on the local engine (dry runs on).

Each round runs each side in a fresh Python process (`--side`), alternating, `--rounds` times, so no cache
that lives inside one process (the loaded metric-hub, parsed SQL, compiled statements, pickled
definitions) makes a round cheaper than a user's single `jetstream-assets validate-config` call: the
timed call is that process's first. Only the imports are left out of the timing, on both sides (each side
imports what its call needs first; their CPU time is printed apart). The
best round of each side is compared (the machine is shared: the best round is the least disturbed).
Figures are the timed call's CPU seconds (wall seconds in brackets) and their ratio ours / reference, both
printed. The CPU figure is the process' own (every thread: a line says which threads our call started, so
a wall figure under the CPU one is read as threads working at once, not as a cheaper call) plus the child
processes the call started and waited for: metric-config-parser reads the metric-hub through GitPython,
which runs `git` a few dozen times (about a tenth of a second of CPU that the process' own clock does not
see); ours runs `git rev-parse` to name the commit. The children's share is printed apart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import datetime as dt
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

SAMPLE = Path("/work/shared/metric-hub-sample")


def _git_copy(hub: Path, into: Path) -> Path:
    """metric-config-parser reads a metric-hub from a git checkout: a committed copy of `hub`."""
    root = into / "metric-hub"
    shutil.copytree(hub, root, ignore=shutil.ignore_patterns(".git"))
    env = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@localhost", "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "sample"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=env)
    return root


def reference(root: Path, files: list[Path], today: dt.date) -> int:
    """metric-config-parser's parse and resolve of `files`; the number that resolve."""
    from metric_config_parser.config import ConfigCollection, entity_from_path

    from jetstream_assets.validation.resolution import stand_in_experiment

    configs = ConfigCollection.from_github_repo(str(root / "jetstream"))
    configs.merge(ConfigCollection.from_github_repo(str(root)))
    ok = 0
    for path in files:
        entity = entity_from_path(path)
        try:
            entity.validate(configs, stand_in_experiment(path.stem, "firefox_desktop", today))
            ok += 1
        except Exception:  # noqa: BLE001 - an invalid config is a result, not a failure of the bench
            pass
    return ok


@contextlib.contextmanager
def plain_jinja():
    """metric-config-parser as it ships (its own plain jinja2, fnmatch, select-expression renders, deepcopy and
    dedent, data source resolution), as in Jetstream: importing jetstream_assets installs our bounded sandbox, a
    memoised glob translation, memoised select-expression renders, plain-data fast paths and data sources
    resolved once per experiment into the library, which would time the reference with our renderer (and its
    caches) instead."""
    import jinja2

    from jetstream_assets.config import fast_paths, glob_cache, render_cache, sandbox, scoped

    swapped = [m for n, m in list(sys.modules.items())
               if n.startswith("metric_config_parser") and getattr(m, "jinja2", None) is sandbox._PROXY]
    for module in swapped:
        module.jinja2 = jinja2
    glob_cache.uninstall()
    render_cache.uninstall()
    fast_paths.uninstall()
    scoped.uninstall()
    try:
        yield
    finally:
        sandbox.install()
        glob_cache.install()
        render_cache.install()
        fast_paths.install()
        scoped.install()


def ours(files: list[Path], today: dt.date) -> tuple[int, int, list[str]]:
    """validate-config with dry runs on; (valid files, dry runs, names of the threads the call started)."""
    import threading

    from jetstream_assets.validation import validate_configs

    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    threading.Thread.start = counted
    try:
        reports = validate_configs(files, synthetic=True, today=today)
    finally:
        threading.Thread.start = start
    return sum(r.valid for r in reports), sum(r.dry_runs for r in reports), started


def _children_cpu() -> float:
    """CPU seconds of the child processes this process started and waited for (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(fn, *args):
    """(CPU of the process and its children, the children's share, wall, result) of `fn(*args)`."""
    children, cpu, wall = _children_cpu(), time.process_time(), time.perf_counter()
    result = fn(*args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    children = _children_cpu() - children
    return cpu + children, children, wall, result


def side(name: str, root: Path, today: dt.date) -> None:
    """One round of one side in this (fresh) process: its imports, then one timed call; JSON on stdout."""
    warnings.simplefilter("ignore")
    files = sorted((root / "jetstream").glob("*.toml"))
    cpu = time.process_time()
    if name == "reference":
        import metric_config_parser.config  # noqa: F401
    else:
        import jetstream_assets.statistics  # noqa: F401 - the statistics' parameter schemas (and scipy)
        import jetstream_assets.validation  # noqa: F401
    imports = time.process_time() - cpu
    import jetstream_assets.validation  # noqa: F401, F811 - the reference's stand-in Experimenter record
    if name == "reference":
        with plain_jinja():
            cpu, children, wall, result = _timed(reference, root, files, today)
    else:
        cpu, children, wall, result = _timed(ours, files, today)
    print(json.dumps({"cpu": cpu, "children": children, "wall": wall, "result": result, "imports": imports}))


def _round(name: str, root: Path, today: dt.date) -> tuple[float, float, float, object, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--side", name, "--root", str(root), "--today", today.isoformat()],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return figures["cpu"], figures["children"], figures["wall"], figures["result"], figures["imports"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub", type=Path, default=SAMPLE)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", choices=("reference", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--today", type=dt.date.fromisoformat, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, args.root, args.today)
        return
    today = dt.date.today()
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        root = _git_copy(args.hub, Path(tmp))
        files = sorted((root / "jetstream").glob("*.toml"))
        best_ref = best_ours = None
        for _ in range(args.rounds):
            r = _round("reference", root, today)
            o = _round("ours", root, today)
            best_ref = r if best_ref is None or r[0] < best_ref[0] else best_ref
            best_ours = o if best_ours is None or o[0] < best_ours[0] else best_ours
    ref_cpu, ref_children, ref_wall, ref_ok, ref_imports = best_ref
    our_cpu, our_children, our_wall, (our_ok, dry_runs, threads), our_imports = best_ours
    print(f"{len(files)} experiment configs of {args.hub}, best of {args.rounds} rounds, each a fresh process")
    print(f"  metric-config-parser parse + resolve (its plain jinja2, as in Jetstream):\n"
          f"                                         {ref_cpu:6.2f} s CPU ({ref_wall:6.2f} s wall), {ref_ok} resolve; "
          f"CPU of git child processes {ref_children:.2f} s of it")
    print(f"  validate-config (dry runs on)        : {our_cpu:6.2f} s CPU ({our_wall:6.2f} s wall), {our_ok} valid, "
          f"{dry_runs} dry runs; CPU of child processes {our_children:.2f} s of it")
    print(f"  ratio validate-config / metric-config-parser: {our_cpu / ref_cpu:.2f} (CPU), "
          f"{our_wall / ref_wall:.2f} (wall), {(our_cpu - our_children) / (ref_cpu - ref_children):.2f} "
          "(the processes' own CPU, children left out)")
    print(f"  threads of the validate-config call: the calling one + {len(threads)} started "
          f"({', '.join(sorted(set(threads))) or 'none'}); its CPU figure counts them all")
    print(f"  imports before the timed call (not in the ratio): metric-config-parser {ref_imports:.2f} s CPU, "
          f"validate-config {our_imports:.2f} s CPU")


if __name__ == "__main__":
    main()
