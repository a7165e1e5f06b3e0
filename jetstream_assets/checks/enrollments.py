"""Checks of an experiment's enrollments: the clients split across branches as configured (sample ratio
mismatch), and enrollment found any clients at all.

A sample ratio mismatch (SRM) means the branches did not receive the shares of clients Experimenter's
branch ratios promise. Randomisation alone almost never produces a large one, so it points at something
that treats branches differently (crashes, unenrollments, lost telemetry, a targeting bug), and that same
thing can bias every comparison between the branches. Jetstream itself does not test for it; a data
scientist would otherwise only notice by reading the `count` statistic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from jetstream_assets.checks.results import (
    Outcome,
    computed_cells,
    failed_cells,
    guarded,
    metadata_value,
    nothing_to_check,
)
from jetstream_assets.partitions import ANALYSIS_PARTITIONS

SAMPLE_RATIO_MISMATCH = "sample_ratio_mismatch"
ENROLLED_CLIENTS = "enrolled_clients"
SRM_SEVERITY = dg.AssetCheckSeverity.WARN
ENROLLED_CLIENTS_SEVERITY = dg.AssetCheckSeverity.ERROR

# p below this flags a mismatch: strict, because the test runs on every experiment and a false alarm
# sends someone hunting for a bug that is not there.
SRM_P_THRESHOLD = 0.001
# Below this many expected clients in a branch the chi-square approximation is rough.
MIN_EXPECTED_CLIENTS = 5
# Metadata entry (a JSON object branch -> enrolled clients) that compute_enrollments records for the checks.
BRANCH_CLIENTS = "branch_clients"
# How clients whose enrollment event named no branch are counted.
NO_BRANCH = "(no branch)"
# Experimenter's ratio when a branch gives none.
DEFAULT_RATIO = 1.0

WHAT_TO_DO = (
    "Something enrolled, kept or counted clients differently in some branch (for example a branch that "
    "crashes, unenrolls clients or stops sending telemetry, targeting or enrollment code that treats branches "
    "differently, or ratios changed while enrolling), and comparisons between these branches may be biased. "
    "Treat their results with caution and find the cause first: compare enrollment and unenrollment events "
    "per branch and day, and check the branch ratios in Experimenter."
)


def _count(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"


@dataclass(frozen=True)
class SampleRatioMismatch:
    """Outcome of the SRM test of one experiment.

    `observed` holds every configured branch (0 when it got no clients) followed by any branch clients
    enrolled in that is not configured; `expected` the clients each configured branch should have got.
    `chi_square` and `p_value` are None when there was no split to test (see `notes`).
    """

    observed: dict[str, int]
    ratios: dict[str, float]
    expected: dict[str, float]
    chi_square: float | None
    p_value: float | None
    degrees_of_freedom: int
    passed: bool
    threshold: float = SRM_P_THRESHOLD
    stray_clients: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    @property
    def description(self) -> str:
        """What the result means, in plain words, and what to do about a mismatch."""
        figures = "; ".join(
            f"{b}: {_count(self.observed[b])} clients ({_count(self.expected[b])} expected)"
            if b in self.expected
            else f"{b}: {_count(self.observed[b])} clients (not expected)"
            for b in self.observed
        )
        ratios = " : ".join(f"{b} {r:g}" for b, r in self.ratios.items())
        parts: list[str] = []
        mismatch = self.tested and self.p_value < self.threshold
        if self.stray_clients:
            parts.append(
                f"Sample ratio mismatch: {_count(sum(self.stray_clients.values()))} clients enrolled in branches "
                f"that should get none (configured ratios {ratios})."
            )
        elif mismatch:
            parts.append(
                f"Sample ratio mismatch: the branches did not get the shares of clients their configured ratios "
                f"({ratios}) call for."
            )
        elif self.tested:
            parts.append(
                f"No sample ratio mismatch: enrolled clients split across branches as the configured ratios "
                f"({ratios}) say, within chance."
            )
        else:
            parts.append(f"No split of clients between branches to test (configured ratios {ratios}).")
        parts.append(f"{figures}.")
        if self.tested:
            dof = f"{self.degrees_of_freedom} degree{'s' if self.degrees_of_freedom != 1 else ''} of freedom"
            test = f"Chi-square {self.chi_square:.3g} with {dof}, p = {self.p_value:.3g}"
            if mismatch:
                parts.append(f"{test} < {self.threshold:g}: a split this uneven is practically never chance.")
            else:
                parts.append(f"{test} (a mismatch is flagged below p = {self.threshold:g}).")
        parts.extend(self.notes)
        if not self.passed:
            parts.append(WHAT_TO_DO)
        return " ".join(parts)

    def figures(self) -> dict[str, Any]:
        """The figures as plain JSON (metadata of the check)."""
        return {
            "observed": dict(self.observed),
            "expected": {b: round(e, 3) for b, e in self.expected.items()},
            "ratios": dict(self.ratios),
            "chi_square": self.chi_square,
            "p_value": self.p_value,
            "degrees_of_freedom": self.degrees_of_freedom,
            "passed": self.passed,
            "threshold": self.threshold,
            "description": self.description,
        }


def _ratio(branch: str, ratio: float | None, notes: list[str]) -> float:
    if ratio is None:
        notes.append(f"Branch {branch!r} has no ratio in Experimenter; it counts as {DEFAULT_RATIO:g}.")
        return DEFAULT_RATIO
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio < 0:
        raise ValueError(
            f"Branch {branch!r} has ratio {ratio!r}: Experimenter's branches[].ratio must be a non-negative "
            "number. Fix the branch in Experimenter."
        )
    return float(ratio)


def sample_ratio_mismatch(
    observed: Mapping[str, int],
    ratios: Mapping[str, float | None],
    threshold: float = SRM_P_THRESHOLD,
) -> SampleRatioMismatch:
    """Chi-square goodness of fit of enrolled clients per branch against the configured branch ratios.

    A configured branch missing from `observed` had no clients (0). Branches with ratio 0 should get no
    clients: they are left out of the test, and any client in one fails the check, as does any client in a
    branch that is not configured at all. With fewer than two branches of positive ratio, or no clients in
    them, there is no split to test and the result passes (the enrolled_clients check covers emptiness).
    """
    if not ratios:
        raise ValueError("The experiment has no branches in Experimenter, so there is no ratio to test against.")
    notes: list[str] = []
    weights = {branch: _ratio(branch, ratio, notes) for branch, ratio in ratios.items()}
    counts: dict[str, int] = {}
    for branch, n in observed.items():
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0 or not float(n).is_integer():
            raise ValueError(f"Branch {branch!r} has {n!r} enrolled clients; a count must be a whole number >= 0.")
        counts[branch] = int(n)
    counts = {**{b: counts.get(b, 0) for b in weights}, **{b: n for b, n in counts.items() if b not in weights}}

    tested = [b for b, w in weights.items() if w > 0]
    stray = {b: n for b, n in counts.items() if weights.get(b, 0) == 0 and n > 0}
    for branch, w in weights.items():
        if w == 0 and counts[branch] == 0:
            notes.append(
                f"Branch {branch!r} has ratio 0: it should get no clients, got none, and is left out of the test."
            )
    for branch, n in stray.items():
        if branch == NO_BRANCH:
            why = "their enrollment events name no branch"
        elif branch in weights:
            why = f"branch {branch!r} has ratio 0 in Experimenter, so it should get none"
        else:
            why = f"{branch!r} is not a branch of the experiment in Experimenter (renamed? wrong slug?)"
        notes.append(f"{_count(n)} clients enrolled where none should be: {why}. That alone fails the check.")

    total = sum(counts[b] for b in tested)
    weight = sum(weights[b] for b in tested)
    expected = {b: (total * weights[b] / weight if weights[b] > 0 else 0.0) for b in weights}
    chi_square = p_value = None
    dof = max(len(tested) - 1, 0)
    if len(tested) < 2:
        notes.append(
            "Fewer than two branches have a positive ratio, so there is no split between branches to test."
        )
    elif total == 0:
        notes.append("No clients enrolled in the branches with a positive ratio (see the enrolled_clients check).")
    else:
        chi_square = float(sum((counts[b] - expected[b]) ** 2 / expected[b] for b in tested))
        from scipy import special  # chi2.sf, as scipy.stats computes it; scipy.stats would cost a run 0.5 s

        p_value = float(special.chdtrc(dof, chi_square))
        small = [b for b in tested if expected[b] < MIN_EXPECTED_CLIENTS]
        if small:
            notes.append(
                f"Branches {small} expect fewer than {MIN_EXPECTED_CLIENTS} clients; the chi-square test is only "
                "approximate at such sizes."
            )
    passed = not stray and (p_value is None or p_value >= threshold)
    return SampleRatioMismatch(
        observed=counts,
        ratios=weights,
        expected=expected,
        chi_square=chi_square,
        p_value=p_value,
        degrees_of_freedom=dof,
        passed=passed,
        threshold=threshold,
        stray_clients=stray,
        notes=notes,
    )


def branch_clients(counts: Any) -> dict[str, int]:
    """Clients per branch from the enrollments' `SELECT branch, COUNT(*) AS clients` rows (a DataFrame)."""
    return {
        NO_BRANCH if branch is None or branch != branch else str(branch): int(n)
        for branch, n in zip(counts["branch"], counts["clients"])
    }


