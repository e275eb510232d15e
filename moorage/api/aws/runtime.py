"""sagemaker-runtime InvokeEndpoint (the hot path) and InvokeEndpointAsync, as raw ASGI handlers.

No framework request object and no middleware: each avoided layer is microseconds on every
request (see docs/benchmarks.md). The body is read against the payload cap before anything
else happens.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from moorage import ids
from moorage.api.errors import runtime_error
from moorage.control.async_inference import INLINE_MAX, AsyncInferenceService
from moorage.errors import PayloadTooLarge
from moorage.serving.router import Router

_JSON = b"application/json"
_OCTET = b"application/octet-stream"


async def read_body(receive: Any, headers: list[tuple[bytes, bytes]], cap: int,
                    too_large: Callable[[int, int], str] | None = None) -> bytes:
    """The whole request body, refusing more than ``cap`` bytes without buffering them."""
    explain = too_large or _too_large
    for k, v in headers:
        if k == b"content-length" and v.isdigit() and int(v) > cap:
            raise PayloadTooLarge(explain(int(v), cap))
    msg = await receive()
    body = msg.get("body", b"")
    if not msg.get("more_body"):
        if len(body) > cap:
            raise PayloadTooLarge(explain(len(body), cap))
        return body
    chunks = [body]
    size = len(body)
    while msg.get("more_body"):
        msg = await receive()
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(explain(size, cap))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, cap: int) -> str:
    return (f"Request payload of {size} bytes exceeds the maximum of {cap} bytes for "
            "InvokeEndpoint. Use asynchronous inference or batch transform for larger payloads.")


def _inline_too_large(size: int, cap: int) -> str:
    return (f"Inline request body of {size} bytes exceeds the maximum of {cap} bytes for "
            "InvokeEndpointAsync; upload the payload and pass its InputLocation instead.")


async def send_error(send: Any, exc: BaseException) -> None:
    status, code, payload = runtime_error(exc)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", _JSON), (b"x-amzn-errortype", code.encode()),
        (b"x-amzn-requestid", ids.request_id().encode()),
        (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


Guard = Callable[[dict[str, Any], bytes, str], None]


async def invoke(router: Router, cap: int, scope: dict[str, Any], receive: Any, send: Any,
                 endpoint: str, guard: Guard | None) -> None:
    """InvokeEndpoint. ``guard(scope, body, endpoint)`` authenticates and authorizes, or raises."""
    t0 = time.perf_counter()
    ctype = accept = attrs = b""
    target = None
    headers = scope["headers"]
    for k, v in headers:
        if k == b"content-type":
            ctype = v
        elif k == b"accept":
            accept = v
        elif k == b"x-amzn-sagemaker-custom-attributes":
            attrs = v
        elif k == b"x-amzn-sagemaker-target-variant":
            target = v.decode("latin-1")
    try:
        body = await read_body(receive, headers, cap)
        if guard is not None:
            guard(scope, body, endpoint)
        variant, reply = await router.invoke(endpoint, target, ctype, accept, attrs, body, t0)
    except Exception as exc:
        await send_error(send, exc)
        return
    out = [(b"content-type", reply.content_type or _OCTET),
           (b"x-amzn-invoked-production-variant", variant.encode()),
           (b"x-amzn-requestid", ids.request_id().encode()),
           (b"content-length", str(len(reply.body)).encode())]
    if reply.custom_attributes:
        out.append((b"x-amzn-sagemaker-custom-attributes", reply.custom_attributes))
    if reply.cold_start_ms:  # this serverless invocation waited for its instance to start
        out.append((b"x-moorage-cold-start-ms", f"{reply.cold_start_ms:.1f}".encode()))
    await send({"type": "http.response.start", "status": 200, "headers": out})
    await send({"type": "http.response.body", "body": reply.body})


async def invoke_async(service: AsyncInferenceService, scope: dict[str, Any], receive: Any, send: Any,
                       endpoint: str, guard: Guard | None) -> None:
    """InvokeEndpointAsync: the request is stored before the 202 goes out."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
               if k.startswith(b"x-amzn-sagemaker-")}
    try:
        body = await read_body(receive, scope["headers"], INLINE_MAX, _inline_too_large)
        if guard is not None:
            guard(scope, body, endpoint)
        out = await service.invoke(endpoint, headers, body)
    except Exception as exc:
        await send_error(send, exc)
        return
    payload = json.dumps({"InferenceId": out["InferenceId"]}).encode()
    await send({"type": "http.response.start", "status": 202, "headers": [
        (b"content-type", _JSON), (b"x-amzn-requestid", ids.request_id().encode()),
        (b"x-amzn-sagemaker-outputlocation", out["OutputLocation"].encode()),
        (b"x-amzn-sagemaker-failurelocation", out["FailureLocation"].encode()),
        (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
