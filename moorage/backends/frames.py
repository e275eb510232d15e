"""Router-side connection to one instance process: frames over a Unix socket, many
requests in flight on one connection (see moorage/runtime/protocol.py)."""

from __future__ import annotations

import asyncio
import itertools

from moorage.backends.base import InstanceGone
from moorage.runtime import protocol as p


class FrameConnection(asyncio.Protocol):
    """One multiplexed connection. ``call`` sends a frame and waits for its response."""

    def __init__(self) -> None:
        self._frames = p.FrameBuffer()
        self._waiting: dict[int, asyncio.Future[p.Response]] = {}
        self._ids = itertools.count(1)
        self._transport: asyncio.Transport | None = None
        self.closed = False
        self._loop = asyncio.get_event_loop()
        #: frames written in this loop turn, sent together at its end (one syscall, one wake-up)
        self._out: list[bytes] = []

    @classmethod
    async def open(cls, socket_path: str) -> FrameConnection:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_unix_connection(cls, socket_path)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiting = self._waiting
        for frame in self._frames.feed(data):
            resp = p.decode_response(frame)
            fut = waiting.pop(resp.id, None)
            if fut is not None and not fut.done():
                fut.set_result(resp)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(InstanceGone(str(exc) if exc else "connection closed"))

    async def call(self, kind: int, content_type: bytes, accept: bytes, attrs: bytes,
                   body: bytes, timeout: float) -> p.Response:
        if self.closed or self._transport is None:
            raise InstanceGone("connection closed")
        rid = next(self._ids) & 0xFFFFFFFF
        fut: asyncio.Future[p.Response] = self._loop.create_future()
        self._waiting[rid] = fut
        out = self._out
        out.append(p.encode_request(rid, kind, content_type, accept, attrs, body))
        if len(out) == 1:
            self._loop.call_soon(self._flush)
        # One timer handle instead of asyncio.wait_for: wait_for wraps the await in a task and
        # costs several microseconds per request on the hot path.
        timer = self._loop.call_later(timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            self._waiting.pop(rid, None)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._transport is not None and not self.closed:
            self._transport.writelines(out)  # uvloop: one writev

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _expire(fut: asyncio.Future[p.Response]) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())
