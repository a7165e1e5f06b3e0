"""One run per experiment at a time, whatever the run covers: each experiment is a Dagster concurrency pool of
one slot (`jetstream/experiment/<slug>`), and an analysis run holds the pools of all its experiments while
it works.

The run queue's `tag_concurrency_limits` on jetstream/experiment keeps two runs of one experiment apart, but
the Experimenter sensor's daily batch covers many experiments and cannot carry one value of that tag. So the
first analysis step of every run (sensor, CLI, UI, backfill) claims its experiments' pools in slug order
(two runs claiming overlapping sets can never wait for each other in a circle) and waits, telling its log
which run it waits for, while another run holds one. Claims are first come, first served (Dagster's pending
queue). The run's last step frees them; a run that ended without doing so (failed or killed before its last
step) is freed by the next run that waits for it, so nothing needs a daemon. The UI shows the pools, their
holder and who waits under Deployment -> Concurrency.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES

logger = logging.getLogger("jetstream_assets")

POOL_PREFIX = "jetstream/experiment/"
LOCK_STEP = "experiment-lock"  # the claim's step key: one claim per run and experiment
_ONE_SLOT: set[tuple[int, str]] = set()  # (instance, pool) this process has seen set to one slot


def pool(slug: str) -> str:
    return POOL_PREFIX + slug


def holders(instance: dg.DagsterInstance, slug: str, run_id: str | None = None) -> list[str]:
    """The runs (other than `run_id`) holding or first in line for the experiment's pool; a finished run's
    claim is freed on the way."""
    storage = instance.event_log_storage
    info = storage.get_concurrency_info(pool(slug))
    ids = [s.run_id for s in info.claimed_slots] + [p.run_id for p in info.pending_steps if p.assigned_timestamp]
    live = []
    for holder in dict.fromkeys(i for i in ids if i != run_id):
        run = instance.get_run_by_id(holder)
        if run is None or run.status in FINISHED_STATUSES:
            storage.free_concurrency_slots_for_run(holder)
        else:
            live.append(holder)
    return live


def hold(
    instance: dg.DagsterInstance,
    run_id: str,
    slugs: Iterable[str],
    on_wait: Callable[[str, list[str]], None] | None = None,
    poll_seconds: float = 1.0,
) -> None:
    """Claim every experiment's pool for `run_id`, in slug order, waiting while another run holds one."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:  # an instance without pools: the queue's tag limit only
        return
    for slug in sorted(set(slugs)):
        key = pool(slug)
        if (id(instance), key) not in _ONE_SLOT:
            if storage.get_concurrency_info(key).slot_count != 1:
                storage.set_concurrency_slots(key, 1)
            _ONE_SLOT.add((id(instance), key))
        told: list[str] | None = None
        while not storage.claim_concurrency_slot(key, run_id, LOCK_STEP).is_claimed:
            waiting_for = holders(instance, slug, run_id)
            if not waiting_for and storage.get_concurrency_info(key).slot_count != 1:  # the pool was removed
                storage.set_concurrency_slots(key, 1)
            if on_wait is not None and waiting_for and waiting_for != told:
                on_wait(slug, waiting_for)
            told = waiting_for
            time.sleep(poll_seconds)


def release(instance: dg.DagsterInstance, run_id: str) -> None:
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(run_id)

