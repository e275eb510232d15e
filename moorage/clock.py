"""All time goes through a Clock, so decisions can be tested with a FakeClock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps)."""

    def monotonic(self) -> float:
        """Monotonic seconds (for durations and deadlines)."""


def timestamp(clock: Clock) -> float:
    """A resource timestamp: wall-clock seconds to the millisecond, as AWS sends them."""
    return round(clock.time(), 3)


class SystemClock:
    """Wall-clock time that never goes backwards: a VM's clock can be stepped back by a few
    milliseconds, and a job must not end before it started."""

    def __init__(self) -> None:
        self._last = 0.0

    def time(self) -> float:
        now = time.time()
        if now < self._last:
            return self._last
        self._last = now
        return now

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
