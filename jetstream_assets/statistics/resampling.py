"""Vectorised resampling over compressed client data.

Jetstream's reference draws, for every resample, one weight per distinct value (Bayesian bootstrap) or one
index per client (classical bootstrap), in a Python loop: O(num_samples x clients). Here each branch is
compressed once into at most a few thousand *blocks* of clients, and every resample draws one weight per
block, all resamples at once in a (num_samples x blocks) array. Why this is equivalent:

* Exact part. Clients with the same value form one block, exactly as mozanalysis' own tally
  (`np.unique(..., return_counts=True)`): a Dirichlet(1, ..., 1) over clients summed over a block is a
  Gamma(count) share, and a classical resample's count of a block is its multinomial cell. When a branch has
  few distinct values (binary, integer, mostly-zero metrics; small data) every block is one distinct value
  and the draws have the reference's distribution exactly.
* Approximate part (only when a branch has more distinct values than `MAX_BLOCKS`). Clients sorted by value
  are cut into consecutive blocks (the extreme values at both ends, and every value shared by many clients,
  stay blocks of their own). A block's total weight is still drawn exactly (Gamma for the Bayesian
  bootstrap, multinomial for the classical one); only *how that weight spreads inside the block* is replaced
  by a normal draw with the same conditional mean and covariance (for the Dirichlet: block mean and
  within-block variance / (m + 1); for a classical resample of N clients: N x block mean and N x block
  covariance). Conditional first and second moments of every resampled statistic are therefore exact, and
  the within-block spread of sorted neighbours is tiny next to the spread between blocks, so quantiles of
  the resampled statistic (the interval ends) agree with the reference's to Monte Carlo precision.

Randomness comes from numpy `Generator`s seeded from (seed, branch, metric, statistic), so results are
reproducible with a seed and one branch's draws do not depend on which other branches exist.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

# Blocks per branch (approximate part) and the size of the exact singleton tails at each end.
MAX_BLOCKS = 1024
TAIL_SINGLETONS = 64
# Cap on the elements of one (resamples x blocks) working array, to bound peak memory (~8 bytes each).
CHUNK_ELEMENTS = 4_000_000


def make_rng(seed: int | None, *labels: str) -> np.random.Generator:
    """A generator for one (seed, labels) stream; fresh entropy when seed is None."""
    if seed is None:
        return np.random.default_rng()
    words = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF]
    words += [zlib.crc32(str(label).encode("utf-8")) for label in labels]
    return np.random.default_rng(np.random.SeedSequence(words))


@dataclass
class Blocks:
    """A branch compressed into blocks of clients.

    count: clients per block; mean: per-block mean of each column (blocks x d); chol: per-block Cholesky
    factor of the within-block population covariance (blocks x d x d), zero for exact blocks.
    """

    count: np.ndarray
    mean: np.ndarray
    chol: np.ndarray
    approximate: np.ndarray  # indices of blocks with within-block spread

    @property
    def n(self) -> int:
        return int(self.count.sum())


def compress(values: np.ndarray, max_blocks: int | None = None, tail: int | None = None) -> Blocks:
    """Compress (clients x d) finite values into blocks of identical or neighbouring values.

    Rows are sorted lexicographically (first column first), tallied into distinct rows, and, if more
    distinct rows than `max_blocks` remain, cut into consecutive blocks of about equal client counts.
    """
    max_blocks = MAX_BLOCKS if max_blocks is None else max_blocks
    tail = TAIL_SINGLETONS if tail is None else tail
    x = np.asarray(values, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    n, d = x.shape
    if n == 0:
        return Blocks(np.zeros(0), np.zeros((0, d)), np.zeros((0, d, d)), np.zeros(0, dtype=int))

    if d == 1:
        uniq, counts = np.unique(x[:, 0], return_counts=True)
        uniq = uniq[:, None]
    else:
        order = np.lexsort(x.T[::-1])  # first column first
        xs = x[order]
        new_row = np.ones(n, dtype=bool)
        new_row[1:] = (xs[1:] != xs[:-1]).any(axis=1)
        first = np.flatnonzero(new_row)
        uniq = xs[first]
        counts = np.diff(np.append(first, n))
    k = len(counts)
    if k <= max_blocks:
        return Blocks(counts.astype(float), uniq, np.zeros((k, d, d)), np.zeros(0, dtype=int))

    # Block starts: singleton tails, values held by many clients on their own, equal-count cuts elsewhere.
    tail = min(tail, k // 4)
    middle = max(max_blocks - 2 * tail, 16)
    target = max(1.0, counts[tail : k - tail].sum() / middle)
    cum_before = np.concatenate([[0.0], np.cumsum(counts)[:-1]])
    bucket = np.floor((cum_before - cum_before[tail]) / target)
    starts = np.zeros(k, dtype=bool)
    starts[0] = True
    starts[1:] = bucket[1:] != bucket[:-1]
    starts[: tail + 1] = True
    starts[k - tail :] = True
    heavy = counts >= target / 2
    starts |= heavy
    starts[1:] |= heavy[:-1]
    idx = np.flatnonzero(starts)

    block_count = np.add.reduceat(counts.astype(float), idx)
    block_id = np.cumsum(starts) - 1
    w = counts.astype(float)[:, None]
    block_mean = np.add.reduceat(w * uniq, idx, axis=0) / block_count[:, None]
    dev = uniq - block_mean[block_id]
    # within-block population covariance, d x d per block
    cov = np.add.reduceat(w[:, :, None] * dev[:, :, None] * dev[:, None, :], idx, axis=0) / block_count[:, None, None]
    spread = np.einsum("bii->b", cov) > 0
    chol = np.zeros_like(cov)
    if spread.any():
        jitter = 1e-12 * np.maximum(np.einsum("bii->b", cov[spread]), 1e-300)[:, None, None] * np.eye(d)
        chol[spread] = np.linalg.cholesky(cov[spread] + jitter)
    return Blocks(block_count, block_mean, chol, np.flatnonzero(spread))


def _chunks(num_samples: int, width: int) -> list[tuple[int, int]]:
    step = max(1, CHUNK_ELEMENTS // max(width, 1))
    return [(a, min(a + step, num_samples)) for a in range(0, num_samples, step)]


def bayesian_bootstrap_means(blocks: Blocks, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Posterior draws of the mean under Rubin's Bayesian bootstrap (Dirichlet(1,...,1) over clients).

    A block of m clients gets total weight Gamma(m) (exact: sums of independent Gamma(1)); its weighted
    mean given that total is the block mean plus a normal term of variance within-var / (m + 1), which is
    the exact variance of a Dirichlet(1,...,1)-weighted mean of the block.

    The weights are drawn block by block (all resamples of one block at once): numpy draws Gammas of one
    shape in a tight loop, a third faster than a (resamples x blocks) draw with a shape per column.
    """
    m = blocks.count
    mu = blocks.mean[:, 0]
    approx = blocks.approximate
    sd = blocks.chol[approx, 0, 0] / np.sqrt(m[approx] + 1.0)
    out = np.empty(num_samples)
    for a, b in _chunks(num_samples, len(m)):
        g = np.empty((len(m), b - a))
        for j, shape in enumerate(m):
            rng.standard_gamma(shape, size=b - a, out=g[j])
        total = g.sum(axis=0)
        weighted = mu @ g
        if len(approx):
            z = rng.standard_normal((len(approx), b - a))
            weighted += sd @ (g[approx] * z)
        out[a:b] = weighted / total
    return out


