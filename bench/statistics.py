"""Benchmark: our statistics engine against mozanalysis called the way Jetstream calls it.

Jetstream runs each resampling statistic once per reference branch (every branch in turn), and each run
resamples every branch. This compares, on a continuous heavy-tailed metric (log-normal, sigma 1.5):
bootstrap_mean, deciles and population_ratio at 100,000 and 1,000,000 clients per branch, 2 and 3 branches.
It prints both wall times, the speed-up, how far our interval ends are from the reference's (as a share of
the reference interval's width, max and median over rows) and our peak traced memory.

    .venv/bin/python bench/statistics.py                       # everything (takes a long time at 1M)
    .venv/bin/python bench/statistics.py --sizes 100000 --branches 2
    .venv/bin/python bench/statistics.py --sizes 1000000 --reference-samples 500   # reference time extrapolated

With --reference-samples M < --num-samples, the reference's bootstrap_mean and population_ratio (whose cost
is a fixed part plus a Python loop over resamples) are timed at M and 2M resamples and extrapolated
linearly to --num-samples; their CI differences then include the reference's larger Monte Carlo error.
deciles' reference is always run in full (it does not loop over resamples).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jetstream_assets.statistics import compute_statistic  # noqa: E402

STATISTICS = ["bootstrap_mean", "deciles", "population_ratio"]
LOOPED = {"bootstrap_mean", "population_ratio"}  # the reference loops over resamples in Python
BRANCH_NAMES = ["control", "treatment-a", "treatment-b", "treatment-c"]


def make_data(clients: int, branches: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = BRANCH_NAMES[:branches]
    frames = []
    for i, b in enumerate(names):
        frames.append(
            pd.DataFrame(
                {
                    "branch": b,
                    "metric": rng.lognormal(1.0 + 0.01 * i, 1.5, clients),
                    "denominator": rng.lognormal(0.0, 1.0, clients),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _label(index, q: float):
    for i in index:
        try:
            if abs(float(i) - q) < 1e-5:
                return i
        except (TypeError, ValueError):
            continue
    return None


def _flatten(ma: dict, reference: str, q: tuple[float, float]) -> dict:
    """{(branch, comparison, comparison_to_branch, parameter): (lower, upper)} of a mozanalysis result."""
    out = {}

    def ends(series):
        lo, hi = _label(series.index, q[0]), _label(series.index, q[1])
        return (series[lo] if lo is not None else np.nan, series[hi] if hi is not None else np.nan)

    for b, s in ma["individual"].items():
        if isinstance(s, pd.DataFrame):
            for p, row in s.iterrows():
                out[(b, None, None, round(float(p), 6))] = ends(row)
        else:
            out[(b, None, None, None)] = ends(s)
    for b, s in ma["comparative"].items():
        for comp, key in (("difference", "abs_uplift"), ("relative_uplift", "rel_uplift")):
            part = s[key]
            if isinstance(part, pd.DataFrame):
                for p, row in part.iterrows():
                    out[(b, comp, reference, round(float(p), 6))] = ends(row)
            else:
                out[(b, comp, reference, None)] = ends(part)
    return out


def run_reference(df: pd.DataFrame, statistic: str, num_samples: int) -> tuple[float, dict]:
    """mozanalysis, once per reference branch, as Jetstream's statistics do."""
    from mozanalysis.bayesian_stats import bayesian_bootstrap
    from mozanalysis.frequentist_stats import bootstrap

    q = (0.025, 0.975)
    rows: dict = {}
    start = time.perf_counter()
    for reference in df.branch.unique():
        if statistic == "bootstrap_mean":
            ma = bayesian_bootstrap.compare_branches(
                df, col_label="metric", ref_branch_label=reference, num_samples=num_samples,
                individual_summary_quantiles=q, threshold_quantile=0.995,
            )
        elif statistic == "deciles":
            ma = bootstrap.compare_branches_quantiles(
                df, col_label="metric", ref_branch_label=reference, num_samples=num_samples,
                individual_summary_quantiles=q, comparative_summary_quantiles=q,
            )
        else:
            ma = bootstrap.compare_branches(
                df, col_label=["metric", "denominator"], ref_branch_label=reference,
                stat_fn=lambda d: {np.mean(d[:, 0]) / np.mean(d[:, 1])}, num_samples=num_samples,
                individual_summary_quantiles=q, threshold_quantile=0.995,
            )
        rows.update(_flatten(ma, reference, q))
    return time.perf_counter() - start, rows


