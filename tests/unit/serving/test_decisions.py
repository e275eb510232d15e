"""The data plane's decisions as pure functions, fed numbers."""

from __future__ import annotations

import random
from collections import Counter

from moorage.serving.balancer import least_outstanding
from moorage.serving.health import Verdict, assess
from moorage.serving.variants import choose, cumulative


def test_choose_maps_draws_to_weight_shares() -> None:
    cum = cumulative([3.0, 1.0])  # [3, 4]: draws below 0.75 pick 0
    assert choose(cum, 0.0) == 0
    assert choose(cum, 0.7499) == 0
    assert choose(cum, 0.75) == 1
    assert choose(cum, 0.9999) == 1


def test_zero_weight_variant_is_never_chosen() -> None:
    cum = cumulative([0.0, 2.0, 0.0])
    assert {choose(cum, r / 100) for r in range(100)} == {1}


def test_all_zero_weights_choose_nothing() -> None:
    assert choose(cumulative([0.0, 0.0]), 0.5) == -1
    assert choose([], 0.5) == -1


def test_choose_share_over_many_draws() -> None:
    rng = random.Random(7)
    cum = cumulative([1.0, 1.0, 2.0])
    counts = Counter(choose(cum, rng.random()) for _ in range(20_000))
    assert abs(counts[2] / 20_000 - 0.5) < 0.02
    assert abs(counts[0] / 20_000 - 0.25) < 0.02


def test_least_outstanding_picks_the_idlest() -> None:
    assert least_outstanding([3, 1, 2], 0) == 1
    assert least_outstanding([], 0) == -1


def test_least_outstanding_rotates_ties() -> None:
    # all idle: the start index decides, so sequential traffic spreads over instances
    assert [least_outstanding([0, 0, 0], s) for s in range(4)] == [0, 1, 2, 0]
    assert least_outstanding([2, 1, 1], 2) == 2


def test_health_exited_is_replaced_at_once() -> None:
    assert assess(exited=True, ping_ok=None, outstanding=0, busy_for=0, failures=0,
                  threshold=3, hung_after=62) == (Verdict.REPLACE, 1)


def test_health_failed_pings_count_up_to_threshold() -> None:
    kw = dict(exited=False, outstanding=0, busy_for=0.0, threshold=3, hung_after=62.0)
    assert assess(ping_ok=False, failures=0, **kw) == (Verdict.FAILING, 1)
    assert assess(ping_ok=False, failures=1, **kw) == (Verdict.FAILING, 2)
    assert assess(ping_ok=False, failures=2, **kw) == (Verdict.REPLACE, 3)
    assert assess(ping_ok=True, failures=2, **kw) == (Verdict.HEALTHY, 0)


def test_health_busy_instance_is_judged_by_progress_not_ping() -> None:
    kw = dict(exited=False, ping_ok=None, failures=0, threshold=3, hung_after=62.0)
    # 30 s into a long prediction: healthy; no ping was sent because it is busy
    assert assess(outstanding=1, busy_for=30.0, **kw) == (Verdict.HEALTHY, 0)
    # 63 s without finishing anything: hung (invocation timeout 60 s + 2 s grace)
    assert assess(outstanding=1, busy_for=63.0, **kw)[0] is Verdict.REPLACE
    # idle for ages is not hung
    assert assess(outstanding=0, busy_for=1000.0, **kw) == (Verdict.HEALTHY, 0)
