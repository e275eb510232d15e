"""Asynchronous inference: InvokeEndpointAsync's durable queue, its workers and notifications.

A request is a row in the store before its 202 goes out. One worker per async endpoint feeds
the endpoint's instances from an in-memory queue of those rows, at most
MaxConcurrentInvocationsPerInstance per ready instance. A request ends once: its result (or
error document) is published write-once (artifacts/objects), then its row is marked Completed
or Failed. After a crash, rows still Pending run again unless their result already exists, in
which case they are only marked: execution is at-least-once, and each InferenceId gets exactly
one output. A final state with a topic to tell is stored with ``notify = Pending`` and sent by
its own task with retries, so a failing webhook never holds up the queue; a restart resends
what was not delivered.

An ended request's inline body is dropped with its final state, and its row is forgotten
MOORAGE_ASYNC_RETENTION_SECONDS after it ended (the outputs stay), so the store does not grow
with the traffic.

Writes are group-committed (``Batcher``): inserts, final updates and the small outputs the
server writes are done by worker threads in batches; what arrives while one batch is written
goes in the next, so a busy queue pays one SQLite transaction per batch, and each 202 waits for
its own commit.

Payloads never pass through the server's memory: an InputLocation is handed to the instance
as a file (an s3:// input is first streamed to a staging file), and the instance writes the
result to a file that is then published. Only inline bodies (at most 128,000 bytes) travel in
frames; their results, when the output is local, are published by the instance itself
(``KIND_INVOKE_TO``) unless they end within WRITE_GUARD of the request's timeout.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import json
import logging
import operator
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import httpx

from moorage import ids
from moorage.artifacts import objects
from moorage.backends.base import InstanceGone, Reply
from moorage.clock import Clock, timestamp
from moorage.control.topics import TopicService
from moorage.control.validation import validate_input
from moorage.errors import (InvokeThrottled, InvokeValidationError, MoorageError, PayloadTooLarge,
                            ValidationException)
from moorage.metrics import MetricsRegistry
from moorage.resources.hosting import AsyncSpec
from moorage.runtime.protocol import LATE, NOT_STORED, Publish
from moorage.serving.async_queue import (MAX_ATTEMPTS, SWEEP_BATCH, WRITE_GUARD, backlog_metrics, expired,
                                         pick_variant, retry_delays, sweep_interval)
from moorage.serving.pool import VariantPool
from moorage.serving.router import Fleet, Router
from moorage.settings import Settings
from moorage.store import Store

log = logging.getLogger("moorage.async")

INLINE_MAX = 128_000
DEFAULT_TTL = 21_600
DEFAULT_TIMEOUT = 900
#: sets of valid InvokeEndpointAsync parameters remembered (InferenceIds make each one new)
VALID_REMEMBERED = 4096
#: what a notification may carry of the response (SageMaker's limit)
NOTIFY_BODY_MAX = 128 * 1024

#: InvokeEndpointAsync's headers → its input members
HEADERS = {
    "x-amzn-sagemaker-content-type": "ContentType",
    "x-amzn-sagemaker-accept": "Accept",
    "x-amzn-sagemaker-custom-attributes": "CustomAttributes",
    "x-amzn-sagemaker-inference-id": "InferenceId",
    "x-amzn-sagemaker-inputlocation": "InputLocation",
    "x-amzn-sagemaker-s3outputpathextension": "S3OutputPathExtension",
    "x-amzn-sagemaker-filename": "Filename",
    "x-amzn-sagemaker-requestttlseconds": "RequestTTLSeconds",
    "x-amzn-sagemaker-invocationtimeoutseconds": "InvocationTimeoutSeconds",
}
_INTS = ("RequestTTLSeconds", "InvocationTimeoutSeconds")


@dataclass(slots=True)
class Request:
    """One InvokeEndpointAsync request, as stored (columns of ``async_requests``)."""

    endpoint: str
    inference_id: str
    created: float
    output_location: str
    failure_location: str
    ttl_seconds: int
    timeout_seconds: int
    input_location: str | None = None
    body: bytes | None = None
    content_type: str = ""
    accept: str = ""
    custom_attributes: str = ""
    status: str = "Pending"
    finished: float | None = None
    failure_reason: str | None = None
    variant: str | None = None
    notify: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Request:
        return cls(**{f: getattr(row, f) for f in cls.__slots__})  # type: ignore[attr-defined]

    def values(self) -> tuple[Any, ...]:
        """The columns' values, in COLUMNS' order."""
        return _values(self)


COLUMNS: tuple[str, ...] = Request.__slots__  # type: ignore[attr-defined]
_values = operator.attrgetter(*COLUMNS)


class Batcher:
    """Work items that arrive while a batch is being done go in the next batch, done by one
    worker thread: the event loop never waits on the disk, and a busy queue pays one thread hop
    (and one SQLite transaction, one commit) per batch rather than per request.

    ``work(items)`` returns None when every item succeeded, else one exception-or-None per item.
    ``add`` returns a future for the item; ``put`` adds one nobody waits for (a failure is
    logged)."""

    def __init__(self, work: Callable[[list[Any]], list[BaseException | None] | None],
                 executor: concurrent.futures.Executor, delay: float = 0.0, what: str = "a batch") -> None:
        self._work = work
        self._what = what
        self._executor = executor
        #: how long a batch may wait to grow (0: until the end of this loop turn)
        self._delay = delay
        self._pending: list[tuple[Any, asyncio.Future[None] | None]] = []
        self._busy = False
        #: the loop of the first item, kept: asking for the running loop costs a getpid() call
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, item: Any) -> asyncio.Future[None]:
        fut = (self._loop or self._bind()).create_future()
        self._push(item, fut)
        return fut

    def put(self, item: Any) -> None:
        self._push(item, None)

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    def _push(self, item: Any, fut: asyncio.Future[None] | None) -> None:
        self._pending.append((item, fut))
        if not self._busy:
            self._busy = True
            self._schedule()

    def _schedule(self) -> None:
        loop = self._loop or self._bind()
        if self._delay:
            loop.call_later(self._delay, self._start)
        else:
            loop.call_soon(self._start)  # next turn: gather what else arrives in this one

    def _start(self) -> None:
        assert self._loop is not None
        batch, self._pending = self._pending, []
        done = self._loop.run_in_executor(self._executor, self._work, [item for item, _ in batch])
        done.add_done_callback(lambda f: self._finished(batch, f))

    def _finished(self, batch: list[tuple[Any, asyncio.Future[None] | None]], f: asyncio.Future[Any]) -> None:
        exc = f.exception()
        errors = [exc] * len(batch) if exc is not None else (f.result() or [None] * len(batch))
        for (_, fut), error in zip(batch, errors):
            if fut is None:
                if error is not None:
                    log.error("could not write %s", self._what, exc_info=error)
            elif fut.done():
                continue
            elif error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)
        if self._pending:
            self._schedule()
        else:
            self._busy = False


@dataclass
class _Queue:
    """One async endpoint's requests in memory: waiting ones in order, running ones by id."""

    waiting: collections.deque[Request] = field(default_factory=collections.deque)
    running: dict[str, Request] = field(default_factory=dict)
    per_variant: collections.Counter[str] = field(default_factory=collections.Counter)
    attempts: collections.Counter[str] = field(default_factory=collections.Counter)
    #: ids of requests loaded after a restart: their result may already exist
    recovered: set[str] = field(default_factory=set)
    #: ids accepted in this run: a resubmitted id is the same request
    known: set[str] = field(default_factory=set)
    #: slots waiting for work, by variant pool (see _slot)
    idle: dict[VariantPool, list[asyncio.Future[Request | None]]] = field(default_factory=dict)
    #: what the worker awaits between rounds (a bare future and a timer: asyncio.wait_for
    #: would make a task per wake-up)
    waiter: asyncio.Future[None] | None = None
    task: asyncio.Task[None] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class AsyncInferenceService:
    def __init__(self, store: Store, clock: Clock, settings: Settings, router: Router,
                 metrics: MetricsRegistry, topics: TopicService) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.router = router
        self.metrics = metrics
        self.topics = topics
        self.staging = settings.data_dir / "async" / "staging"
        self._staging = str(self.staging)
        self._queues: dict[str, _Queue] = {}
        #: InvokeEndpointAsync parameters (without the body) known to be valid
        self._valid: set[tuple[tuple[str, Any], ...]] = set()
        self._notifying: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        # one thread writes the store (SQLite takes one writer at a time anyway), others files
        self._db = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="async-db")
        self._io = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="async-io")
        self._inserts = Batcher(lambda reqs: store.enqueue(COLUMNS, [r.values() for r in reqs]), self._db, delay=0.002)
        # A final state may be stored late: until it is, the written output already proves it
        # (a restart finds the output and only marks the request), so ends are batched 50 ms.
        self._finishes = Batcher(store.async_finish, self._db, delay=0.05, what="the end of an async request")
        self._outputs = Batcher(self._write_outputs, self._io, delay=0.002)
        router.on_activate = self._activated

    def _activated(self, endpoint: str, fleet: Fleet) -> None:
        if fleet.asynchronous:
            self._queue(endpoint)  # its worker also reports the (empty) backlog

    # -- InvokeEndpointAsync ---------------------------------------------------------------
    async def invoke(self, endpoint: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """Persist one request and return InferenceId, OutputLocation and FailureLocation."""
        fleet = self.router.fleets.get(endpoint)
        if fleet is None:
            raise self.router.on_missing(endpoint)
        spec = fleet.spec.asynchronous
        if spec is None:
            raise InvokeValidationError(
                f"Endpoint {endpoint} is not an asynchronous endpoint (its endpoint config has no "
                "AsyncInferenceConfig); use InvokeEndpoint.")
        params = self._params(endpoint, headers, body)
        iid = params.get("InferenceId") or ids.time_ordered_uuid()
        where = params.get("InputLocation")
        if where is not None:
            if not where.lower().startswith("s3://") and not objects.local_path(where).is_absolute():
                raise InvokeValidationError(f"InputLocation {where} must be an s3:// URL, a file:// URL "
                                            "or an absolute path.")
            if not await asyncio.to_thread(_readable, where):
                raise InvokeValidationError(f"Could not access the input at InputLocation {where}.")
        ext = params.get("S3OutputPathExtension", "")
        req = Request(
            endpoint=endpoint, inference_id=iid, created=timestamp(self.clock),
            output_location=objects.join(spec.output_path, ext, params.get("Filename") or f"{iid}.out"),
            failure_location=objects.join(spec.failure_path or spec.output_path, ext, f"{iid}-error.out"),
            ttl_seconds=params.get("RequestTTLSeconds", DEFAULT_TTL),
            timeout_seconds=params.get("InvocationTimeoutSeconds", DEFAULT_TIMEOUT),
            input_location=where, body=None if where is not None else body,
            content_type=params.get("ContentType", ""), accept=params.get("Accept", ""),
            custom_attributes=params.get("CustomAttributes", ""))
        q = self._queue(endpoint)
        if "InferenceId" in params:  # the caller's id: it may name a request already accepted
            if iid in q.known:
                return self._locations(self.store.async_request(endpoint, iid) or req)
            row = self.store.async_request(endpoint, iid)
            if row is not None:
                return self._locations(row)
        q.known.add(iid)
        try:
            await self._inserts.add(req)
        except Exception:
            q.known.discard(iid)
            raise
        q.waiting.append(req)
        fleet = self.router.fleets.get(endpoint)  # it may have changed while the row was written
        if fleet is not None and fleet.spec.asynchronous is not None and self._queues.get(endpoint) is q:
            self._dispatch(endpoint, fleet, fleet.spec.asynchronous, q)
        else:
            q.wake()
        return self._locations(req)

    @staticmethod
    def _locations(req: Any) -> dict[str, str]:
        return {"InferenceId": req.inference_id, "OutputLocation": req.output_location,
                "FailureLocation": req.failure_location}

    def _params(self, endpoint: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        params: dict[str, Any] = {"EndpointName": endpoint}
        for header, member in HEADERS.items():
            if header in headers:
                params[member] = headers[header]
        for member in _INTS:
            if member in params:
                try:
                    params[member] = int(params[member])
                except ValueError:
                    raise InvokeValidationError(f"{member} must be an integer; got {params[member]!r}.") from None
        if len(body) > INLINE_MAX:
            raise PayloadTooLarge(f"Inline request body of {len(body)} bytes exceeds the maximum of "
                                  f"{INLINE_MAX} bytes for InvokeEndpointAsync; upload the payload "
                                  "and pass its InputLocation instead.")
        # Every member is checked on its own, and the body only for its type and its size (as
        # above), so parameters that passed once pass again: a client sends the same headers
        # with every request.
        known = tuple(params.items())
        if body:
            params["Body"] = body
        if known not in self._valid:
            try:
                validate_input("sagemaker-runtime", "InvokeEndpointAsync", params)
            except ValidationException as exc:
                raise InvokeValidationError(str(exc)) from None
            if len(self._valid) >= VALID_REMEMBERED:
                self._valid.clear()
            self._valid.add(known)
        if ("InputLocation" in params) == ("Body" in params):
            raise InvokeValidationError("Provide exactly one of InputLocation and an inline request body.")
        return params

    def describe(self, endpoint: str, inference_id: str) -> dict[str, Any]:
        """A request's state (a Moorage addition: SageMaker reports only through S3 and SNS)."""
        row = self.store.async_request(endpoint, inference_id)
        if row is None:
            raise ValidationException(f"No asynchronous request {inference_id} on endpoint {endpoint}.")
        q = self._queues.get(endpoint)
        status = row.status
        if status == "Pending" and q is not None and inference_id in q.running:
            status = "InProgress"
        out = {"InferenceId": row.inference_id, "EndpointName": endpoint, "Status": status,
               "CreationTime": row.created, "OutputLocation": row.output_location,
               "FailureLocation": row.failure_location}
        if row.finished is not None:
            out["CompletionTime"] = row.finished
        if row.failure_reason:
            out["FailureReason"] = row.failure_reason
        if row.variant:
            out["InvokedProductionVariant"] = row.variant
        return out

    def check_config(self, config: dict[str, Any], variants: list[dict[str, Any]]) -> None:
        """CreateEndpointConfig's checks of an AsyncInferenceConfig."""
        if any(v.get("ServerlessConfig") for v in variants):
            raise ValidationException("AsyncInferenceConfig cannot be combined with serverless variants.")
        out = config["OutputConfig"]
        if not out.get("S3OutputPath"):
            raise ValidationException("AsyncInferenceConfig.OutputConfig.S3OutputPath is required.")
        objects.check_location(out["S3OutputPath"], "S3OutputPath")
        if out.get("S3FailurePath"):
            objects.check_location(out["S3FailurePath"], "S3FailurePath")
        note = out.get("NotificationConfig") or {}
        for key in ("SuccessTopic", "ErrorTopic"):
            if note.get(key):
                self.topics.webhooks(note[key])

    # -- lifecycle -------------------------------------------------------------------------
    def recover(self) -> None:
        """Queue every request a previous run accepted and did not finish; resend notifications
        not yet delivered. From now on, requests past their retention are forgotten."""
        objects.clear_staging(self.staging)
        self._sweeper = asyncio.create_task(self._sweep(), name="async-retention")
        for row in self.store.async_open():
            req = Request.from_row(row)
            if req.status == "Pending":
                q = self._queue(req.endpoint)
                q.waiting.append(req)
                q.known.add(req.inference_id)
                q.recovered.add(req.inference_id)
            else:
                self._notify_later(req)

    def forget(self, endpoint: str) -> None:
        """The endpoint is being deleted: stop its worker and drop its requests."""
        q = self._queues.pop(endpoint, None)
        if q is not None and q.task is not None:
            q.task.cancel()
        self.store.async_forget(endpoint)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for q in self._queues.values():
            if q.task is not None:
                q.task.cancel()
            for t in q.tasks:
                t.cancel()
        for t in self._notifying:
            t.cancel()
        if self._http is not None:
            await self._http.aclose()
        self._db.shutdown(wait=True)
        self._io.shutdown(wait=True)

    def _queue(self, endpoint: str) -> _Queue:
        q = self._queues.get(endpoint)
        if q is None:
            q = self._queues[endpoint] = _Queue()
            q.task = asyncio.create_task(self._work(endpoint, q), name=f"async-{endpoint}")
        return q

    # -- the worker ------------------------------------------------------------------------
    async def _work(self, endpoint: str, q: _Queue) -> None:
        loop = asyncio.get_running_loop()
        last_metrics = 0.0
        while True:
            fleet = self.router.fleets.get(endpoint)
            if q.idle:
                self._release_stale(fleet, q)
            if fleet is not None and fleet.spec.asynchronous is not None:
                self._dispatch(endpoint, fleet, fleet.spec.asynchronous, q)
                now = time.monotonic()
                if now - last_metrics >= 1.0:
                    last_metrics = now
                    self._record_backlog(endpoint, fleet, q)
            q.waiter = loop.create_future()
            timer = loop.call_later(0.25, q.wake)
            try:
                await q.waiter
            finally:
                timer.cancel()

    @staticmethod
    def _pick(fleet: Fleet, spec: AsyncSpec, q: _Queue) -> VariantPool | None:
        """The variant for the next waiting request: by traffic weight among those with a free
        slot (MaxConcurrentInvocationsPerInstance per ready instance); None when all are full."""
        pools = [fleet.pools[n] for n in fleet.names]
        free = [len(p.ready) * spec.max_concurrent_per_instance - q.per_variant[p.spec.name] for p in pools]
        if len(pools) == 1:  # the common case, without the weighted draw
            return pools[0] if free[0] > 0 else None
        i = pick_variant(free, [fleet.weights[n] for n in fleet.names])
        return pools[i] if i >= 0 else None

    def _dispatch(self, endpoint: str, fleet: Fleet, spec: AsyncSpec, q: _Queue) -> None:
        """Start waiting requests while their variants have room: on a parked slot of the picked
        variant when there is one, else on a new slot."""
        while q.waiting:
            pool = self._pick(fleet, spec, q)
            if pool is None:
                return
            row = q.waiting.popleft()
            q.running[row.inference_id] = row
            q.per_variant[pool.spec.name] += 1
            parked = q.idle.get(pool)
            while parked and parked[-1].done():  # cancelled with its slot, not yet cleaned up
                parked.pop()
            if parked:
                parked.pop().set_result(row)
                continue
            task = asyncio.create_task(self._slot(endpoint, pool, row, q))
            q.tasks.add(task)
            task.add_done_callback(q.tasks.discard)

    async def _slot(self, endpoint: str, pool: VariantPool, row: Request, q: _Queue) -> None:
        """One slot of a variant, running ``row`` (counted in ``q.running`` and ``per_variant``).
        Then it runs the next waiting request while the weighted pick, with this slot counted
        free, keeps choosing its variant; when none waits, it parks until ``_dispatch`` hands it
        one. A busy queue then costs no task and no worker wake-up per request."""
        variant = pool.spec.name
        loop = asyncio.get_running_loop()
        counted = True  # this slot is in per_variant (not while parked)
        try:
            while True:
                if await self._run(endpoint, pool, row, q):
                    return  # its instance went away: the worker places the request again
                fleet = self.router.fleets.get(endpoint)
                if (self._queues.get(endpoint) is not q or fleet is None or fleet.spec.asynchronous is None
                        or fleet.pools.get(variant) is not pool):
                    return
                q.per_variant[variant] -= 1
                counted = False
                if q.waiting:
                    if self._pick(fleet, fleet.spec.asynchronous, q) is not pool:
                        return
                    row = q.waiting.popleft()
                    q.running[row.inference_id] = row
                    q.per_variant[variant] += 1
                else:
                    parked: asyncio.Future[Request | None] = loop.create_future()
                    q.idle.setdefault(pool, []).append(parked)
                    try:
                        handed = await parked  # _dispatch counts it before handing it over
                    finally:
                        if parked.cancelled() and parked in q.idle.get(pool, ()):
                            q.idle[pool].remove(parked)
                    if handed is None:
                        return  # released: its variant was replaced or removed
                    row = handed
                counted = True
        finally:
            if counted:
                q.per_variant[variant] -= 1
            q.wake()

    @staticmethod
    def _release_stale(fleet: Fleet | None, q: _Queue) -> None:
        """End the parked slots of variants that are no longer the endpoint's."""
        for pool in [p for p in q.idle if fleet is None or fleet.pools.get(p.spec.name) is not p]:
            for parked in q.idle.pop(pool):
                parked.set_result(None)

    async def _sweep(self) -> None:
        """Forget requests that ended more than MOORAGE_ASYNC_RETENTION_SECONDS ago, a batch per
        transaction on the store's writer thread, so queued writes go in between."""
        loop = asyncio.get_running_loop()
        retention = self.settings.async_retention_seconds
        while True:
            await asyncio.sleep(sweep_interval(retention))
            before = self.clock.time() - retention
            try:
                while await loop.run_in_executor(self._db, self.store.async_expire, before, SWEEP_BATCH) == SWEEP_BATCH:
                    pass
            except Exception:  # a busy or broken store: the next sweep tries again
                log.exception("could not forget expired asynchronous requests")

    def _record_backlog(self, endpoint: str, fleet: Fleet, q: _Queue) -> None:
        instances = sum(len(p.ready) for p in fleet.pools.values())
        values = backlog_metrics([r.created for r in q.waiting], len(q.running), instances,
                                 self.clock.time())
        for variant in fleet.names:
            for name, value in values.items():
                self.metrics.set_gauge(endpoint, variant, name, value,
                                       unit="Seconds" if name == "ApproximateAgeOfOldestRequest" else "Count")

    async def _run(self, endpoint: str, pool: VariantPool, row: Request, q: _Queue) -> bool:
        """Run one request (in ``q.running``); True when it went back to the head of the queue."""
        retry = False
        try:
            retry = await self._execute(endpoint, pool, row, q)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unreadable location: fail the request, keep the queue
            log.exception("async request %s on %s failed", row.inference_id, endpoint)
            reason = str(exc) if isinstance(exc, MoorageError) else f"Internal failure: {type(exc).__name__}: {exc}"
            await self._fail(row, pool.spec.name, reason)
        finally:
            q.running.pop(row.inference_id, None)
            if retry and self._queues.get(endpoint) is q:
                q.waiting.appendleft(row)
            else:  # from now on the store answers for a resubmitted id
                retry = False
                q.known.discard(row.inference_id)
                q.attempts.pop(row.inference_id, None)
        return retry

    async def _execute(self, endpoint: str, pool: VariantPool, row: Request, q: _Queue) -> bool:
        """Run one request to its end. Returns True to put it back in the queue."""
        variant = pool.spec.name
        if row.inference_id in q.recovered:  # it may have finished just before a crash
            q.recovered.discard(row.inference_id)
            if await asyncio.to_thread(objects.exists, row.output_location):
                self._finish(row, "Completed", variant, content_type="")
                return False
            if await asyncio.to_thread(objects.exists, row.failure_location):
                self._finish(row, "Failed", variant, reason="The request failed before a restart; "
                             f"see {row.failure_location}.")
                return False
        if expired(row.created, row.ttl_seconds, self.clock.time()):
            await self._fail(row, variant, f"Request expired: it waited in the queue longer than its "
                                           f"RequestTTLSeconds ({row.ttl_seconds} s).")
            return False
        ctype, accept = row.content_type.encode(), row.accept.encode()
        attrs = row.custom_attributes.encode()
        timeout = float(row.timeout_seconds)
        t0 = time.perf_counter()
        status: int | None = None
        try:
            if row.body is not None:
                s3 = objects.is_s3(row.output_location)
                if s3:
                    reply = await pool.invoke(ctype, accept, attrs, row.body, timeout)
                else:  # the instance writes the result itself, unless it is too close to the timeout
                    target = Publish(row.output_location, self._staging, time.monotonic() + timeout - WRITE_GUARD)
                    reply = await pool.invoke_to(ctype, accept, attrs, row.body, target, timeout)
                status = 200 if reply.status == LATE else reply.status
                if status < 400 and (s3 or reply.status == LATE):
                    await self._publish_bytes(reply.body, row.output_location)
            else:
                reply = await self._invoke_location(pool, row, ctype, accept, attrs, timeout)
                status = reply.status
        except asyncio.TimeoutError:
            await self._fail(row, variant, f"Inference did not finish within InvocationTimeoutSeconds "
                                           f"({row.timeout_seconds} s).", original_status=504)
            return False
        except (InstanceGone, InvokeThrottled) as exc:
            q.attempts[row.inference_id] += 1
            if q.attempts[row.inference_id] < MAX_ATTEMPTS:
                log.warning("async request %s: %s; trying again", row.inference_id, exc)
                return True
            await self._fail(row, variant, f"The instance serving the request stopped "
                                           f"{MAX_ATTEMPTS} times: {exc}")
            return False
        finally:
            if status is not None:
                us = int((time.perf_counter() - t0) * 1e6)
                self.metrics.record_invocation(endpoint, variant, model_status=status,
                                               model_latency_us=us, overhead_latency_us=0)
        if status == NOT_STORED:
            await self._fail(row, variant, f"Could not write the output to {row.output_location}: "
                                           f"{reply.body.decode(errors='replace')}")
            return False
        if status >= 400:
            message = reply.body[:4096].decode(errors="replace")
            await self._fail(row, variant, f"Received {'client' if status < 500 else 'server'} error "
                                           f"({status}) from the model: {message}",
                             original_status=status, original_message=message)
            return False
        self._finish(row, "Completed", variant, content_type=reply.content_type.decode(),
                     response=reply.body if row.body is not None else None)
        return False

    async def _invoke_location(self, pool: VariantPool, row: Request, ctype: bytes, accept: bytes,
                               attrs: bytes, timeout: float) -> Reply:
        """Input file in, result file out: the instance reads and writes the payloads itself."""
        try:
            src, staged = await asyncio.to_thread(objects.stage_input, row.input_location, self.staging)
        except Exception as exc:
            raise ValidationException(f"Could not read the input at {row.input_location}: {exc}") from exc
        dst = await asyncio.to_thread(objects.result_file, self.staging)
        try:
            reply = await pool.invoke_file(ctype, accept, attrs, str(src), str(dst), timeout)
            if reply.status < 400:
                await asyncio.to_thread(objects.publish, dst, row.output_location)
            return reply
        finally:
            dst.unlink(missing_ok=True)
            if staged:
                src.unlink(missing_ok=True)

    async def _publish_bytes(self, data: bytes, url: str) -> None:
        await self._outputs.add((data, url))

    def _write_outputs(self, items: list[tuple[bytes, str]]) -> list[BaseException | None]:
        errors: list[BaseException | None] = []
        for data, url in items:
            try:
                objects.publish_bytes(data, url, self.staging)
                errors.append(None)
            except Exception as exc:
                errors.append(exc)
        return errors

    # -- ends ------------------------------------------------------------------------------
    async def _fail(self, row: Request, variant: str, reason: str, *, original_status: int | None = None,
                    original_message: str | None = None) -> None:
        doc: dict[str, Any] = {"InferenceId": row.inference_id, "FailureReason": reason}
        if original_status is not None:
            doc["OriginalStatusCode"] = original_status
        if original_message is not None:
            doc["OriginalMessage"] = original_message
        try:
            await self._publish_bytes(json.dumps(doc).encode(), row.failure_location)
        except Exception:
            log.exception("could not write the error document of %s to %s", row.inference_id,
                          row.failure_location)
        self._finish(row, "Failed", variant, reason=reason,
                     response=original_message.encode() if original_message else None)

    def _finish(self, row: Request, status: str, variant: str, *, reason: str | None = None,
                content_type: str = "", response: bytes | None = None) -> None:
        """Record the final state (group-committed); the notification goes once it is stored."""
        spec = self._async_spec(row.endpoint)
        topic = ""
        if spec is not None:
            topic = spec.success_topic if status == "Completed" else spec.error_topic
        row.status, row.finished, row.variant, row.failure_reason = status, timestamp(self.clock), variant, reason
        row.notify = "Pending" if topic else None
        change = (status, row.finished, variant, reason, row.notify, row.endpoint, row.inference_id)
        if not topic or spec is None:
            self._finishes.put(change)
            return
        include = ("SUCCESS_NOTIFICATION_TOPIC" if status == "Completed"
                   else "ERROR_NOTIFICATION_TOPIC") in spec.include_response_in
        message = notification(self.settings.region, row, status, content_type, reason,
                               row.finished, response if include else None)

        def stored(f: asyncio.Future[None]) -> None:
            if f.exception() is None:
                self._send(row, topic, message)
            else:
                log.error("could not store the end of %s; no notification", row.inference_id,
                          exc_info=f.exception())
        self._finishes.add(change).add_done_callback(stored)

    def _async_spec(self, endpoint: str) -> AsyncSpec | None:
        fleet = self.router.fleets.get(endpoint)
        return fleet.spec.asynchronous if fleet is not None else None

    # -- notifications ---------------------------------------------------------------------
    def _notify_later(self, row: Request) -> None:
        """After a restart: resend a final state's notification (without the response body)."""
        spec = self._async_spec(row.endpoint)
        topic = ""
        if spec is not None:
            topic = spec.success_topic if row.status == "Completed" else spec.error_topic
        if not topic:
            self._set_notify(row, None)
            return
        self._send(row, topic, notification(self.settings.region, row, row.status, "",
                                            row.failure_reason, row.finished or row.created, None))

    def _set_notify(self, row: Request, state: str | None) -> None:
        self.store.async_set_notify(row.endpoint, row.inference_id, state)

    def _send(self, row: Request, topic: str, message: dict[str, Any]) -> None:
        task = asyncio.create_task(self._deliver(row, topic, message))
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def _deliver(self, row: Request, topic: str, message: dict[str, Any]) -> None:
        """POST the notification to every webhook of the topic, retrying each with backoff."""
        try:
            urls = self.topics.webhooks(topic)
        except ValidationException:
            log.warning("notification topic %s is gone; dropping the notification", topic)
            urls = []
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.webhook_timeout_seconds)
        body = json.dumps(message).encode()
        headers = {"Content-Type": "application/json", "x-amz-sns-message-type": "Notification",
                   "x-amz-sns-topic-arn": topic}
        delivered = await asyncio.gather(*(self._post(url, body, headers) for url in urls))
        if not all(delivered):
            log.error("notification for %s to %s not delivered to every webhook", message["inferenceId"], topic)
        self._set_notify(row, "Sent" if all(delivered) else "Undelivered")

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> bool:
        assert self._http is not None
        delays = retry_delays(self.settings.webhook_attempts, self.settings.webhook_backoff_seconds)
        for attempt in range(len(delays) + 1):
            try:
                r = await self._http.post(url, content=body, headers=headers)
                if r.status_code < 300:
                    return True
                problem = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < len(delays):
                log.warning("webhook %s: %s; retrying in %g s", url, problem, delays[attempt])
                await asyncio.sleep(delays[attempt])
            else:
                log.error("webhook %s: %s; giving up after %d attempts", url, problem, attempt + 1)
        return False


def notification(region: str, row: Request, status: str, content_type: str, reason: str | None,
                 finished: float, response: bytes | None) -> dict[str, Any]:
    """SageMaker's async inference notification (the SNS message body)."""
    request = {"endpointName": row.endpoint, "contentType": row.content_type or None,
               "inputLocation": row.input_location}
    message: dict[str, Any] = {
        "awsRegion": region, "eventTime": _iso(finished), "receivedTime": _iso(row.created),
        "invocationStatus": status,
        "requestParameters": {k: v for k, v in request.items() if v},
        "inferenceId": row.inference_id, "eventVersion": "1.0", "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult"}
    if status == "Completed":
        message["responseParameters"] = {"contentType": content_type, "outputLocation": row.output_location}
    else:
        message["failureReason"] = reason or ""
        message["responseParameters"] = {"failureLocation": row.failure_location}
    if response is not None and len(response) <= NOTIFY_BODY_MAX:
        message["responseBody"] = {"content": base64.b64encode(response).decode(), "encoding": "BASE64"}
    return message


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _readable(url: str) -> bool:
    try:
        return objects.exists(url)
    except Exception:
        return False

