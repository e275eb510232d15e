"""create_app(services) → the one ASGI app on the server's port.

Dispatch is by path before any framework code runs, so InvokeEndpoint pays only for what it
uses: ``POST /endpoints/{name}/invocations`` goes straight to the raw runtime handler; ``POST /``
with ``X-Amz-Target`` to the AWS JSON 1.1 dispatcher; everything else (native REST API,
OpenAPI, docs, /metrics) to a Starlette app; ``POST /v1/...`` to the Batch rest-json dispatcher. Every request but the bare liveness probe
``GET /ping`` is authenticated (SigV4) and authorized first, unless auth is off.
"""

from __future__ import annotations

import gc
import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from moorage import ids
from moorage.api.auth import Authenticator, authorize
from moorage.api.aws import batch, protocol, runtime
from moorage.api.aws.runtime import read_body
from moorage.api.errors import JSON11, json11_error
from moorage.api.native.routes import routes
from moorage.control.services import Services

log = logging.getLogger("moorage.api")

_INVOKE_PREFIX = "/endpoints/"
_INVOKE_SUFFIX = "/invocations"
_ASYNC_SUFFIX = "/async-invocations"


async def _ping(_: Request) -> Response:
    return Response(b"", status_code=200)


class MoorageApp:
    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        self._cap = settings.max_payload_bytes
        self._router = services.router
        self._auth = (Authenticator(services.keys, services.clock, settings.auth_max_skew_seconds)
                      if settings.auth else None)
        self._native = Starlette(routes=[Route("/ping", _ping), *routes(services)])

    def _guard_invoke(self, scope: dict[str, Any], body: bytes, endpoint: str) -> None:
        assert self._auth is not None
        authorize(self._auth.authenticate(scope, body), "sagemaker:InvokeEndpoint", endpoint)

    def _guard_async(self, scope: dict[str, Any], body: bytes, endpoint: str) -> None:
        assert self._auth is not None
        authorize(self._auth.authenticate(scope, body), "sagemaker:InvokeEndpointAsync", endpoint)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "POST" and path.startswith(_INVOKE_PREFIX) and path.endswith(_INVOKE_SUFFIX):
            name = path[len(_INVOKE_PREFIX):-len(_INVOKE_SUFFIX)]
            if name and "/" not in name:
                await runtime.invoke(self._router, self._cap, scope, receive, send, name,
                                     self._guard_invoke if self._auth else None)
                return
        if method == "POST" and path.startswith(_INVOKE_PREFIX) and path.endswith(_ASYNC_SUFFIX):
            name = path[len(_INVOKE_PREFIX):-len(_ASYNC_SUFFIX)]
            if name and "/" not in name:
                await runtime.invoke_async(self.services.async_inference, scope, receive, send, name,
                                           self._guard_async if self._auth else None)
                return
        if path == "/ping" and method in ("GET", "HEAD"):
            await self._native(scope, receive, send)
            return
        json_protocol = method == "POST" and path == "/"
        try:
            body = await read_body(receive, scope["headers"], self._cap)
            if self._auth is not None:
                key = self._auth.authenticate(scope, body, json_protocol=json_protocol)
                authorize(key, self._action(scope, json_protocol))
                scope["moorage.key"] = key
        except Exception as exc:
            await self._reject(send, exc, json_protocol)
            return
        if json_protocol:
            await protocol.asgi(self.services, scope, body, send)
            return
        if method == "POST" and path.startswith(batch.PREFIX):
            await batch.asgi(self.services, scope, body, send)
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        await self._native(scope, replay, send)

    @staticmethod
    def _action(scope: dict[str, Any], json_protocol: bool) -> str:
        if json_protocol:
            for k, v in scope["headers"]:
                if k == b"x-amz-target":
                    prefix, _, op = v.decode("latin-1").partition(".")
                    service = "sagemaker" if prefix == "SageMaker" else "application-autoscaling"
                    return f"{service}:{op}"
        if scope["path"].startswith(batch.PREFIX):
            return "batch:" + scope["path"][len(batch.PREFIX):]
        return f"moorage:{scope['method']} {scope['path']}"

    @staticmethod
    async def _reject(send: Any, exc: BaseException, json_protocol: bool) -> None:
        status, payload = json11_error(exc)
        ctype = JSON11 if json_protocol else b"application/json"
        code = json.loads(payload)["__type"].encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", ctype), (b"x-amzn-errortype", code),
            (b"x-amzn-requestid", ids.request_id().encode()),
            (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.services.start()
                except Exception as exc:  # report it: uvicorn then exits instead of serving
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                _tune_gc()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.services.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _tune_gc() -> None:
    """What startup built lives as long as the server: freeze it out of the collector's scans,
    and collect the young generation every 50,000 allocations instead of 700. A request makes
    a few hundred short-lived containers, so the default ran a collection every few requests
    over a cache-cold heap; the hot path has no reference cycles to reclaim."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def create_app(services: Services) -> MoorageApp:
    return MoorageApp(services)