def _latest_per_experiment(outcomes: list[Outcome]) -> dict[str, tuple[Any, dict]]:
    """One computed enrollments cell per experiment (the latest date, should a step compute it twice)."""
    latest: dict[str, tuple[Any, dict]] = {}
    for plan, metadata in computed_cells(outcomes):
        if BRANCH_CLIENTS in metadata:
            latest[plan.slug] = (plan, metadata)
    return latest


def _no_enrollments_why(outcomes: list[Outcome]) -> str:
    failed = failed_cells(outcomes)
    why = "no enrollments were computed (enrollment has not ended, or an earlier run already computed them)."
    if failed:
        why += f" {len(failed)} cell(s) failed; their materializations say why: {', '.join(failed[:5])}."
    return why


def sample_ratio_mismatch_result(outcomes: list[Outcome]) -> dg.AssetCheckResult:
    """The SRM result of some cells (run_cells passes one): fails when any experiment among them fails."""
    cells = _latest_per_experiment(outcomes)
    if not cells:
        return nothing_to_check(SAMPLE_RATIO_MISMATCH, SRM_SEVERITY, _no_enrollments_why(outcomes))
    results: dict[str, SampleRatioMismatch] = {}
    for slug, (plan, metadata) in cells.items():
        ratios = {b.slug: b.ratio for b in plan.experiment.branches}
        try:
            results[slug] = sample_ratio_mismatch(metadata_value(metadata, BRANCH_CLIENTS), ratios)
        except ValueError as e:
            raise ValueError(f"Experiment {slug!r}: {e}") from e
    failing = [s for s, r in results.items() if not r.passed]
    # the experiment to headline: a failing one, else the one closest to failing
    worst = min(results, key=lambda s: (results[s].passed, results[s].p_value if results[s].tested else 2.0))
    rows = ["| experiment | branch | ratio | clients | expected |", "|---|---|---|---|---|"]
    for slug, r in results.items():
        for branch, n in r.observed.items():
            ratio = f"{r.ratios[branch]:g}" if branch in r.ratios else "not configured"
            rows.append(f"| {slug} | {branch} | {ratio} | {n} | {_count(r.expected.get(branch, 0.0))} |")
    metadata: dict[str, Any] = {
        "checked": len(results),
        "experiment": worst,
        "experiments_failed": dg.MetadataValue.json(failing),
        "branches": dg.MetadataValue.md("\n".join(rows)),
        "figures": dg.MetadataValue.json({s: r.figures() for s, r in results.items()}),
    }
    if results[worst].tested:
        metadata["chi_square"] = results[worst].chi_square
        metadata["p_value"] = results[worst].p_value
    shown = failing or list(results)
    description = "\n\n".join(f"{s}: {results[s].description}" for s in shown)
    return dg.AssetCheckResult(
        check_name=SAMPLE_RATIO_MISMATCH,
        passed=not failing,
        severity=SRM_SEVERITY,
        description=description,
        metadata=metadata,
    )


