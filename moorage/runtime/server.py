"""The instance process's server: answers frames from the router on a Unix socket.

Invocations run inline on the one event loop: the instance is one worker by design (its
CPU share is set by its instance type), and an inline call avoids a thread hop that costs
more than a small model's predict. Frames that arrive together are answered together with
one write.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from typing import Any, Callable

from moorage.runtime import protocol as p
from moorage.runtime.base import CONTEXT, InvocationFailed, ModelRuntime

_TEXT = b"text/plain"


#: kinds whose body travels in the frame, answered by one predict when they arrive together
_INLINE = (p.KIND_INVOKE, p.KIND_INVOKE_TO)

#: most requests stacked into one predict; bounds the memory one batch can take
MAX_BATCH = 64


def answer(runtime: ModelRuntime, req: p.Request) -> bytes:
    """Run one request through the runtime and encode the response frame."""
    if req.kind == p.KIND_PING:
        return p.encode_response(req.id, 200, b"", b"", b"")
    CONTEXT.custom_attributes = req.custom_attributes.decode("latin-1")
    CONTEXT.response_custom_attributes = None
    ctype, accept = req.content_type.decode() or None, req.accept.decode() or None
    target = None
    try:
        if req.kind == p.KIND_INVOKE_FILE:
            src, dst = req.body.decode().split("\0")
            result: Any = (b"", runtime.invoke_file(src, dst, ctype, accept))
        elif req.kind == p.KIND_INVOKE_RANGE:
            result = runtime.invoke(p.FileRange.decode(req.body).read(), ctype, accept)
        elif req.kind == p.KIND_INVOKE_TO:
            target, body = p.Publish.decode(req.body)
            result = runtime.invoke(body, ctype, accept)
        else:
            result = runtime.invoke(req.body, ctype, accept)
    except Exception as exc:
        result = exc
    attrs = CONTEXT.response_custom_attributes
    return _encode(req.id, result, attrs.encode("latin-1") if attrs else b"", target)


def _encode(rid: int, result: Any, attrs: bytes, target: p.Publish | None = None) -> bytes:
    """A response frame for a runtime result: (body, content type) or the exception raised.
    With a ``target``, a result is first published there (write-once), unless it is late."""
    if isinstance(result, InvocationFailed):
        return p.encode_response(rid, result.status, _TEXT, b"", str(result).encode())
    if isinstance(result, Exception):  # the model failed: the router makes it a 424 ModelError
        traceback.print_exception(result)
        return p.encode_response(rid, 500, _TEXT, b"", f"{type(result).__name__}: {result}".encode())
    body, ctype = result
    if target is not None:
        if time.monotonic() >= target.deadline:
            return p.encode_response(rid, p.LATE, ctype.encode(), attrs, body)
        if (error := target.write(body)) is not None:
            return p.encode_response(rid, p.NOT_STORED, _TEXT, b"", error)
    return p.encode_response(rid, 200, ctype.encode(), attrs, body)


def answer_all(runtime: ModelRuntime, reqs: list[p.Request]) -> list[bytes]:
    """Answer frames that arrived together; invocations go through ``invoke_batch`` when the
    runtime has one, so requests queued during a slow predict share the next predict."""
    batch = getattr(runtime, "invoke_batch", None)
    invokes = [r for r in reqs if r.kind in _INLINE]
    if batch is None or len(invokes) < 2:
        return [answer(runtime, r) for r in reqs]
    out = {r.id: answer(runtime, r) for r in reqs if r.kind not in _INLINE}
    for start in range(0, len(invokes), MAX_BATCH):
        chunk = invokes[start:start + MAX_BATCH]
        targets, bodies = zip(*(p.Publish.decode(r.body) if r.kind == p.KIND_INVOKE_TO else (None, r.body)
                                for r in chunk))
        results = batch([(body, r.content_type.decode() or None, r.accept.decode() or None)
                         for r, body in zip(chunk, bodies)])
        for r, result, target in zip(chunk, results, targets):
            out[r.id] = _encode(r.id, result, b"", target)
    return [out[r.id] for r in reqs]


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
        if len(frames) == 1:
            out = [answer(self._runtime, p.decode_request(frames[0]))]
        else:
            out = answer_all(self._runtime, [p.decode_request(f) for f in frames])
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
