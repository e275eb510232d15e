"""Target tracking decisions, fed numbers (expected arithmetic in the comments)."""

from __future__ import annotations

from moorage.serving.autoscaler import Decision, Policy, State, decide

P = Policy(target=100.0, min_capacity=1, max_capacity=4, scale_out_cooldown=60, scale_in_cooldown=120)


def test_scale_out_to_meet_the_target() -> None:
    # 2 instances at 250 invocations/instance/min: ceil(2 * 250 / 100) = 5, capped at 4
    d, s = decide(P, 2, 250.0, State(), now=1000)
    assert d == Decision(4, "metric 250 above target 100 at 2 instances")
    assert s.last_scale_out == 1000
    # 1 instance at 150: ceil(1.5) = 2
    assert decide(P, 1, 150.0, State(), now=0)[0].desired == 2


def test_on_target_is_no_change() -> None:
    assert decide(P, 2, 100.0, State(), now=0) == (None, State())
    # 2 * 95 / 100 = 1.9 -> ceil 2: slightly below the target keeps the capacity
    assert decide(P, 2, 95.0, State(), now=1000)[0] is None


def test_scale_out_cooldown() -> None:
    s = State(last_scale_out=1000)
    assert decide(P, 2, 300.0, s, now=1030) == (None, s)  # 30 s < 60 s cooldown
    assert decide(P, 2, 300.0, s, now=1061)[0].desired == 4


def test_scale_in_waits_for_its_cooldown_since_any_activity() -> None:
    s = State(last_scale_out=1000)
    # 3 instances at 20/min: ceil(0.6) = 1
    assert decide(P, 3, 20.0, s, now=1100) == (None, s)  # 100 s < 120 s since the scale-out
    d, s2 = decide(P, 3, 20.0, s, now=1121)
    assert d.desired == 1 and s2.last_scale_in == 1121


def test_disable_scale_in() -> None:
    p = Policy(target=100, min_capacity=1, max_capacity=4, disable_scale_in=True)
    assert decide(p, 3, 0.0, State(), now=10_000)[0] is None


def test_bounds_win_over_the_metric() -> None:
    assert decide(P, 0, None, State(), now=0)[0] == Decision(1, "capacity 0 is below MinCapacity 1")
    assert decide(P, 6, 500.0, State(), now=0)[0].desired == 4
    # metric 0 at MinCapacity: nothing to do
    assert decide(P, 1, 0.0, State(), now=10_000)[0] is None


def test_no_data_never_scales_in() -> None:
    assert decide(P, 3, None, State(), now=10_000) == (None, State())


def test_from_zero_any_load_starts_one() -> None:
    p = Policy(target=100, min_capacity=0, max_capacity=3)
    assert decide(p, 0, 5.0, State(), now=0)[0].desired == 1
    assert decide(p, 0, 0.0, State(), now=0)[0] is None
    # and a quiet variant goes back to zero
    assert decide(p, 1, 0.0, State(), now=10_000)[0].desired == 0