def no_clients_description(slug: str, first_day: Any, last_day: Any) -> str:
    """Why an experiment may have no enrolled clients, and what to do about each cause."""
    return (
        f"Experiment {slug!r} has no enrolled clients between {first_day} and {last_day}, so every metric and "
        "statistic of it will be empty. Likely causes: (1) the slug in Experimenter differs from the one "
        "clients send in their enrollment events (a typo, or an experiment renamed after launch); (2) the "
        f"enrollment query selects nothing: a custom `enrollment_query` in jetstream/{slug}.toml, or the "
        "platform default; run the SQL in the enrollments materialization and look at what it filters on; "
        "(3) the telemetry of the enrollment period is not complete yet (late-arriving data): rerun the "
        "experiment once the tables have caught up."
    )


def enrolled_clients_result(outcomes: list[Outcome]) -> dg.AssetCheckResult:
    """The result of some cells (run_cells passes one): fails when an experiment among them has no clients."""
    cells = _latest_per_experiment(outcomes)
    if not cells:
        return nothing_to_check(ENROLLED_CLIENTS, ENROLLED_CLIENTS_SEVERITY, _no_enrollments_why(outcomes))
    clients = {slug: sum(metadata_value(m, BRANCH_CLIENTS).values()) for slug, (_, m) in cells.items()}
    empty = [slug for slug, n in clients.items() if n == 0]
    if empty:
        description = "\n\n".join(
            no_clients_description(s, cells[s][0].start_date, cells[s][0].last_enrollment_date) for s in empty
        )
    else:
        description = "; ".join(
            f"Experiment {s!r} has {_count(n)} enrolled clients "
            f"({', '.join(f'{b}: {_count(c)}' for b, c in metadata_value(cells[s][1], BRANCH_CLIENTS).items())})"
            for s, n in clients.items()
        ) + "."
    return dg.AssetCheckResult(
        check_name=ENROLLED_CLIENTS,
        passed=not empty,
        severity=ENROLLED_CLIENTS_SEVERITY,
        description=description,
        metadata={
            "checked": len(clients),
            "clients": dg.MetadataValue.json(clients),
            "experiments_without_clients": dg.MetadataValue.json(empty),
            **({"experiment": empty[0]} if empty else {}),
        },
    )


def enrollments_check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            SAMPLE_RATIO_MISMATCH,
            asset=asset,
            partitions_def=ANALYSIS_PARTITIONS,
            description=(
                "Enrolled clients per branch match the experiment's branch ratios (chi-square goodness of fit; "
                f"warns below p = {SRM_P_THRESHOLD:g}). A mismatch means something treated branches differently "
                "and comparisons between them may be biased."
            ),
        ),
        dg.AssetCheckSpec(
            ENROLLED_CLIENTS,
            asset=asset,
            partitions_def=ANALYSIS_PARTITIONS,
            description="Once enrollment has ended, the experiment has enrolled clients.",
        ),
    ]


def enrollments_checks(outcome: Outcome, resources: Any = None) -> list[dg.AssetCheckResult]:  # noqa: ARG001
    """The enrollments asset's checks of one cell, recorded on that cell's partition: the verdict of an
    experiment stays on its own partitions, whatever other experiments' steps find later."""
    return [
        guarded(SAMPLE_RATIO_MISMATCH, SRM_SEVERITY, lambda: sample_ratio_mismatch_result([outcome])),
        guarded(ENROLLED_CLIENTS, ENROLLED_CLIENTS_SEVERITY, lambda: enrolled_clients_result([outcome])),
    ]