def run_ours(df: pd.DataFrame, statistic: str, num_samples: int) -> tuple[float, int, dict]:
    params = {"num_samples": num_samples}
    metric = "metric"
    if statistic == "population_ratio":
        params.update(numerator="metric", denominator="denominator")
        metric = "ratio"
    start = time.perf_counter()
    frame = compute_statistic(df, metric, statistic, params, seed=1)
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    compute_statistic(df, metric, statistic, params, seed=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rows = {
        (r.branch, r.comparison, r.comparison_to_branch, None if r.parameter is None else round(float(r.parameter), 6)): (
            r.lower, r.upper,
        )
        for r in frame.itertuples()
    }
    return elapsed, peak, rows


def ci_differences(ours: dict, ref: dict) -> tuple[float, float, int]:
    shares = []
    for key, (lo, hi) in ref.items():
        width = hi - lo
        if key not in ours or not np.isfinite(width) or width <= 0:
            continue
        o_lo, o_hi = ours[key]
        if o_lo is None or o_hi is None:
            continue
        shares += [abs(o_lo - lo) / width, abs(o_hi - hi) / width]
    if not shares:
        return float("nan"), float("nan"), 0
    return float(np.max(shares)), float(np.median(shares)), len(shares) // 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="Clients per branch, comma-separated.")
    parser.add_argument("--branches", default="2,3", help="Branch counts, comma-separated.")
    parser.add_argument("--statistics", default=",".join(STATISTICS), help="Subset of " + ",".join(STATISTICS))
    parser.add_argument("--num-samples", type=int, default=10000)
    parser.add_argument("--reference-samples", type=int, default=None, help="Resamples for the reference (time scaled).")
    parser.add_argument("--no-reference", action="store_true", help="Only time our engine.")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    ref_samples = args.reference_samples or args.num_samples
    scale = args.num_samples / ref_samples
    print(
        f"num_samples={args.num_samples}"
        + (
            f"; reference bootstrap_mean/population_ratio timed at {ref_samples} and {2 * ref_samples} resamples "
            f"and extrapolated linearly to {args.num_samples} (CI columns then compare with the {2 * ref_samples}-resample run)"
            if scale != 1 else "; reference run in full"
        )
    )
    header = f"{'statistic':<17}{'clients':>9}{'br':>3}{'ours s':>9}{'ref s':>10}{'speed-up':>10}{'CI max%':>9}{'CI med%':>9}{'rows':>6}{'peak MiB':>10}"
    print(header)
    print("-" * len(header))
    for size in [int(s) for s in args.sizes.split(",")]:
        for k in [int(b) for b in args.branches.split(",")]:
            df = make_data(size, k)
            for statistic in args.statistics.split(","):
                ours_s, peak, ours = run_ours(df, statistic, args.num_samples)
                if args.no_reference:
                    ref_s, dmax, dmed, n = float("nan"), float("nan"), float("nan"), 0
                elif scale != 1 and statistic in LOOPED:
                    # the reference's cost is fixed + linear in resamples: time two counts, extrapolate
                    np.random.seed(7)
                    t1, _ = run_reference(df, statistic, ref_samples)
                    t2, ref = run_reference(df, statistic, 2 * ref_samples)
                    ref_s = t1 + (t2 - t1) * (args.num_samples - ref_samples) / ref_samples
                    dmax, dmed, n = ci_differences(ours, ref)
                else:
                    np.random.seed(7)
                    ref_s, ref = run_reference(df, statistic, args.num_samples)
                    dmax, dmed, n = ci_differences(ours, ref)
                print(
                    f"{statistic:<17}{size:>9}{k:>3}{ours_s:>9.2f}{ref_s:>10.1f}{ref_s / ours_s:>9.0f}x"
                    f"{100 * dmax:>8.2f}%{100 * dmed:>8.2f}%{n:>6}{peak / 2**20:>10.0f}",
                    flush=True,
                )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS (data + reference + ours): {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
