"""Decisions of asynchronous inference, as pure functions (no I/O, time passed in)."""

from __future__ import annotations

import random
from typing import Sequence

#: an instance that died under a request gets it again this many times before it fails
MAX_ATTEMPTS = 3
#: ended requests forgotten per store transaction by the retention sweep
SWEEP_BATCH = 1000
#: seconds before a request's InvocationTimeoutSeconds after which its instance no longer writes
#: the result itself but hands it to the server, whose timeout and write are one sequence: a
#: result and a timeout's error document are then not both written (short of the instance
#: stalling this long between reading its clock and linking the file)
WRITE_GUARD = 1.0


def expired(created: float, ttl_seconds: float, now: float) -> bool:
    """A request that waited in the queue longer than its RequestTTLSeconds is not run."""
    return now - created > ttl_seconds


def sweep_interval(retention_seconds: float) -> float:
    """How often ended requests past their retention are looked for: a quarter of the
    retention, at least every hour and at most four times a second."""
    return min(max(retention_seconds / 4, 0.25), 3600.0)


def backlog_metrics(queued_since: Sequence[float], running: int, instances: int,
                    now: float) -> dict[str, float]:
    """SageMaker's async endpoint metrics from the queue's state.

    ``queued_since`` holds the arrival times of requests not yet finished that are waiting;
    ``running`` counts those being processed. The backlog counts both, as SageMaker's does.
    Per instance, an endpoint without instances counts as one, so a backlog on an endpoint
    scaled to zero still reads as load to a target-tracking policy.
    """
    backlog = len(queued_since) + running
    return {
        "ApproximateBacklogSize": float(backlog),
        "ApproximateBacklogSizePerInstance": backlog / max(instances, 1),
        "ApproximateAgeOfOldestRequest": max(0.0, now - min(queued_since)) if queued_since else 0.0,
        "HasBacklogWithoutCapacity": 1.0 if backlog and not instances else 0.0,
    }


def pick_variant(free: Sequence[int], weights: Sequence[float], r: float | None = None) -> int:
    """Index of the variant for the next request among those with a free slot (``free[i] > 0``),
    by traffic weight; -1 when none has room. Variants of weight 0 take work only when no
    weighted variant has room."""
    open_ = [i for i, f in enumerate(free) if f > 0]
    if not open_:
        return -1
    total = sum(weights[i] for i in open_)
    if total <= 0:
        return open_[0]
    x = (random.random() if r is None else r) * total
    for i in open_:
        x -= weights[i]
        if x < 0:
            return i
    return open_[-1]


def retry_delays(attempts: int, base: float) -> list[float]:
    """Backoff before each webhook retry: base, 2·base, 4·base ... (``attempts`` - 1 of them)."""
    return [base * 2**i for i in range(attempts - 1)]
