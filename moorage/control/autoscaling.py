"""Application Auto Scaling for endpoint variants: scalable targets, target-tracking policies,
scaling activities, and the loop that applies them.

The scalable dimension is ``sagemaker:variant:DesiredInstanceCount`` on resource id
``endpoint/<name>/variant/<variant>``. Every MOORAGE_AUTOSCALING_INTERVAL_SECONDS the loop
measures each policy's metric, asks ``serving.autoscaler.decide`` (a pure function) and, on
a decision, changes the variant's capacity the way UpdateEndpointWeightsAndCapacities does
(scale-in drains first). Targets, policies and activities are stored; cooldown timestamps
are kept in memory (a restart forgets them, which only makes the next decision earlier).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from moorage.clock import timestamp
from moorage.control.base import ServiceBase
from moorage.control.endpoints import EndpointService
from moorage.control.validation import validate_input
from moorage.errors import ObjectNotFound, ValidationException
from moorage.metrics import MetricsRegistry
from moorage.resources.hosting import fleet_from_dict
from moorage.serving.autoscaler import Policy, State, decide

log = logging.getLogger("moorage.autoscaling")

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
PREDEFINED = "SageMakerVariantInvocationsPerInstance"
TARGET, POLICY, ACTIVITY = "ScalableTarget", "ScalingPolicy", "ScalingActivity"


class AutoscalingService(ServiceBase):
    kind = TARGET

    def __init__(self, store: Any, clock: Any, settings: Any, endpoints: EndpointService,
                 metrics: MetricsRegistry) -> None:
        super().__init__(store, clock, settings)
        self._endpoints = endpoints
        self._metrics = metrics
        self._states: dict[str, State] = {}
        self._counts: dict[str, tuple[float, int]] = {}  # policy → (time, invocations total)
        self._task: asyncio.Task[None] | None = None

    # -- helpers ---------------------------------------------------------------------------
    def _check(self, op: str, params: dict[str, Any]) -> tuple[str, str]:
        validate_input("application-autoscaling", op, params)
        if params["ServiceNamespace"] != NAMESPACE:
            raise ValidationException(f"Moorage scales only the 'sagemaker' namespace, not "
                                      f"{params['ServiceNamespace']!r}.")
        if "ScalableDimension" in params and params["ScalableDimension"] != DIMENSION:
            raise ValidationException(f"Unsupported scalable dimension {params['ScalableDimension']!r}; "
                                      f"use {DIMENSION}.")
        parts = params.get("ResourceId", "").split("/")
        if "ResourceId" in params and (len(parts) != 4 or parts[0] != "endpoint" or parts[2] != "variant"):
            raise ValidationException(f"ResourceId {params['ResourceId']!r} must look like "
                                      "endpoint/<endpoint-name>/variant/<variant-name>.")
        return (parts[1], parts[3]) if len(parts) == 4 else ("", "")

    def _target(self, resource_id: str) -> dict[str, Any]:
        rec = self.store.get(TARGET, resource_id)
        if rec is None:
            raise ObjectNotFound(f"No scalable target registered for service namespace: {NAMESPACE}, "
                                 f"resource ID: {resource_id}, scalable dimension: {DIMENSION}")
        return rec.doc

    def _arn(self, kind: str, tail: str) -> str:
        return f"arn:aws:autoscaling:{self.settings.region}:{self.settings.account_id}:{kind}:{tail}"

    def _put(self, kind: str, name: str, doc: dict[str, Any]) -> None:
        old = self.store.get(kind, name)
        now = timestamp(self.clock)
        if old is None:
            self.store.insert(kind, name, doc.get("PolicyARN") or name, doc, status=None, now=now)
        else:
            self.store.update(old, doc, status=None, now=now)

    @staticmethod
    def _page(items: list[dict[str, Any]], params: dict[str, Any], key: str) -> dict[str, Any]:
        start = int(params.get("NextToken") or 0) if str(params.get("NextToken", "0")).isdigit() else 0
        limit = int(params.get("MaxResults", 50))
        out: dict[str, Any] = {key: items[start:start + limit]}
        if start + limit < len(items):
            out["NextToken"] = str(start + limit)
        return out

    # -- scalable targets ------------------------------------------------------------------
    async def register_scalable_target(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint, variant = self._check("RegisterScalableTarget", params)
        rec = self._endpoints.require(endpoint)
        fleet = fleet_from_dict(rec.doc["_fleet"])
        spec = fleet.variant(variant)
        if spec is None:
            raise ValidationException(f"The variant {variant} is not present in endpoint {endpoint}.")
        if spec.serverless is not None:
            raise ValidationException(f"Variant {variant} is serverless; it scales by itself.")
        rid = params["ResourceId"]
        old = self.store.get(TARGET, rid)
        if old is None and ("MinCapacity" not in params or "MaxCapacity" not in params):
            raise ValidationException("MinCapacity and MaxCapacity are required to register a new "
                                      "scalable target.")
        doc = dict(old.doc) if old else {
            "ServiceNamespace": NAMESPACE, "ResourceId": rid, "ScalableDimension": DIMENSION,
            "CreationTime": timestamp(self.clock),
            "ScalableTargetARN": self._arn("scalable-target", uuid.uuid4().hex),
            "RoleARN": params.get("RoleARN", f"arn:aws:iam::{self.settings.account_id}:role/moorage")}
        for field in ("MinCapacity", "MaxCapacity", "SuspendedState"):
            if field in params:
                doc[field] = params[field]
        if doc["MinCapacity"] > doc["MaxCapacity"]:
            raise ValidationException(f"MinCapacity ({doc['MinCapacity']}) cannot be greater than "
                                      f"MaxCapacity ({doc['MaxCapacity']}).")
        self._put(TARGET, rid, doc)
        return {"ScalableTargetARN": doc["ScalableTargetARN"]}

    async def deregister_scalable_target(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check("DeregisterScalableTarget", params)
        rid = params["ResourceId"]
        self._target(rid)
        for rec in self.store.list(POLICY):
            if rec.doc["ResourceId"] == rid:
                self.store.delete(POLICY, rec.name)
        self.store.delete(TARGET, rid)
        return {}

    async def describe_scalable_targets(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check("DescribeScalableTargets", params)
        wanted = set(params.get("ResourceIds") or [])
        items = [r.doc for r in sorted(self.store.list(TARGET), key=lambda r: r.created)
                 if not wanted or r.name in wanted]
        return self._page(items, params, "ScalableTargets")

    # -- policies --------------------------------------------------------------------------
    async def put_scaling_policy(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check("PutScalingPolicy", params)
        rid = params["ResourceId"]
        self._target(rid)
        if params.get("PolicyType", "StepScaling") != "TargetTrackingScaling":
            raise ValidationException("Moorage supports PolicyType TargetTrackingScaling only.")
        config = params.get("TargetTrackingScalingPolicyConfiguration")
        if not config:
            raise ValidationException("TargetTrackingScalingPolicyConfiguration is required.")
        predefined = config.get("PredefinedMetricSpecification")
        custom = config.get("CustomizedMetricSpecification")
        if bool(predefined) == bool(custom):
            raise ValidationException("Specify exactly one of PredefinedMetricSpecification and "
                                      "CustomizedMetricSpecification.")
        if predefined and predefined["PredefinedMetricType"] != PREDEFINED:
            raise ValidationException(f"Predefined metric {predefined['PredefinedMetricType']} is not "
                                      f"supported; use {PREDEFINED} or a customized metric.")
        if custom and "MetricName" not in custom:
            raise ValidationException("CustomizedMetricSpecification needs MetricName, one of "
                                      "Moorage's metrics (for example ApproximateBacklogSizePerInstance).")
        name = f"{rid}|{params['PolicyName']}"
        old = self.store.get(POLICY, name)
        arn = old.doc["PolicyARN"] if old else self._arn(
            "scalingPolicy", f"{uuid.uuid4()}:resource/{NAMESPACE}/{rid}:policyName/{params['PolicyName']}")
        doc = {"PolicyARN": arn, "PolicyName": params["PolicyName"], "ServiceNamespace": NAMESPACE,
               "ResourceId": rid, "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling",
               "TargetTrackingScalingPolicyConfiguration": config, "Alarms": [],
               "CreationTime": old.doc["CreationTime"] if old else timestamp(self.clock)}
        self._put(POLICY, name, doc)
        return {"PolicyARN": arn, "Alarms": []}

    async def delete_scaling_policy(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check("DeleteScalingPolicy", params)
        if not self.store.delete(POLICY, f"{params['ResourceId']}|{params['PolicyName']}"):
            raise ObjectNotFound(f"No scaling policy found for service namespace: {NAMESPACE}, "
                                 f"resource ID: {params['ResourceId']}, scalable dimension: {DIMENSION}, "
                                 f"policy name: {params['PolicyName']}")
        return {}

    async def describe_scaling_policies(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check("DescribeScalingPolicies", params)
        names = set(params.get("PolicyNames") or [])
        items = [r.doc for r in sorted(self.store.list(POLICY), key=lambda r: r.created)
                 if (not names or r.doc["PolicyName"] in names)
                 and params.get("ResourceId", r.doc["ResourceId"]) == r.doc["ResourceId"]]
        return self._page(items, params, "ScalingPolicies")

    async def describe_scaling_activities(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check("DescribeScalingActivities", params)
        items = [r.doc for r in sorted(self.store.list(ACTIVITY), key=lambda r: r.created, reverse=True)
                 if params.get("ResourceId", r.doc["ResourceId"]) == r.doc["ResourceId"]]
        return self._page(items, params, "ScalingActivities")

    # -- the loop ----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="autoscaling")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _loop(self) -> None:
        while True:  # never dies: one bad evaluation is logged and the next round runs
            await asyncio.sleep(self.settings.autoscaling_interval_seconds)
            try:
                await self.evaluate()
            except Exception:
                log.exception("autoscaling evaluation failed")

    def _metric(self, key: str, endpoint: str, variant: str, config: dict[str, Any],
                capacity: int, now: float) -> float | None:
        custom = config.get("CustomizedMetricSpecification")
        if custom:
            return self._metrics.gauge(endpoint, variant, custom["MetricName"])
        # invocations per instance per minute, from the change in the running total
        total = self._metrics.invocations_total(endpoint, variant)
        last = self._counts.get(key)
        self._counts[key] = (now, total)
        if last is None or now <= last[0]:
            return None
        per_minute = (total - last[1]) / (now - last[0]) * 60
        return per_minute / max(capacity, 1)

    async def evaluate(self) -> None:
        """One round over every policy (public for tests that drive it without waiting)."""
        now = self.clock.monotonic()
        for rec in self.store.list(POLICY):
            doc = rec.doc
            target = self.store.get(TARGET, doc["ResourceId"])
            if target is None:
                continue
            endpoint, variant = doc["ResourceId"].split("/")[1::2]
            ep = self.store.get("Endpoint", endpoint)
            if ep is None or ep.status != "InService":
                continue
            spec = fleet_from_dict(ep.doc["_fleet"]).variant(variant)
            if spec is None:
                continue
            config = doc["TargetTrackingScalingPolicyConfiguration"]
            suspended = target.doc.get("SuspendedState") or {}
            policy = Policy(target=float(config["TargetValue"]),
                            min_capacity=int(target.doc["MinCapacity"]),
                            max_capacity=int(target.doc["MaxCapacity"]),
                            scale_out_cooldown=float(config.get("ScaleOutCooldown", 300)),
                            scale_in_cooldown=float(config.get("ScaleInCooldown", 300)),
                            disable_scale_in=bool(config.get("DisableScaleIn"))
                            or bool(suspended.get("DynamicScalingInSuspended")))
            metric = self._metric(rec.name, endpoint, variant, config, spec.instance_count, now)
            decision, state = decide(policy, spec.instance_count, metric,
                                     self._states.get(rec.name, State()), now)
            if decision is None:
                continue
            out = decision.desired > spec.instance_count
            if out and suspended.get("DynamicScalingOutSuspended"):
                continue
            self._states[rec.name] = state
            await self._scale(doc, endpoint, variant, spec.instance_count, decision.desired, decision.reason)

    async def _scale(self, policy: dict[str, Any], endpoint: str, variant: str, old: int, new: int,
                     reason: str) -> None:
        activity = {"ActivityId": str(uuid.uuid4()), "ServiceNamespace": NAMESPACE,
                    "ResourceId": policy["ResourceId"], "ScalableDimension": DIMENSION,
                    "Description": f"Setting desired instance count to {new}.",
                    "Cause": f"monitor alarm {policy['PolicyName']} in state ALARM triggered policy "
                             f"{policy['PolicyName']}: {reason}",
                    "StartTime": timestamp(self.clock), "StatusCode": "InProgress"}
        self.store.insert(ACTIVITY, activity["ActivityId"], activity["ActivityId"], activity,
                          status="InProgress", now=activity["StartTime"])
        try:
            self._endpoints.change_capacity(endpoint, [{"VariantName": variant, "DesiredInstanceCount": new}],
                                            min_count=0)
            await self._endpoints.wait_idle(endpoint)
            ep = self.store.get("Endpoint", endpoint)
            failed = ep is None or ep.doc.get("FailureReason", "").startswith("Capacity change failed")
            activity.update(StatusCode="Failed" if failed else "Successful",
                            StatusMessage=(ep.doc.get("FailureReason", "") if ep and failed else
                                           f"Successfully set desired instance count to {new}. "
                                           f"Change successfully fulfilled by sagemaker (was {old})."))
        except Exception as exc:  # e.g. the endpoint started an update meanwhile
            activity.update(StatusCode="Failed", StatusMessage=str(exc))
        activity["EndTime"] = timestamp(self.clock)
        rec = self.store.get(ACTIVITY, activity["ActivityId"])
        if rec is not None:
            self.store.update(rec, activity, status=activity["StatusCode"], now=activity["EndTime"])
