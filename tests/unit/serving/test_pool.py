"""VariantPool against the scripted FakeBackend: start, replace, drain, fail."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from moorage.backends.fake import FakeBackend
from moorage.resources.hosting import ContainerSpec, VariantSpec
from moorage.serving.pool import DeploymentFailed, ReplicaState, VariantPool
from moorage.settings import Settings

SPEC = VariantSpec("v", "m", ContainerSpec("sklearn"), "ml.local", 2, 1.0)


def _pool(tmp_path: Path, backend: FakeBackend) -> VariantPool:
    settings = Settings(data_dir=tmp_path, health_check_interval_seconds=0.05,
                        drain_timeout_seconds=1.0, instance_stop_grace_seconds=0.1)
    return VariantPool("e", SPEC, None, backend, settings, tmp_path / "logs")


def test_scale_up_replace_and_scale_down(tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        pool = _pool(tmp_path, backend)
        await pool.scale_to(2)
        assert len(pool.ready) == 2
        # the monitor notices a dead instance and starts a replacement
        backend.started[0].set_failed()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if len(backend.started) == 3 and len(pool.ready) == 2:
                break
        assert len(backend.started) == 3 and backend.started[0] not in [r.handle for r in pool.ready]
        # traffic goes only to ready instances
        reply = await pool.invoke(b"text/csv", b"", b"", b"1,2", 1.0)
        assert reply.body == b"1,2"
        await pool.scale_to(1)
        assert len(pool.ready) == 1
        assert sum(i.stopped for i in backend.started) == 2
        await pool.close()
    asyncio.run(scenario())


def test_retiring_instance_drains_in_flight_requests(tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        pool = _pool(tmp_path, backend)
        await pool.scale_to(1)
        backend.started[0].delay = 0.3
        call = asyncio.create_task(pool.invoke(b"", b"", b"", b"x", 5.0))
        await asyncio.sleep(0.05)
        await pool.close()  # waits for the in-flight request before stopping
        assert (await call).status == 200
        assert backend.started[0].stopped
        assert pool.replicas == []
    asyncio.run(scenario())


def test_instance_that_dies_at_start_fails_the_deployment(tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        backend.fail_next = 1
        pool = _pool(tmp_path, backend)
        with pytest.raises(DeploymentFailed, match="exited with code 1"):
            await pool.scale_to(1)
        assert all(r.state is not ReplicaState.READY for r in pool.replicas)
        await pool.close()
    asyncio.run(scenario())


def test_serverless_max_concurrency_holds_while_an_instance_is_being_forked(tmp_path: Path) -> None:
    """A cold start counts against MaxConcurrency from the moment it begins: a request arriving
    while the first instance is still being forked is throttled, not given a second one."""
    from moorage.errors import InvokeThrottled
    from moorage.resources.hosting import ServerlessSpec

    class SlowFork(FakeBackend):
        async def start_instance(self, spec):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.1)  # a fork under load
            return await super().start_instance(spec)

    async def scenario() -> None:
        backend = SlowFork()
        spec = VariantSpec("v", "m", ContainerSpec("sklearn"), "", 0, 1.0, serverless=ServerlessSpec(2048, 1))
        settings = Settings(data_dir=tmp_path, health_check_interval_seconds=0.05)
        pool = VariantPool("e", spec, None, backend, settings, tmp_path / "logs")
        first = asyncio.create_task(pool.invoke(b"", b"", b"", b"a", 5.0))
        await asyncio.sleep(0.02)  # the first is forking
        with pytest.raises(InvokeThrottled):
            await pool.invoke(b"", b"", b"", b"b", 5.0)
        assert (await first).body == b"a"
        assert len(backend.started) == 1
        await pool.close()
    asyncio.run(scenario())