def classical_bootstrap_sums(blocks: Blocks, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Per-resample column sums of a classical (with-replacement, n of n) bootstrap: (num_samples x d).

    Block counts of a resample are Multinomial(n, block share) (exact); the sum of N clients drawn from a
    block has mean N x block mean and covariance N x block covariance, drawn as a normal with those moments.
    """
    m = blocks.count
    n = int(m.sum())
    p = m / m.sum()
    d = blocks.mean.shape[1]
    approx = blocks.approximate
    out = np.empty((num_samples, d))
    for a, b in _chunks(num_samples, len(m)):
        counts = rng.multinomial(n, p, size=b - a).astype(float)
        sums = counts @ blocks.mean
        if len(approx):
            root = np.sqrt(counts[:, approx])  # (s x ba)
            chol = blocks.chol[approx]
            for j in range(d):  # noise_i = sum_j L_ij z_j, scaled by sqrt(N); L is lower triangular
                scaled = root * rng.standard_normal((b - a, len(approx)))
                for i in range(j, d):
                    sums[:, i] += scaled @ chol[:, i, j]
        out[a:b] = sums
    return out


def quantile_bootstrap(sorted_values: np.ndarray, quantiles: list[float], num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap draws of sample quantiles without resampling clients: (num_samples x quantiles).

    The order statistic a resample returns for quantile q is, to the method used by mozanalysis (after
    Spotify's resampling-free quantile bootstrap), the sorted value at a Binomial(n - 1, q) index.
    """
    n = len(sorted_values)
    idx = rng.binomial(n - 1, np.asarray(quantiles)[None, :], size=(num_samples, len(quantiles)))
    return sorted_values[idx]


def quantiles(values: np.ndarray, q) -> np.ndarray:
    """`np.quantile(values, q, axis=0)` (its default linear method), the same floats, from one sort.

    numpy sorts floats with vectorised (SIMD) code, several times faster than the partition np.quantile
    makes; the order statistics are the same, and so is numpy's interpolation, step by step: the virtual
    index (n - 1) q, its neighbours (the last value past the end), the lerp from the nearer end, and NaN
    where a lane holds a NaN. (Only the sign of a zero may differ: -0.0 and 0.0 sort as equals.)"""
    # lanes sorted along the last axis, the fast one (a transposed view keeps axis 0 the samples)
    x = np.sort(values, axis=0) if np.ndim(values) < 2 else np.sort(np.asarray(values).T, axis=-1).T
    n = x.shape[0]
    q = np.asarray(q, dtype=float)
    virtual = (n - 1) * q
    previous = np.atleast_1d(np.floor(virtual).astype(np.intp)).reshape(q.shape)
    following = np.array(previous + 1)
    above = virtual >= n - 1
    previous[above] = following[above] = -1
    gamma = np.asarray(virtual - previous).reshape(q.shape + (1,) * (x.ndim - 1))
    a, b = x[previous], x[following]
    diff = b - a
    result = np.asarray(np.add(a, diff * gamma))
    np.subtract(b, diff * (1 - gamma), out=result, where=gamma >= 0.5)
    nan = np.isnan(x[-1])
    if nan.any():
        np.copyto(result, x[-1], where=nan)
    return result


def summarize(samples: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and equal-tailed interval ends of draws along axis 0 (non-finite draws propagate as NaN)."""
    lo_q = (1 - ci) / 2
    with np.errstate(invalid="ignore", over="ignore"):
        point = np.mean(samples, axis=0)
        lower, upper = quantiles(samples, [lo_q, 1 - lo_q])
    return point, lower, upper
