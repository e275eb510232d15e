"""create_app(services) → the one ASGI app on the server's port.

Dispatch is by path before any framework code runs, so InvokeEndpoint pays only for what it
uses: ``POST /endpoints/{name}/invocations`` goes straight to the raw runtime handler; ``POST /``
with ``X-Amz-Target`` to the AWS JSON 1.1 dispatcher; everything else (native REST API,
OpenAPI, docs, /metrics, /ping) to a Starlette app.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from moorage.api.aws import protocol, runtime
from moorage.api.aws.runtime import read_body, send_error
from moorage.api.native.routes import routes
from moorage.control.services import Services

log = logging.getLogger("moorage.api")

_INVOKE_PREFIX = "/endpoints/"
_INVOKE_SUFFIX = "/invocations"


async def _ping(_: Request) -> Response:
    return Response(b"", status_code=200)


class MoorageApp:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._cap = services.settings.max_payload_bytes
        self._router = services.router
        self._native = Starlette(routes=[Route("/ping", _ping), *routes(services)])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            method: str = scope["method"]
            if method == "POST" and path.startswith(_INVOKE_PREFIX) and path.endswith(_INVOKE_SUFFIX):
                name = path[len(_INVOKE_PREFIX):-len(_INVOKE_SUFFIX)]
                if name and "/" not in name:
                    await runtime.invoke(self._router, self._cap, scope, receive, send, name)
                    return
            if method == "POST" and path == "/":
                try:
                    body = await read_body(receive, scope["headers"], self._cap)
                except Exception as exc:
                    await send_error(send, exc)
                    return
                await protocol.asgi(self.services, scope, body, send)
                return
            await self._native(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

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
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.services.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(services: Services) -> MoorageApp:
    return MoorageApp(services)
