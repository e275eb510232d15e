"""One production variant's instances: start, health-check, replace, drain and stop.

Guarantees: an instance takes traffic only after its first passing ping; a retiring
instance leaves the ready set first and is stopped only when its in-flight requests are
done (or the drain timeout passes); a dead or hung instance is replaced without waiting for
the next check when the router sees it die. The pool holds no durable state: control/
persists the desired count, and a restarted server builds pools again from it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from enum import Enum
from pathlib import Path
from typing import Awaitable, Callable

from moorage.backends.base import Backend, FileRange, InstanceGone, InstanceHandle, InstanceSpec, Publish, Reply
from moorage.errors import InvokeThrottled, ModelError, PayloadTooLarge
from moorage.resources.hosting import VariantSpec
from moorage.resources.profiles import profile, serverless_profile
from moorage.serving.balancer import least_outstanding
from moorage.serving.health import Verdict, assess
from moorage.settings import Settings

log = logging.getLogger("moorage.pool")


class ReplicaState(str, Enum):
    STARTING = "Starting"
    READY = "Ready"
    DRAINING = "Draining"
    STOPPED = "Stopped"


class DeploymentFailed(Exception):
    """Instances could not be brought up; the message is the endpoint's FailureReason."""


class Replica:
    __slots__ = ("handle", "state", "outstanding", "abandoned", "last_progress", "failures", "log_path",
                 "patience")

    def __init__(self, handle: InstanceHandle, log_path: Path) -> None:
        self.handle = handle
        self.state = ReplicaState.STARTING
        self.outstanding = 0
        #: requests the router gave up on (timed out) that the instance may still be computing
        self.abandoned = 0
        self.last_progress = 0.0
        self.failures = 0
        self.log_path = log_path
        #: the longest invocation timeout in flight beyond the server's own (async requests)
        self.patience = 0.0


def _log_tail(path: Path, limit: int = 800) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:].strip()


