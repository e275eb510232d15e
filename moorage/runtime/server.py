"""The instance process's server: answers frames from the router on a Unix socket.

Invocations run inline on the one event loop: the instance is one worker by design (its
CPU share is set by its instance type), and an inline call avoids a thread hop that costs
more than a small model's predict. Frames that arrive together are answered together with
one write.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Callable

from moorage.runtime import protocol as p
from moorage.runtime.base import CONTEXT, InvocationFailed, ModelRuntime

_TEXT = b"text/plain"


def answer(runtime: ModelRuntime, req: p.Request) -> bytes:
    """Run one request through the runtime and encode the response frame."""
    if req.kind == p.KIND_PING:
        return p.encode_response(req.id, 200, b"", b"", b"")
    CONTEXT.custom_attributes = req.custom_attributes.decode("latin-1")
    CONTEXT.response_custom_attributes = None
    try:
        body, ctype = runtime.invoke(req.body, req.content_type.decode() or None,
                                     req.accept.decode() or None)
    except InvocationFailed as exc:
        return p.encode_response(req.id, exc.status, _TEXT, b"", str(exc).encode())
    except Exception as exc:  # the model failed: the router turns this into a 424 ModelError
        traceback.print_exc()
        msg = f"{type(exc).__name__}: {exc}".encode()
        return p.encode_response(req.id, 500, _TEXT, b"", msg)
    attrs = CONTEXT.response_custom_attributes
    return p.encode_response(req.id, 200, ctype.encode(), attrs.encode("latin-1") if attrs else b"", body)


class InstanceProtocol(asyncio.Protocol):
    def __init__(self, runtime: ModelRuntime) -> None:
        self._runtime = runtime
        self._frames = p.FrameBuffer()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        frames = self._frames.feed(data)
        if not frames:
            return
        out = [answer(self._runtime, p.decode_request(f)) for f in frames]
        assert self._transport is not None
        self._transport.write(out[0] if len(out) == 1 else b"".join(out))


async def serve(runtime: ModelRuntime, socket_path: str,
                on_ready: Callable[[], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(lambda: InstanceProtocol(runtime), socket_path)
    if on_ready:
        on_ready()
    async with server:
        await server.serve_forever()
