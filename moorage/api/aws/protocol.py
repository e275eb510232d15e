"""awsJson1.1 dispatch on X-Amz-Target for the sagemaker control plane (and, as their
operations arrive, application-autoscaling)."""

from __future__ import annotations

import json
from typing import Any

from moorage import ids
from moorage.api.errors import JSON11, json11_error
from moorage.control.services import Services
from moorage.errors import MoorageError, UnknownOperation, ValidationException

TARGET_PREFIXES = {"SageMaker": "sagemaker", "AnyScaleFrontendService": "application-autoscaling"}


async def dispatch(services: Services, target: str, body: bytes) -> tuple[int, bytes]:
    """Run one JSON 1.1 operation; returns (status, response body)."""
    try:
        prefix, _, op = target.partition(".")
        if prefix not in TARGET_PREFIXES or not op:
            raise UnknownOperation(f"Unknown X-Amz-Target {target!r}.")
        handler = services.operations[TARGET_PREFIXES[prefix]].get(op)
        if handler is None:
            raise UnknownOperation(f"Operation {op} of {TARGET_PREFIXES[prefix]} is not "
                                   "supported by Moorage yet.")
        try:
            params: Any = json.loads(body) if body else {}
        except ValueError as exc:
            raise ValidationException(f"Request body is not valid JSON: {exc}") from None
        if not isinstance(params, dict):
            raise ValidationException("Request body must be a JSON object.")
        result = await handler(params)
        return 200, json.dumps(result).encode()
    except (MoorageError, Exception) as exc:
        return json11_error(exc)


async def asgi(services: Services, scope: dict[str, Any], body: bytes, send: Any) -> None:
    target = ""
    for k, v in scope["headers"]:
        if k == b"x-amz-target":
            target = v.decode("latin-1")
    status, payload = await dispatch(services, target, body)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", JSON11), (b"x-amzn-requestid", ids.request_id().encode()),
        (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