class VariantPool:
    def __init__(self, endpoint: str, spec: VariantSpec, model_dir: Path | None,
                 backend: Backend, settings: Settings, log_dir: Path,
                 on_size: Callable[[str, str, int], None] | None = None,
                 on_cold_start: Callable[[str, str, float], None] | None = None) -> None:
        self.endpoint = endpoint
        self.spec = spec
        self.model_dir = model_dir
        self.desired = 0
        self.replicas: list[Replica] = []
        self.ready: list[Replica] = []
        #: instances being forked, not yet in ``replicas``: they count as live
        self._forking = 0
        self._backend = backend
        self._settings = settings
        self._log_dir = log_dir
        self._on_size = on_size
        self._on_cold_start = on_cold_start
        self._rr = itertools.count()
        self._ready_event = asyncio.Event()
        self._monitor: asyncio.Task[None] | None = None
        self._closed = False
        self._loop = asyncio.get_event_loop()
        self._max_queued = settings.max_queued_per_instance

    # -- the hot path --------------------------------------------------------------------
    async def invoke(self, content_type: bytes, accept: bytes, attrs: bytes, body: bytes,
                     timeout: float) -> Reply:
        if self.spec.serverless is not None:
            return await self._invoke_serverless(content_type, accept, attrs, body, timeout)
        r = await self._take(timeout)
        return await self._forward(r, r.handle.invoke(content_type, accept, attrs, body, timeout))

    async def invoke_file(self, content_type: bytes, accept: bytes, attrs: bytes, src: str,
                          dst: str, timeout: float) -> Reply:
        """An invocation whose body is the file ``src``; the response body goes to ``dst``."""
        r = await self._take_patient(timeout)
        return await self._forward(r, r.handle.invoke_file(content_type, accept, attrs, src, dst, timeout))

    async def invoke_to(self, content_type: bytes, accept: bytes, attrs: bytes, body: bytes,
                        target: Publish, timeout: float) -> Reply:
        """An inline invocation whose result is published at ``target`` (see InstanceHandle)."""
        r = await self._take_patient(timeout)
        return await self._forward(r, r.handle.invoke_to(content_type, accept, attrs, body, target, timeout))

    async def invoke_range(self, content_type: bytes, accept: bytes, attrs: bytes, body: FileRange,
                           timeout: float) -> Reply:
        """An invocation whose body is a range of a local file (batch transform mini-batches)."""
        r = await self._take_patient(timeout)
        return await self._forward(r, r.handle.invoke_range(content_type, accept, attrs, body, timeout))

    async def _take_patient(self, timeout: float) -> Replica:
        """``_take`` for a request that may run as long as ``timeout`` (async inference, batch
        transform): the instance is not found hung while it works on it."""
        r = await self._take(timeout)
        if timeout > r.patience:
            r.patience = timeout
        return r

    async def _take(self, timeout: float) -> Replica:
        """The ready instance with the fewest requests in flight, with this one counted."""
        ready = self.ready
        if not ready:
            ready = await self._wait_ready(timeout)
        if len(ready) == 1:
            r = ready[0]
        else:
            r = ready[least_outstanding([x.outstanding for x in ready], next(self._rr))]
        if r.outstanding >= self._max_queued:
            raise InvokeThrottled(
                f"Too many requests for variant {self.spec.name}: its instances have "
                f"{self._max_queued} invocations each in flight. Retry with backoff.")
        if r.outstanding == 0 and not r.abandoned:
            r.last_progress = self._loop.time()
        r.outstanding += 1
        return r

    async def _forward(self, r: Replica, call: Awaitable[Reply]) -> Reply:
        """Await ``call`` on ``r``, whose ``outstanding`` already counts this request.

        Only an answer is progress: a timed-out request stays counted as work the instance
        may still be doing, so an instance that stopped answering is found hung even while
        new requests keep arriving (health.assess)."""
        try:
            reply = await call
        except asyncio.TimeoutError:
            r.abandoned += 1
            raise
        except InstanceGone:
            self._lost(r)
            raise
        finally:
            r.outstanding -= 1
            if not r.outstanding:
                r.patience = 0.0
        r.abandoned = 0
        r.last_progress = self._loop.time()
        return reply

    async def _invoke_serverless(self, content_type: bytes, accept: bytes, attrs: bytes,
                                 body: bytes, timeout: float) -> Reply:
        """One invocation per instance at a time: an idle instance takes it, else a new one
        starts for it (a cold start the request waits for), up to MaxConcurrency; past that,
        429 ThrottlingException."""
        cap = self._settings.serverless_max_payload_bytes
        if len(body) > cap:
            raise PayloadTooLarge(f"Request payload of {len(body)} bytes exceeds the maximum of "
                                  f"{cap} bytes for a serverless endpoint.")
        sl = self.spec.serverless
        assert sl is not None
        r = next((x for x in self.ready if x.outstanding == 0 and not x.abandoned), None)
        cold_ms = 0.0
        if r is None:
            live = self._live()
            if live >= sl.max_concurrency:
                raise InvokeThrottled(
                    f"Variant {self.spec.name} is at its MaxConcurrency of {sl.max_concurrency} "
                    "concurrent invocations. Retry with backoff.")
            t0 = time.perf_counter()  # the loop's clock ticks in whole milliseconds
            try:
                r = await self._start_one(reserve=True)
            except DeploymentFailed as exc:
                raise ModelError(f"The serverless instance for variant {self.spec.name} failed to "
                                 f"start: {exc}", original_status=500, original_message=str(exc)) from None
            cold_ms = (time.perf_counter() - t0) * 1000
            if self._on_cold_start:
                self._on_cold_start(self.endpoint, self.spec.name, cold_ms)
        else:
            r.outstanding += 1
        r.last_progress = self._loop.time()
        reply = await self._forward(r, r.handle.invoke(content_type, accept, attrs, body, timeout))
        return reply._replace(cold_start_ms=cold_ms) if cold_ms else reply

    async def _wait_ready(self, timeout: float) -> list[Replica]:
        try:
            await asyncio.wait_for(self._ready_event.wait(), timeout)
        except asyncio.TimeoutError:
            raise InstanceGone(f"no instance of variant {self.spec.name} became ready") from None
        return self.ready

    # -- lifecycle -----------------------------------------------------------------------
    async def scale_to(self, n: int) -> None:
        """Bring the pool to ``n`` ready instances. Raises DeploymentFailed if a new one fails."""
        self.desired = n
        if self.spec.serverless is not None or self.spec.warm_start:
            self._backend.prewarm(self.spec.container.runtime)
        live = [r for r in self.replicas if r.state in (ReplicaState.STARTING, ReplicaState.READY)]
        missing = n - len(live) - self._forking
        if missing > 0:
            results = await asyncio.gather(*(self._start_one() for _ in range(missing)), return_exceptions=True)
            errors = [e for e in results if isinstance(e, BaseException)]
            if errors:
                raise DeploymentFailed(str(errors[0]))
        elif len(live) > n:
            # retire the least busy first, newest first among equals
            retire = sorted(live, key=lambda r: r.outstanding)[: len(live) - n]
            await asyncio.gather(*(self._retire(r) for r in retire))
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._watch(), name=f"pool-{self.endpoint}-{self.spec.name}")

    async def _start_one(self, reserve: bool = False) -> Replica:
        """Start one instance and wait for its first passing ping. ``reserve`` hands it over
        with one request already counted, so no other request can take it first."""
        iid = uuid.uuid4().hex[:12]
        log_path = self._log_dir / f"{iid}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        c = self.spec.container
        sl = self.spec.serverless
        spec = InstanceSpec(instance_id=iid, runtime=c.runtime, model_dir=self.model_dir,
                            command=c.command, environment=dict(c.environment),
                            profile=serverless_profile(sl.memory_mb) if sl else profile(self.spec.instance_type),
                            log_path=log_path,
                            warm_start=(sl is not None or self.spec.warm_start) and c.runtime != "command")
        self._forking += 1  # counted from now: another request must not start one more meanwhile
        try:
            handle = await self._backend.start_instance(spec)
        except InstanceGone as exc:
            raise DeploymentFailed(str(exc)) from exc
        finally:
            self._forking -= 1
        rep = Replica(handle, log_path)
        self.replicas.append(rep)
        deadline = self._loop.time() + self._settings.instance_startup_timeout_seconds
        delay = 0.02
        while True:
            if self._closed:
                raise DeploymentFailed("endpoint is shutting down")
            code = handle.exited()
            if code is not None:
                self._forget(rep)
                tail = _log_tail(log_path)
                raise DeploymentFailed(
                    f"Instance for variant {self.spec.name} exited with code {code} during startup."
                    + (f" Log: {tail}" if tail else ""))
            if await handle.ping(self._settings.health_check_timeout_seconds):
                break
            if self._loop.time() > deadline:
                await handle.stop(0)
                self._forget(rep)
                raise DeploymentFailed(
                    f"Instance for variant {self.spec.name} did not pass a /ping health check "
                    f"within {self._settings.instance_startup_timeout_seconds:g} seconds.")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        rep.state = ReplicaState.READY
        rep.last_progress = self._loop.time()
        if reserve:
            rep.outstanding = 1
        self.ready = [*self.ready, rep]  # copy-on-write: the hot path iterates without locks
        self._ready_event.set()
        self._size_changed()
        return rep

    def _size_changed(self) -> None:
        if self._on_size:
            self._on_size(self.endpoint, self.spec.name, len(self.ready))

    def _unready(self, rep: Replica) -> None:
        if rep in self.ready:
            self.ready = [r for r in self.ready if r is not rep]
            if not self.ready:
                self._ready_event.clear()
            self._size_changed()

    def _forget(self, rep: Replica) -> None:
        self._unready(rep)
        if rep in self.replicas:
            self.replicas.remove(rep)

    def _lost(self, rep: Replica) -> None:
        """The router saw the instance die: take it out now and start a replacement."""
        if rep.state is ReplicaState.STOPPED or rep not in self.replicas:
            return
        log.warning("instance %s of %s/%s is gone; replacing it", rep.handle.instance_id,
                    self.endpoint, self.spec.name)
        asyncio.create_task(self._replace(rep))

    def _live(self) -> int:
        """Instances starting or ready, those still being forked included."""
        return self._forking + sum(r.state in (ReplicaState.STARTING, ReplicaState.READY) for r in self.replicas)

    async def _replace(self, rep: Replica) -> None:
        if rep.state is ReplicaState.STOPPED:
            return
        rep.state = ReplicaState.STOPPED
        self._forget(rep)
        await rep.handle.stop(0)
        live = self._live()
        while not self._closed and live < self.desired:
            try:
                await self._start_one()
                return
            except DeploymentFailed as exc:
                log.error("replacement for %s/%s failed: %s", self.endpoint, self.spec.name, exc)
                await asyncio.sleep(1.0)

    async def _retire(self, rep: Replica) -> None:
        rep.state = ReplicaState.DRAINING
        self._unready(rep)
        deadline = self._loop.time() + self._settings.drain_timeout_seconds
        while rep.outstanding and self._loop.time() < deadline:
            await asyncio.sleep(0.02)
        rep.state = ReplicaState.STOPPED
        if rep in self.replicas:
            self.replicas.remove(rep)
        await rep.handle.stop(self._settings.instance_stop_grace_seconds)

    async def close(self) -> None:
        """Drain every instance and stop it."""
        self._closed = True
        self.desired = 0
        if self._monitor:
            self._monitor.cancel()
        await asyncio.gather(*(self._retire(r) for r in list(self.replicas)))

    def _scale_in_idle(self, now: float) -> None:
        """Serverless: stop instances idle for serverless_idle_seconds, down to the provisioned."""
        live = [r for r in self.replicas if r.state in (ReplicaState.STARTING, ReplicaState.READY)]
        excess = len(live) - self.desired
        idle_for = self._settings.serverless_idle_seconds
        for rep in [r for r in self.ready
                    if r.outstanding == 0 and not r.abandoned and now - r.last_progress > idle_for]:
            if excess <= 0:
                break
            excess -= 1
            asyncio.create_task(self._retire(rep))

    # -- health ----------------------------------------------------------------------------
    async def _watch(self) -> None:
        s = self._settings
        hung_after = s.invocation_timeout_seconds + 2 * s.health_check_timeout_seconds
        tick = min(0.5, s.health_check_interval_seconds)
        last_ping = 0.0
        while not self._closed:
            await asyncio.sleep(tick)
            now = self._loop.time()
            do_ping = now - last_ping >= s.health_check_interval_seconds
            if do_ping:
                last_ping = now
            if self.spec.serverless is not None:
                self._scale_in_idle(now)
            for rep in [r for r in self.replicas if r.state is ReplicaState.READY]:
                ping_ok = None
                exited = rep.handle.exited() is not None
                busy = rep.outstanding + rep.abandoned
                if do_ping and not exited and busy == 0:
                    ping_ok = await rep.handle.ping(s.health_check_timeout_seconds)
                verdict, rep.failures = assess(
                    exited=exited, ping_ok=ping_ok, outstanding=busy,
                    busy_for=self._loop.time() - rep.last_progress, failures=rep.failures,
                    threshold=s.unhealthy_threshold,
                    hung_after=max(hung_after, rep.patience + 2 * s.health_check_timeout_seconds))
                if verdict is Verdict.REPLACE and rep.state is ReplicaState.READY:
                    log.warning("instance %s of %s/%s is unhealthy; replacing it",
                                rep.handle.instance_id, self.endpoint, self.spec.name)
                    asyncio.create_task(self._replace(rep))
