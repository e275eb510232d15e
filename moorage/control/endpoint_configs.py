"""CreateEndpointConfig and friends: variant validation against models and the catalog."""

from __future__ import annotations

from typing import Any, Callable

from moorage.clock import Clock
from moorage.control.base import ServiceBase, public
from moorage.control.listing import page
from moorage.errors import ValidationException
from moorage.resources.profiles import profile
from moorage.settings import Settings
from moorage.store import Store


class EndpointConfigService(ServiceBase):
    kind = "EndpointConfig"

    def __init__(self, store: Store, clock: Clock, settings: Settings,
                 check_async: Callable[[dict[str, Any], list[dict[str, Any]]], None]) -> None:
        super().__init__(store, clock, settings)
        self._check_async = check_async

    def check_variants(self, variants: list[dict[str, Any]]) -> None:
        names = [v["VariantName"] for v in variants]
        if len(set(names)) != len(names):
            raise ValidationException(f"Variant names must be unique; got {', '.join(names)}.")
        for v in variants:
            if v.get("ServerlessConfig"):
                check_serverless(v)
            elif "InstanceType" not in v or "InitialInstanceCount" not in v:
                raise ValidationException(
                    f"Variant {v['VariantName']}: InstanceType and InitialInstanceCount are required "
                    "(or ServerlessConfig for a serverless variant).")
            else:
                profile(v["InstanceType"])
            if not v.get("ModelName"):
                raise ValidationException(f"Variant {v['VariantName']}: ModelName is required.")
            self.require(v["ModelName"], "Model")
        if sum(v.get("InitialVariantWeight", 1.0) for v in variants) <= 0:
            raise ValidationException(
                "The sum of InitialVariantWeight across ProductionVariants must be greater than 0.")

    async def create_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("CreateEndpointConfig", params)
        name = params["EndpointConfigName"]
        if params.get("ShadowProductionVariants"):
            raise ValidationException("ShadowProductionVariants is not supported yet.")
        self.check_variants(params["ProductionVariants"])
        if params.get("AsyncInferenceConfig"):
            self._check_async(params["AsyncInferenceConfig"], params["ProductionVariants"])
        rec = self.create_record(name, params, "EndpointConfigArn")
        return {"EndpointConfigArn": rec.arn}

    async def describe_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("DescribeEndpointConfig", params)
        return public(self.require(params["EndpointConfigName"]).doc)

    async def delete_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("DeleteEndpointConfig", params)
        self.require(params["EndpointConfigName"])
        self.store.delete(self.kind, params["EndpointConfigName"])
        return {}

    async def list_endpoint_configs(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("ListEndpointConfigs", params)
        items, token = page(self.store.list(self.kind), params, lambda r: {
            "EndpointConfigName": r.name, "EndpointConfigArn": r.arn, "CreationTime": r.created})
        return {"EndpointConfigs": items, **({"NextToken": token} if token else {})}


def check_serverless(variant: dict[str, Any]) -> None:
    """What botocore's ranges do not say: no instance fields beside ServerlessConfig, memory in
    1 GB steps, provisioned concurrency within MaxConcurrency."""
    name, sl = variant["VariantName"], variant["ServerlessConfig"]
    both = [f for f in ("InstanceType", "InitialInstanceCount") if f in variant]
    if both:
        raise ValidationException(
            f"Variant {name}: ServerlessConfig cannot be combined with {' and '.join(both)}; "
            "a serverless variant has no instances of its own.")
    if sl["MemorySizeInMB"] % 1024:
        raise ValidationException(
            f"Variant {name}: MemorySizeInMB must be one of 1024, 2048, 3072, 4096, 5120 or 6144; "
            f"got {sl['MemorySizeInMB']}.")
    if sl.get("ProvisionedConcurrency", 0) > sl["MaxConcurrency"]:
        raise ValidationException(
            f"Variant {name}: ProvisionedConcurrency ({sl['ProvisionedConcurrency']}) cannot exceed "
            f"MaxConcurrency ({sl['MaxConcurrency']}).")
