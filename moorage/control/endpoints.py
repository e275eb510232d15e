"""Endpoint lifecycle: Creating → InService | Failed, Updating, Deleting.

Durability: every change is written to the store before it takes effect, and the fleet an
endpoint should run is stored with it (``_fleet``, and ``_target`` during an update). After a
restart ``recover`` resumes each endpoint from its stored status, so nothing accepted is lost.
Idempotency: one operation task runs per endpoint at a time; a delete cancels it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Coroutine

from moorage.clock import timestamp
from moorage.control.base import ServiceBase, public
from moorage.control.listing import page
from moorage.control.logs import read_logs
from moorage.control.models import container_spec
from moorage.errors import (InvokeValidationError, MoorageError, ResourceLimitExceeded,
                            ValidationException)
from moorage.resources.hosting import (AsyncSpec, FleetSpec, ServerlessSpec, VariantSpec, fleet_from_dict,
                                       fleet_to_dict, with_capacity)
from moorage.resources.status import SERVING, EndpointStatus as S
from moorage.serving.pool import DeploymentFailed
from moorage.serving.router import Router
from moorage.store import Record
from moorage.store.sql import Conflict

log = logging.getLogger("moorage.endpoints")


class EndpointService(ServiceBase):
    kind = "Endpoint"

    def __init__(self, store: Any, clock: Any, settings: Any, router: Router,
                 on_delete: Callable[[str], None] = lambda name: None) -> None:
        super().__init__(store, clock, settings)
        self.router = router
        self._on_delete = on_delete
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- helpers ---------------------------------------------------------------------------
    def fleet_spec(self, config: dict[str, Any]) -> FleetSpec:
        variants = []
        for v in config["ProductionVariants"]:
            model = self.require(v["ModelName"], "Model").doc
            container = model.get("PrimaryContainer") or model["Containers"][0]
            sl = v.get("ServerlessConfig")
            serverless = ServerlessSpec(sl["MemorySizeInMB"], sl["MaxConcurrency"],
                                        sl.get("ProvisionedConcurrency", 0)) if sl else None
            variants.append(VariantSpec(
                name=v["VariantName"], model_name=v["ModelName"], container=container_spec(container),
                instance_type=v.get("InstanceType", ""),
                instance_count=serverless.provisioned if serverless else int(v["InitialInstanceCount"]),
                weight=float(v.get("InitialVariantWeight", 1.0)), serverless=serverless))
        a = config.get("AsyncInferenceConfig")
        return FleetSpec(config["EndpointConfigName"], tuple(variants), AsyncSpec.from_config(a) if a else None)

    def _summaries(self, spec: FleetSpec, current: FleetSpec | None, images: dict[str, str],
                   now: float) -> list[dict[str, Any]]:
        out = []
        for v in spec.variants:
            cur = current.variant(v.name) if current else None
            summary: dict[str, Any] = {
                "VariantName": v.name,
                "DeployedImages": [{"SpecifiedImage": images.get(v.name, ""),
                                    "ResolvedImage": images.get(v.name, ""), "ResolutionTime": now}],
                "CurrentWeight": cur.weight if cur else 0.0,
                "DesiredWeight": v.weight,
            }
            if v.serverless is None:
                summary["CurrentInstanceCount"] = cur.instance_count if cur else 0
                summary["DesiredInstanceCount"] = v.instance_count
            else:
                sl = {"MemorySizeInMB": v.serverless.memory_mb, "MaxConcurrency": v.serverless.max_concurrency}
                if v.serverless.provisioned:
                    sl["ProvisionedConcurrency"] = v.serverless.provisioned
                summary["DesiredServerlessConfig"] = sl
                if cur is not None:
                    summary["CurrentServerlessConfig"] = sl
            out.append(summary)
        return out

    def _images(self, spec: FleetSpec) -> dict[str, str]:
        out = {}
        for v in spec.variants:
            model = self.store.get("Model", v.model_name)
            if model:
                c = model.doc.get("PrimaryContainer") or model.doc["Containers"][0]
                out[v.name] = c.get("Image", "")
        return out

    def _check_capacity(self, adding: int) -> None:
        """Refuse a change that would run more instances than this server allows. Fleets being
        replaced count too: blue/green runs both until the switch."""
        if adding <= 0:
            return
        used = 0
        for rec in self.store.list(self.kind):
            if rec.status == S.FAILED.value:
                continue
            for key in ("_fleet", "_target"):
                if key in rec.doc:
                    used += sum(int(v["instance_count"]) for v in rec.doc[key]["variants"])
        limit = self.settings.max_instances
        if used + adding > limit:
            raise ResourceLimitExceeded(
                f"The account-level service limit 'instances for endpoint usage' is {limit} "
                f"Instances, with current utilization of {used} Instances and a request delta of "
                f"{adding} Instances. Delete or scale in endpoints, or raise MOORAGE_MAX_INSTANCES.")

    def _write(self, name: str, status: S, change: Callable[[dict[str, Any]], None]) -> None:
        """Read-modify-write with optimistic concurrency, retried on a concurrent change."""
        for _ in range(20):
            rec = self.store.get(self.kind, name)
            if rec is None:
                return
            doc = dict(rec.doc)
            change(doc)
            now = timestamp(self.clock)
            doc["EndpointStatus"] = status.value
            doc["LastModifiedTime"] = now
            try:
                self.store.update(rec, doc, status=status.value, now=now)
                return
            except Conflict:
                continue
        raise RuntimeError(f"endpoint {name}: too many concurrent updates")

    def _run(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an operation must never leave an endpoint stuck
                log.exception("operation on endpoint %s failed", name)
                reason = f"Internal error: {exc}"
                self._write(name, S.FAILED, lambda d: d.update(FailureReason=reason))
            finally:
                if self._tasks.get(name) is task:
                    del self._tasks[name]
        task = asyncio.create_task(guarded(), name=f"endpoint-{name}")
        self._tasks[name] = task

    async def wait_idle(self, name: str) -> None:
        task = self._tasks.get(name)
        if task:
            await asyncio.shield(task)

    def logs(self, name: str, tail_bytes: int) -> list[dict[str, Any]]:
        """The last ``tail_bytes`` of each of the endpoint's instance logs (those still on disk)."""
        self.require(name)
        return read_logs(self.settings.data_dir / "logs" / name, tail_bytes)

    def invoke_error(self, name: str) -> MoorageError:
        """Why an endpoint has no serving fleet, for the runtime's error message."""
        rec = self.store.get(self.kind, name)
        if rec is None:
            return InvokeValidationError(f"Endpoint {name} of account {self.settings.account_id} not found.")
        return InvokeValidationError(
            f"Endpoint {name} of account {self.settings.account_id} is not in service "
            f"(status {rec.status}); it cannot be invoked now.")

    # -- operations ------------------------------------------------------------------------
    async def create_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("CreateEndpoint", params)
        name = params["EndpointName"]
        config = self.require(params["EndpointConfigName"], "EndpointConfig")
        if self.store.get(self.kind, name):
            raise self.duplicate(name)
        spec = self.fleet_spec(config.doc)
        self._check_capacity(sum(v.instance_count for v in spec.variants))
        now = timestamp(self.clock)
        fields = {"EndpointName": name, "EndpointConfigName": config.name,
                  "EndpointStatus": S.CREATING.value, "LastModifiedTime": now,
                  "ProductionVariants": self._summaries(spec, None, self._images(spec), now),
                  "_fleet": fleet_to_dict(spec)}
        if params.get("DeploymentConfig"):
            fields["LastDeploymentConfig"] = params["DeploymentConfig"]
        if params.get("Tags"):
            fields["_tags"] = params["Tags"]
        rec = self.create_record(name, fields, "EndpointArn", status=S.CREATING.value)
        self._run(name, self._bring_up(name, spec))
        return {"EndpointArn": rec.arn}

    async def describe_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("DescribeEndpoint", params)
        rec = self.require(params["EndpointName"])
        doc = public(rec.doc)
        asynchronous = fleet_from_dict(rec.doc["_fleet"]).asynchronous
        if asynchronous is not None:
            doc["AsyncInferenceConfig"] = asynchronous.to_config()
        fleet = self.router.fleets.get(params["EndpointName"])
        if fleet is not None:  # live instance counts: a replaced instance shows while it starts
            for v in doc.get("ProductionVariants", []):
                pool = fleet.pools.get(v["VariantName"])
                if pool is not None and "CurrentInstanceCount" in v:
                    v["CurrentInstanceCount"] = len(pool.ready)
        return doc

    async def update_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("UpdateEndpoint", params)
        name = params["EndpointName"]
        rec = self._require_in_service(name)
        config = self.require(params["EndpointConfigName"], "EndpointConfig")
        target = self.fleet_spec(config.doc)
        if params.get("RetainAllVariantProperties"):
            excluded = {e["VariantPropertyType"] for e in params.get("ExcludeRetainedVariantProperties", [])}
            current = fleet_from_dict(rec.doc["_fleet"])
            keep = {v.name: v for v in current.variants}
            target = with_capacity(
                target,
                {} if "DesiredWeight" in excluded else {n: v.weight for n, v in keep.items()},
                {} if "DesiredInstanceCount" in excluded else {n: v.instance_count for n, v in keep.items()})
        self._check_capacity(sum(v.instance_count for v in target.variants))
        now = timestamp(self.clock)
        pending = {"EndpointConfigName": config.name, "StartTime": now,
                   "ProductionVariants": [{"VariantName": v.name, "DesiredWeight": v.weight,
                                           "DesiredInstanceCount": v.instance_count}
                                          for v in target.variants]}

        def change(d: dict[str, Any]) -> None:
            d["PendingDeploymentSummary"] = pending
            d["_target"] = fleet_to_dict(target)
            d.pop("FailureReason", None)
            if params.get("DeploymentConfig"):
                d["LastDeploymentConfig"] = params["DeploymentConfig"]
        self._write(name, S.UPDATING, change)
        self._run(name, self._update(name))
        return {"EndpointArn": rec.arn}

    async def _update(self, name: str) -> None:
        """Blue/green: start the new fleet, switch traffic once it is healthy, retire the old."""
        rec = self.store.get(self.kind, name)
        if rec is None:
            return
        target = fleet_from_dict(rec.doc["_target"])
        try:
            fleet = await self.router.build(name, target)
        except DeploymentFailed as exc:
            reason = f"Update to {target.config_name} failed: {exc}"

            def rollback(d: dict[str, Any]) -> None:
                d.pop("PendingDeploymentSummary", None)
                d.pop("_target", None)
                d["FailureReason"] = reason
            self._write(name, S.IN_SERVICE, rollback)
            return
        old = self.router.activate(name, fleet)
        if old is not None:
            await old.close()  # drains: requests in flight on the old fleet finish first
        images = self._images(target)

        def done(d: dict[str, Any]) -> None:
            d.pop("PendingDeploymentSummary", None)
            d["_fleet"] = d.pop("_target")
            d["EndpointConfigName"] = target.config_name
            d["ProductionVariants"] = self._summaries(target, target, images, timestamp(self.clock))
        self._write(name, S.IN_SERVICE, done)

    async def update_endpoint_weights_and_capacities(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("UpdateEndpointWeightsAndCapacities", params)
        arn = self.change_capacity(params["EndpointName"], params["DesiredWeightsAndCapacities"])
        return {"EndpointArn": arn}

    def change_capacity(self, name: str, items: list[dict[str, Any]], min_count: int = 1) -> str:
        """Start an in-place weight/capacity change (``Updating`` until done); returns the ARN.
        Autoscaling passes ``min_count=0``: a policy with MinCapacity 0 may empty a variant."""
        rec = self._require_in_service(name)
        current = fleet_from_dict(rec.doc["_fleet"])
        weights: dict[str, float] = {}
        counts: dict[str, int] = {}
        missing = []
        for item in items:
            vname = item["VariantName"]
            if current.variant(vname) is None:
                missing.append(vname)
                continue
            if "DesiredWeight" not in item and "DesiredInstanceCount" not in item:
                raise ValidationException(
                    f"Variant {vname}: specify DesiredWeight, DesiredInstanceCount or both.")
            if "DesiredWeight" in item:
                weights[vname] = float(item["DesiredWeight"])
            if "DesiredInstanceCount" in item and current.variant(vname).serverless is not None:
                raise ValidationException(
                    f"Variant {vname} is serverless: it has no DesiredInstanceCount to change.")
            if "DesiredInstanceCount" in item:
                if item["DesiredInstanceCount"] < min_count:
                    raise ValidationException(
                        f"Variant {vname}: DesiredInstanceCount must be at least {min_count}.")
                counts[vname] = int(item["DesiredInstanceCount"])
        if missing:
            raise ValidationException(
                f'The variant(s) "[{", ".join(missing)}]" is/are not present in the endpoint "{rec.arn}".')
        target = with_capacity(current, weights, counts)
        if sum(v.weight for v in target.variants) <= 0:
            raise ValidationException("The sum of the variants' weights must be greater than 0.")
        self._check_capacity(sum(v.instance_count for v in target.variants)
                             - sum(v.instance_count for v in current.variants))
        images = self._images(target)
        now = timestamp(self.clock)

        def change(d: dict[str, Any]) -> None:
            d["_target"] = fleet_to_dict(target)
            d["ProductionVariants"] = self._summaries(target, current, images, now)
            d.pop("FailureReason", None)
        self._write(name, S.UPDATING, change)
        self._run(name, self._apply_capacity(name))
        return rec.arn

    async def _apply_capacity(self, name: str) -> None:
        """In place: scale up, then move weights, then scale down; never a moment without capacity."""
        rec = self.store.get(self.kind, name)
        fleet = self.router.fleets.get(name)
        if rec is None:
            return
        target = fleet_from_dict(rec.doc["_target"])
        if fleet is None:  # the server restarted mid-change: build the target fleet outright
            await self._bring_up(name, target)
            return
        try:
            ups = [fleet.pools[v.name].scale_to(v.instance_count) for v in target.variants
                   if v.instance_count > fleet.pools[v.name].desired]
            await asyncio.gather(*ups)
        except DeploymentFailed as exc:
            reason = f"Capacity change failed: {exc}"
            self._write(name, S.IN_SERVICE, lambda d: (d.pop("_target", None), d.update(FailureReason=reason)))
            return
        fleet.set_weights({v.name: v.weight for v in target.variants})
        fleet.spec = target
        await asyncio.gather(*(fleet.pools[v.name].scale_to(v.instance_count) for v in target.variants
                               if v.instance_count < fleet.pools[v.name].desired))
        images = self._images(target)

        def done(d: dict[str, Any]) -> None:
            d["_fleet"] = d.pop("_target")
            d["ProductionVariants"] = self._summaries(target, target, images, timestamp(self.clock))
        self._write(name, S.IN_SERVICE, done)

    def _require_in_service(self, name: str) -> Record:
        rec = self.require(name)
        if rec.status != S.IN_SERVICE.value:
            raise ValidationException(
                f'Cannot update in-progress endpoint "{rec.arn}" (status {rec.status}).')
        return rec

    async def delete_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("DeleteEndpoint", params)
        name = params["EndpointName"]
        rec = self.require(name)
        if rec.status == S.DELETING.value:
            return {}
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        self._write(name, S.DELETING, lambda d: None)
        self._run(name, self._delete(name))
        return {}

    async def _delete(self, name: str) -> None:
        self._on_delete(name)
        await self.router.remove(name)
        self.store.delete(self.kind, name)

    async def list_endpoints(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("ListEndpoints", params)
        items, token = page(self.store.list(self.kind), params, lambda r: {
            "EndpointName": r.name, "EndpointArn": r.arn, "CreationTime": r.created,
            "LastModifiedTime": r.modified, "EndpointStatus": r.status},
            sort_keys=("Name", "CreationTime", "Status"))
        return {"Endpoints": items, **({"NextToken": token} if token else {})}

    # -- bring-up and restart ----------------------------------------------------------------
    async def _bring_up(self, name: str, spec: FleetSpec, failure: str = "") -> None:
        """Start ``spec``'s fleet and route to it: the endpoint ends InService on it, or Failed
        with the reason (prefixed by ``failure``)."""
        try:
            fleet = await self.router.build(name, spec)
        except DeploymentFailed as exc:
            reason = f"{failure}{exc}"
            self._write(name, S.FAILED, lambda d: d.update(FailureReason=reason))
            return
        self.router.activate(name, fleet)
        images = self._images(spec)

        def done(d: dict[str, Any]) -> None:
            d.pop("PendingDeploymentSummary", None)
            d.pop("_target", None)
            d["_fleet"] = fleet_to_dict(spec)
            d["EndpointConfigName"] = spec.config_name
            d["ProductionVariants"] = self._summaries(spec, spec, images, timestamp(self.clock))
        self._write(name, S.IN_SERVICE, done)

    async def recover(self) -> None:
        """Resume every endpoint from its stored status (called once at server start)."""
        for rec in self.store.list(self.kind):
            status = S(rec.status)
            if status is S.DELETING:
                self._run(rec.name, self._delete(rec.name))
            elif status is S.CREATING:
                self._run(rec.name, self._bring_up(rec.name, fleet_from_dict(rec.doc["_fleet"])))
            elif status in SERVING:
                spec = fleet_from_dict(rec.doc.get("_target") or rec.doc["_fleet"])
                self._run(rec.name, self._bring_up(
                    rec.name, spec, "Could not restart the endpoint's instances: "))
