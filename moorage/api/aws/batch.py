"""AWS Batch's rest-json protocol: ``POST /v1/<operation lower-cased>`` with a JSON body.

Batch reports every error as ClientException (400) or ServerException (500) with a
lower-case ``message`` member. Operations arrive with the batch job service; until then each
answers a ClientException that names it.
"""

from __future__ import annotations

import json
from typing import Any

from moorage import ids
from moorage.api.errors import as_moorage_error
from moorage.control.services import Services
from moorage.errors import UnknownOperation, ValidationException

PREFIX = "/v1/"


async def asgi(services: Services, scope: dict[str, Any], body: bytes, send: Any) -> None:
    name = scope["path"][len(PREFIX):]
    ops = {op.lower(): handler for op, handler in services.operations["batch"].items()}
    try:
        handler = ops.get(name)
        if handler is None:
            raise UnknownOperation(f"Operation {name} of batch is not supported by Moorage yet.")
        try:
            params = json.loads(body) if body else {}
        except ValueError as exc:
            raise ValidationException(f"Request body is not valid JSON: {exc}") from None
        status, payload, code = 200, json.dumps(await handler(params)).encode(), ""
    except Exception as exc:
        err = as_moorage_error(exc)
        status = 500 if err.http_status >= 500 else 400
        code = "ServerException" if status == 500 else "ClientException"
        payload = json.dumps({"message": err.message}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"x-amzn-requestid", ids.request_id().encode()),
               (b"content-length", str(len(payload)).encode())]
    if code:
        headers.append((b"x-amzn-errortype", code.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
