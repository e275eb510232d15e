"""Compute pools: how many vCPUs of job instances may run at once.

A job (batch transform now; training, tuning and the batch job service later) takes its
instances' vCPUs (InstanceCount × the instance type's vCPUs) from a pool before it starts
them, and gives them back when it ends. Jobs that do not fit wait, first come first served:
a small job never overtakes a large one that waits before it, so none starves. A job that
could never fit is refused at create with ResourceLimitExceeded, as SageMaker refuses one
over the account's instance quota.

The pool's size is ``MOORAGE_JOB_VCPUS``; by default 4 × this machine's cores: an instance
type's vCPUs cap its threads, they reserve no core, and job instances spend part of their
time reading and writing. State is in memory: after a restart, jobs that were running take
their vCPUs again in creation order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from moorage.errors import ResourceLimitExceeded
from moorage.resources.profiles import profile


def admit(capacity: int, running: Mapping[str, int], waiting: Sequence[tuple[str, int]]) -> list[str]:
    """The waiting jobs to start now: from the head of the line, each that fits in what is
    free, stopping at the first that does not."""
    free = capacity - sum(running.values())
    started = []
    for job, vcpus in waiting:
        if vcpus > free:
            break
        started.append(job)
        free -= vcpus
    return started


def job_vcpus(instance_type: str, instance_count: int) -> int:
    """What a job takes from its pool; ``ml.local`` (no limit) counts one vCPU per instance."""
    return instance_count * (profile(instance_type).vcpu or 1)


class ComputePool:
    def __init__(self, name: str, max_vcpus: int) -> None:
        self.name = name
        self.max_vcpus = max_vcpus
        self.running: dict[str, int] = {}
        self._waiting: dict[str, tuple[int, asyncio.Future[None]]] = {}  # in arrival order

    def check(self, vcpus: int, what: str) -> None:
        if vcpus > self.max_vcpus:
            raise ResourceLimitExceeded(
                f"{what} needs {vcpus} vCPUs, more than compute pool '{self.name}' has "
                f"({self.max_vcpus}, set by MOORAGE_JOB_VCPUS). Use fewer or smaller instances.")

    @property
    def in_use(self) -> int:
        return sum(self.running.values())

    def waits(self, job: str) -> bool:
        return job in self._waiting

    def must_wait(self, vcpus: int) -> bool:
        return bool(self._waiting) or self.in_use + vcpus > self.max_vcpus

    async def acquire(self, job: str, vcpus: int) -> None:
        """Wait until ``job``'s vCPUs are granted. Cancelled, it leaves the line (or gives
        back what it was just granted)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[job] = (vcpus, fut)
        self._grant()
        try:
            await fut
        except asyncio.CancelledError:
            self.release(job)
            raise

    def release(self, job: str) -> None:
        self.running.pop(job, None)
        self._waiting.pop(job, None)
        self._grant()

    def _grant(self) -> None:
        line = [(job, vcpus) for job, (vcpus, _) in self._waiting.items()]
        for job in admit(self.max_vcpus, self.running, line):
            vcpus, fut = self._waiting.pop(job)
            self.running[job] = vcpus
            if not fut.done():
                fut.set_result(None)

    def describe(self) -> dict[str, Any]:
        return {"ComputePoolName": self.name, "MaxVcpus": self.max_vcpus, "VcpusInUse": self.in_use,
                "Running": [{"JobName": j, "Vcpus": v} for j, v in self.running.items()],
                "Waiting": [{"JobName": j, "Vcpus": v} for j, (v, _) in self._waiting.items()]}
