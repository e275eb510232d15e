"""The per-request path: choose a variant, choose an instance, forward, record.

Fleets are swapped atomically (one dict assignment), so an UpdateEndpoint moves traffic from
the old fleet to the new one between two requests, and requests already in flight finish on
the fleet that took them while it drains.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Callable

from moorage.backends.base import Backend, InstanceGone, Reply
from moorage.errors import InvokeThrottled, InvokeValidationError, ModelError, ServiceUnavailable
from moorage.metrics import MetricsRegistry
from moorage.resources.hosting import FleetSpec
from moorage.serving.pool import DeploymentFailed, VariantPool
from moorage.serving.variants import choose, cumulative
from moorage.settings import Settings

FetchModel = Callable[[str], Path]


class Fleet:
    """The variants serving one endpoint config, with their traffic weights."""

    def __init__(self, spec: FleetSpec, pools: dict[str, VariantPool]) -> None:
        self.spec = spec
        self.pools = pools
        self.asynchronous = spec.asynchronous is not None
        self.names = [v.name for v in spec.variants]
        self._ordered = [pools[n] for n in self.names]
        self.set_weights({v.name: v.weight for v in spec.variants})

    def set_weights(self, weights: dict[str, float]) -> None:
        self.weights = {n: weights.get(n, 0.0) for n in self.names}
        self._cum = cumulative([self.weights[n] for n in self.names])

    def pick(self, target: str | None) -> VariantPool:
        if target:
            pool = self.pools.get(target)
            if pool is None:
                raise InvokeValidationError(
                    f'The variant "{target}" is not present in the endpoint. '
                    f"Variants: {', '.join(self.names)}.")
            return pool
        i = choose(self._cum, random.random())
        if i < 0:
            raise InvokeValidationError("Every production variant of this endpoint has weight 0.")
        return self._ordered[i]

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.pools.values()))


class Router:
    def __init__(self, backend: Backend, settings: Settings, metrics: MetricsRegistry,
                 fetch_model: FetchModel, log_root: Path) -> None:
        self.fleets: dict[str, Fleet] = {}
        #: explains a missing fleet (unknown endpoint, or one not in service); set by control/
        self.on_missing: Callable[[str], Exception] = lambda name: InvokeValidationError(
            f"Endpoint {name} of account {settings.account_id} not found.")
        #: told when a fleet starts serving an endpoint (control/ starts async workers)
        self.on_activate: Callable[[str, Fleet], None] = lambda endpoint, fleet: None
        self._backend = backend
        self._settings = settings
        self._metrics = metrics
        self._fetch = fetch_model
        self._log_root = log_root
        self._timeout = settings.invocation_timeout_seconds
        self._log_group = (f"arn:aws:logs:{settings.region}:{settings.account_id}:"
                           "log-group:/aws/sagemaker/Endpoints/")

    # -- fleets ----------------------------------------------------------------------------
    async def build(self, endpoint: str, spec: FleetSpec) -> Fleet:
        """Start every variant's instances and wait until all are ready. Nothing is routed
        to the new fleet until ``activate``. On failure every started instance is stopped."""
        pools: dict[str, VariantPool] = {}
        try:
            for v in spec.variants:
                url = v.container.model_data_url
                try:
                    model_dir = await asyncio.to_thread(self._fetch, url) if url else None
                except Exception as exc:  # a MoorageError with a clear message, usually
                    raise DeploymentFailed(f"Variant {v.name}: {exc}") from exc
                pools[v.name] = VariantPool(endpoint, v, model_dir, self._backend, self._settings,
                                            self._log_root / endpoint / v.name,
                                            on_size=self._metrics.set_instance_count,
                                            on_cold_start=self._cold_start)
            await asyncio.gather(*(pools[v.name].scale_to(v.instance_count) for v in spec.variants))
        except BaseException:
            await asyncio.gather(*(p.close() for p in pools.values()), return_exceptions=True)
            raise
        return Fleet(spec, pools)

    def _cold_start(self, endpoint: str, variant: str, ms: float) -> None:
        # SageMaker's serverless ModelSetupTime, in microseconds
        self._metrics.record_value(endpoint, variant, "ModelSetupTime", ms * 1000, unit="Microseconds")

    def activate(self, endpoint: str, fleet: Fleet) -> Fleet | None:
        old = self.fleets.get(endpoint)
        self.fleets[endpoint] = fleet
        self.on_activate(endpoint, fleet)
        return old

    async def remove(self, endpoint: str) -> None:
        fleet = self.fleets.pop(endpoint, None)
        if fleet is not None:
            await fleet.close()
        self._metrics.drop_endpoint(endpoint)

    def forget_metrics(self, endpoint: str) -> None:
        """Drop the metrics of a fleet that was never activated (a job's)."""
        self._metrics.drop_endpoint(endpoint)

    def instances(self, endpoint: str) -> list[dict[str, object]]:
        """The live instances of an endpoint's serving fleet, for operators and tests."""
        fleet = self.fleets.get(endpoint)
        if fleet is None:
            return []
        return [{"VariantName": name, "InstanceId": r.handle.instance_id, "State": r.state.value,
                 "Pid": getattr(r.handle, "pid", None), "Outstanding": r.outstanding}
                for name, pool in fleet.pools.items() for r in pool.replicas]

    async def close(self) -> None:
        await asyncio.gather(*(f.close() for f in self.fleets.values()), return_exceptions=True)
        self.fleets.clear()

    # -- the hot path --------------------------------------------------------------------
    async def invoke(self, endpoint: str, target_variant: str | None, content_type: bytes,
                     accept: bytes, attrs: bytes, body: bytes, t0: float) -> tuple[str, Reply]:
        """Returns (variant name, the instance's reply). ``t0`` is when the request arrived
        (time.perf_counter), for OverheadLatency."""
        fleet = self.fleets.get(endpoint)
        if fleet is None:
            raise self.on_missing(endpoint)
        if fleet.asynchronous:
            raise InvokeValidationError(
                f"Endpoint {endpoint} is an asynchronous endpoint; use InvokeEndpointAsync.")
        pool = fleet.pick(target_variant)
        variant = pool.spec.name
        t1 = time.perf_counter()
        status: int | None = None
        routed = True
        try:
            reply = await pool.invoke(content_type, accept, attrs, body, self._timeout)
            status = reply.status
        except InvokeThrottled:
            routed = False  # refused before reaching the model: not an invocation
            raise
        except asyncio.TimeoutError:
            raise ModelError(
                "Your invocation timed out while waiting for a response from container primary.",
                original_status=504, original_message="invocation timed out",
                log_stream_arn=self._log_group + endpoint) from None
        except InstanceGone as exc:
            raise ServiceUnavailable(f"The instance serving variant {variant} stopped: {exc}") from None
        finally:
            if routed:
                t2 = time.perf_counter()
                model_us = int((t2 - t1) * 1e6)
                self._metrics.record_invocation(endpoint, variant, model_status=status,
                                                model_latency_us=model_us,
                                                overhead_latency_us=int((t2 - t0) * 1e6) - model_us)
        if status >= 400:
            text = reply.body[:4096].decode(errors="replace")
            kind = "client" if status < 500 else "server"
            raise ModelError(
                f'Received {kind} error ({status}) from primary with message "{text}". '
                f"See {self._log_group}{endpoint} in account {self._settings.account_id} "
                "for more information.",
                original_status=status, original_message=text,
                log_stream_arn=self._log_group + endpoint)
        return variant, reply
