"""The system clock's wall time never goes backwards, even when the OS clock is stepped back."""

import time

from moorage.clock import SystemClock


def test_wall_time_never_goes_backwards(monkeypatch) -> None:
    readings = iter([100.0, 100.5, 100.2, 100.7])
    monkeypatch.setattr(time, "time", lambda: next(readings))
    clock = SystemClock()
    assert [clock.time() for _ in range(4)] == [100.0, 100.5, 100.5, 100.7]
