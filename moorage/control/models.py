"""CreateModel / DescribeModel / DeleteModel / ListModels, with image → runtime resolution."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from moorage.control.base import ServiceBase, public
from moorage.control.listing import page
from moorage.errors import ValidationException
from moorage.resources.hosting import ContainerSpec
from moorage.runtime.images import resolve_image
from moorage.store import Store


def container_spec(container: dict[str, Any]) -> ContainerSpec:
    """The runnable form of a stored ContainerDefinition."""
    spec = resolve_image(container.get("Image") or "")
    return ContainerSpec(runtime=spec.kind, command=tuple(spec.command),
                         model_data_url=container.get("ModelDataUrl"),
                         environment=tuple(sorted((container.get("Environment") or {}).items())))


class ModelService(ServiceBase):
    kind = "Model"

    def __init__(self, store: Store, clock: Any, settings: Any,
                 model_data_exists: Callable[[str], bool]) -> None:
        super().__init__(store, clock, settings)
        self._exists = model_data_exists

    async def create_model(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("CreateModel", params)
        name = params["ModelName"]
        containers = params.get("Containers") or []
        primary = params.get("PrimaryContainer")
        if primary and containers:
            raise ValidationException("Specify PrimaryContainer or Containers, not both.")
        if not primary and not containers:
            raise ValidationException("A model needs a PrimaryContainer (or Containers).")
        if len(containers) > 1:
            raise ValidationException(
                "Models with more than one container (serial inference pipelines and "
                "multi-container endpoints) are not supported yet; use PrimaryContainer.")
        container = primary or containers[0]
        if container.get("Mode", "SingleModel") != "SingleModel":
            raise ValidationException("Multi-model containers (Mode=MultiModel) are not supported yet.")
        if self.store.get(self.kind, name):  # before the slow check of the model data
            raise self.duplicate(name)
        spec = container_spec(container)  # raises ValidationException for an unknown image
        url = container.get("ModelDataUrl")
        if spec.runtime != "command" and not url:
            raise ValidationException(
                f"Image {container.get('Image')} needs ModelDataUrl: the model artifacts to load.")
        if url and not await asyncio.to_thread(self._exists, url):
            raise ValidationException(
                f"Could not access model data at {url}. Please ensure that the path or object "
                "exists and that the server can read it.")
        return {"ModelArn": self.create_record(name, params, "ModelArn").arn}

    async def describe_model(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("DescribeModel", params)
        return public(self.require(params["ModelName"]).doc)

    async def delete_model(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("DeleteModel", params)
        self.require(params["ModelName"])
        self.store.delete(self.kind, params["ModelName"])
        return {}

    async def list_models(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("ListModels", params)
        items, token = page(self.store.list(self.kind), params, lambda r: {
            "ModelName": r.name, "ModelArn": r.arn, "CreationTime": r.created})
        return {"Models": items, **({"NextToken": token} if token else {})}
