"""Builds the service graph from Settings: explicit wiring, no global container."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from moorage.artifacts.fetch import fetch_model_data, model_data_exists
from moorage.backends.base import Backend
from moorage.backends.local import LocalBackend
from moorage.clock import Clock, SystemClock
from moorage.control.async_inference import AsyncInferenceService
from moorage.control.autoscaling import AutoscalingService
from moorage.control.compute import ComputePool
from moorage.control.endpoint_configs import EndpointConfigService
from moorage.control.endpoints import EndpointService
from moorage.control.keys import KeyService
from moorage.control.models import ModelService
from moorage.control.topics import TopicService
from moorage.control.transform_jobs import TransformJobService
from moorage.metrics import MetricsRegistry
from moorage.serving.router import Router
from moorage.settings import Settings
from moorage.store import Store

Operation = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class Services:
    settings: Settings
    store: Store
    clock: Clock
    metrics: MetricsRegistry
    router: Router
    models: ModelService
    endpoint_configs: EndpointConfigService
    endpoints: EndpointService
    keys: KeyService
    autoscaling: AutoscalingService
    topics: TopicService
    async_inference: AsyncInferenceService
    transform_jobs: TransformJobService
    #: service → operation name → handler taking and returning wire-shaped dicts
    operations: dict[str, dict[str, Operation]] = field(default_factory=lambda: {
        "sagemaker": {}, "application-autoscaling": {}, "batch": {}})

    async def start(self) -> None:
        await self.endpoints.recover()
        self.async_inference.recover()
        self.transform_jobs.recover()
        self.autoscaling.start()

    async def stop(self) -> None:
        await self.autoscaling.stop()
        await self.transform_jobs.stop()
        await self.async_inference.stop()
        await self.router.close()


def build_services(settings: Settings, *, backend: Backend | None = None,
                   clock: Clock | None = None) -> Services:
    clock = clock or SystemClock()
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    store = Store(settings.resolved_database_url())
    metrics = MetricsRegistry(clock)
    cache = data / "cache" / "models"
    if backend is None:
        # Unix socket paths are capped at 107 bytes, so sockets live in a short temp dir.
        run_dir = Path(tempfile.mkdtemp(prefix="moorage-"))
        backend = LocalBackend(run_dir, settings.python_executable, dict(os.environ))

    def fetch(url: str) -> Path:
        return fetch_model_data(url, cache, max_bytes=settings.max_tar_bytes,
                                max_members=settings.max_tar_members)

    router = Router(backend, settings, metrics, fetch, data / "logs")
    models = ModelService(store, clock, settings, model_data_exists)
    topics = TopicService(store, clock, settings)
    async_inference = AsyncInferenceService(store, clock, settings, router, metrics, topics)
    configs = EndpointConfigService(store, clock, settings, async_inference.check_config)
    endpoints = EndpointService(store, clock, settings, router, on_delete=async_inference.forget)
    router.on_missing = endpoints.invoke_error
    svc = Services(settings, store, clock, metrics, router, models, configs, endpoints,
                   KeyService(store, clock),
                   AutoscalingService(store, clock, settings, endpoints, metrics),
                   topics, async_inference,
                   TransformJobService(store, clock, settings, router, ComputePool("default", settings.job_vcpus)))
    for service in (models, configs, endpoints, svc.transform_jobs):
        for attr in dir(service):
            if attr.startswith("_"):
                continue
            op = "".join(part.capitalize() for part in attr.split("_"))
            if op.startswith(("Create", "Describe", "Delete", "List", "Update", "Stop")):
                svc.operations["sagemaker"][op] = getattr(service, attr)
    svc.operations["application-autoscaling"] = {
        "".join(part.capitalize() for part in attr.split("_")): getattr(svc.autoscaling, attr)
        for attr in ("register_scalable_target", "deregister_scalable_target",
                     "describe_scalable_targets", "put_scaling_policy", "delete_scaling_policy",
                     "describe_scaling_policies", "describe_scaling_activities")}
    return svc
