"""validate-config against metric-config-parser on the same metric-hub files, side by side in one run.

    .venv/bin/python bench/validate.py [--hub /work/shared/metric-hub-sample] [--rounds 3]

Reference: what Jetstream's `validate_config` does before its BigQuery dry run, with
mozilla-metric-config-parser: load the metric-hub (a git checkout: the jetstream folder and the
definitions), then per experiment config parse the file and resolve it against its platform's defaults
(`Config.validate`). Ours: `validate_configs(files, synthetic=True)`: load, resolve, build every query
with mozanalysis and dry-run them all on the local engine (dry runs on).

Both run in this process after a warm-up call (imports and first-use costs out), alternating, `--rounds`
times; the best round of each is compared (the machine is shared: the best round is the least disturbed).
Figures are process CPU seconds (wall seconds in brackets) and their ratio ours / reference.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
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
    """metric-config-parser renders with its own plain jinja2 here, as in Jetstream: importing
    jetstream_assets installs our bounded sandbox into the library, which would time the reference with
    our renderer (and its compile cache) instead."""
    import jinja2

    from jetstream_assets.config import sandbox

    swapped = [m for n, m in list(sys.modules.items())
               if n.startswith("metric_config_parser") and getattr(m, "jinja2", None) is sandbox._PROXY]
    for module in swapped:
        module.jinja2 = jinja2
    try:
        yield
    finally:
        sandbox.install()


def ours(files: list[Path], today: dt.date) -> tuple[int, int]:
    """validate-config with dry runs on; (valid files, dry runs)."""
    from jetstream_assets.validation import validate_configs

    reports = validate_configs(files, synthetic=True, today=today)
    return sum(r.valid for r in reports), sum(r.dry_runs for r in reports)


def _timed(fn, *args):
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn(*args)
    return time.process_time() - cpu, time.perf_counter() - wall, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub", type=Path, default=SAMPLE)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    today = dt.date.today()
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        root = _git_copy(args.hub, Path(tmp))
        files = sorted((root / "jetstream").glob("*.toml"))
        with plain_jinja():
            reference(root, files[:1], today)  # warm-up: imports, first-use caches
        ours(files[:1], today)
        best_ref = best_ours = None
        for _ in range(args.rounds):
            with plain_jinja():
                r = _timed(reference, root, files, today)
            o = _timed(ours, files, today)
            best_ref = r if best_ref is None or r[0] < best_ref[0] else best_ref
            best_ours = o if best_ours is None or o[0] < best_ours[0] else best_ours
    ref_cpu, ref_wall, ref_ok = best_ref
    our_cpu, our_wall, (our_ok, dry_runs) = best_ours
    print(f"{len(files)} experiment configs of {args.hub}, best of {args.rounds} rounds")
    print(f"  metric-config-parser parse + resolve (its plain jinja2, as in Jetstream):\n"
          f"                                         {ref_cpu:6.2f} s CPU ({ref_wall:6.2f} s wall), {ref_ok} resolve")
    print(f"  validate-config (dry runs on)        : {our_cpu:6.2f} s CPU ({our_wall:6.2f} s wall), {our_ok} valid, "
          f"{dry_runs} dry runs")
    print(f"  ratio validate-config / metric-config-parser: {our_cpu / ref_cpu:.2f} (CPU), "
          f"{our_wall / ref_wall:.2f} (wall)")


if __name__ == "__main__":
    main()
