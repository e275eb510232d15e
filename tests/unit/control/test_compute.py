"""Compute pools: the admission decision with numbers, and the line of waiting jobs."""

from __future__ import annotations

import asyncio

import pytest

from moorage.control.compute import ComputePool, admit, job_vcpus
from moorage.errors import ResourceLimitExceeded


def test_admit_takes_the_head_of_the_line_while_it_fits() -> None:
    assert admit(8, {}, [("a", 4), ("b", 2), ("c", 2), ("d", 1)]) == ["a", "b", "c"]
    assert admit(8, {"x": 6}, [("a", 2), ("b", 1)]) == ["a"]
    # first come, first served: a small job does not overtake a large one waiting before it
    assert admit(8, {"x": 6}, [("big", 4), ("small", 1)]) == []
    assert admit(8, {}, []) == []


def test_job_vcpus_come_from_the_instance_type() -> None:
    assert job_vcpus("ml.m5.large", 2) == 4
    assert job_vcpus("ml.m5.4xlarge", 1) == 16
    assert job_vcpus("ml.local", 3) == 3  # no limit: one vCPU per instance process


def test_a_job_larger_than_the_pool_is_refused() -> None:
    with pytest.raises(ResourceLimitExceeded, match="needs 16 vCPUs, more than compute pool 'default' has"):
        ComputePool("default", 8).check(16, "8 × ml.m5.large")
    ComputePool("default", 8).check(8, "4 × ml.m5.large")


def test_waiting_jobs_start_in_order_as_vcpus_come_back() -> None:
    async def scenario() -> list[str]:
        pool, started = ComputePool("default", 4), []

        async def job(name: str, vcpus: int, hold: asyncio.Event) -> None:
            await pool.acquire(name, vcpus)
            started.append(name)
            await hold.wait()
            pool.release(name)

        holds = {n: asyncio.Event() for n in "abcd"}
        tasks = [asyncio.create_task(job(n, v, holds[n])) for n, v in (("a", 2), ("b", 2), ("c", 4), ("d", 2))]
        await asyncio.sleep(0)
        assert started == ["a", "b"] and pool.in_use == 4 and pool.waits("c") and pool.waits("d")
        holds["a"].set()
        await asyncio.sleep(0.01)
        assert started == ["a", "b"]  # c needs 4: d waits behind it
        tasks[3].cancel()  # a waiting job that is stopped leaves the line
        await asyncio.sleep(0.01)
        assert not pool.waits("d")
        holds["b"].set()
        await asyncio.sleep(0.01)
        assert started == ["a", "b", "c"] and pool.describe()["Running"] == [{"JobName": "c", "Vcpus": 4}]
        holds["c"].set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert pool.in_use == 0 and pool.describe()["Waiting"] == []
        return started

    assert asyncio.run(scenario()) == ["a", "b", "c"]
