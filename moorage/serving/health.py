"""Health verdicts for one instance, as a pure function of what was observed.

A single-worker instance cannot answer a ping while it is computing, so a slow ping counts
against it only when it is idle. A busy instance is judged instead by how long it has gone
without finishing anything: past the invocation timeout plus a grace, it is hung.
"""

from __future__ import annotations

from enum import Enum


class Verdict(str, Enum):
    HEALTHY = "healthy"
    FAILING = "failing"  # a failed check, below the threshold
    REPLACE = "replace"


def assess(*, exited: bool, ping_ok: bool | None, outstanding: int, busy_for: float,
           failures: int, threshold: int, hung_after: float) -> tuple[Verdict, int]:
    """Returns the verdict and the new count of consecutive failures.

    Args:
        exited: the process is gone.
        ping_ok: result of this round's ping; None if no ping was sent (instance busy).
        outstanding: requests in flight on the instance.
        busy_for: seconds since the instance last finished a request while it had work.
        failures: consecutive failed checks before this one.
        threshold: failures that make an instance unhealthy.
        hung_after: seconds without progress after which a busy instance is hung.
    """
    if exited:
        return Verdict.REPLACE, failures + 1
    if outstanding > 0 and busy_for > hung_after:
        return Verdict.REPLACE, failures + 1
    if ping_ok is None or ping_ok:
        return Verdict.HEALTHY, 0
    failures += 1
    return (Verdict.REPLACE if failures >= threshold else Verdict.FAILING), failures
