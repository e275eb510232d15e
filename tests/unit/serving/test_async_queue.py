"""The pure decisions of asynchronous inference, with numbers."""

from __future__ import annotations

from moorage.serving.async_queue import backlog_metrics, expired, pick_variant, retry_delays, sweep_interval


def test_expiry_is_strictly_after_the_ttl():
    assert not expired(1000.0, 60, 1060.0)
    assert expired(1000.0, 60, 1060.001)


def test_backlog_counts_waiting_and_running():
    m = backlog_metrics([100.0, 90.0, 95.0], running=3, instances=2, now=130.0)
    assert m == {"ApproximateBacklogSize": 6.0, "ApproximateBacklogSizePerInstance": 3.0,
                 "ApproximateAgeOfOldestRequest": 40.0, "HasBacklogWithoutCapacity": 0.0}


def test_backlog_without_instances_reads_as_load():
    m = backlog_metrics([100.0], running=0, instances=0, now=100.0)
    assert m["ApproximateBacklogSizePerInstance"] == 1.0
    assert m["HasBacklogWithoutCapacity"] == 1.0
    empty = backlog_metrics([], running=0, instances=0, now=5.0)
    assert empty == {"ApproximateBacklogSize": 0.0, "ApproximateBacklogSizePerInstance": 0.0,
                     "ApproximateAgeOfOldestRequest": 0.0, "HasBacklogWithoutCapacity": 0.0}


def test_pick_variant_by_weight_among_those_with_room():
    assert pick_variant([0, 0], [1.0, 1.0]) == -1
    assert pick_variant([3, 0], [1.0, 9.0], r=0.99) == 0  # the heavy one is full
    assert pick_variant([1, 1], [1.0, 3.0], r=0.20) == 0
    assert pick_variant([1, 1], [1.0, 3.0], r=0.30) == 1
    assert pick_variant([1, 1], [0.0, 0.0], r=0.5) == 0  # all weights 0: any with room
    assert pick_variant([1, 5], [0.0, 1.0], r=0.0) == 1  # weight 0 waits while others have room


def test_retry_delays_double():
    assert retry_delays(5, 1.0) == [1.0, 2.0, 4.0, 8.0]
    assert retry_delays(1, 1.0) == []


def test_the_retention_sweep_runs_a_quarter_of_the_retention_apart_within_bounds():
    assert sweep_interval(7 * 24 * 3600) == 3600.0  # a week: hourly
    assert sweep_interval(600) == 150.0
    assert sweep_interval(0.4) == 0.25  # a test's retention: four times a second at most
