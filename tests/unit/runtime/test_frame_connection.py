"""The router side of the frame protocol: calls made in one loop turn leave in one write."""

import asyncio

import pytest

from moorage.backends.base import InstanceGone
from moorage.backends.frames import FrameConnection
from moorage.runtime import protocol as p


class _Transport:
    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []

    def writelines(self, frames: list[bytes]) -> None:
        self.writes.append(list(frames))

    def close(self) -> None:
        pass


def _answer(conn: FrameConnection, frames: list[bytes]) -> None:
    """The instance's side: echo each request's body back, all responses in one chunk."""
    reqs = [p.decode_request(f) for f in frames]
    conn.data_received(b"".join(p.encode_response(r.id, 200, b"text/plain", b"", r.body[::-1]) for r in reqs))


def _connected() -> tuple[FrameConnection, _Transport]:
    conn, t = FrameConnection(), _Transport()
    conn.connection_made(t)  # type: ignore[arg-type]
    return conn, t


def test_calls_in_one_turn_are_one_write_and_each_gets_its_own_answer() -> None:
    asyncio.run(_one_write())


async def _one_write() -> None:
    conn, t = _connected()
    calls = [asyncio.ensure_future(conn.call(p.KIND_INVOKE, b"text/csv", b"", b"", f"{i},x".encode(), 5.0))
             for i in range(5)]
    await asyncio.sleep(0)  # the calls run and queue their frames
    await asyncio.sleep(0)  # the flush runs
    assert len(t.writes) == 1 and len(t.writes[0]) == 5
    _answer(conn, t.writes[0])
    assert [r.body for r in await asyncio.gather(*calls)] == [f"x,{i}".encode() for i in range(5)]
    # a later turn is a new write
    later = asyncio.ensure_future(conn.call(p.KIND_INVOKE, b"", b"", b"", b"ab", 5.0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(t.writes) == 2
    _answer(conn, t.writes[1])
    assert (await later).body == b"ba"


def test_a_connection_lost_before_the_flush_fails_the_queued_calls() -> None:
    asyncio.run(_lost())


async def _lost() -> None:
    conn, t = _connected()
    call = asyncio.ensure_future(conn.call(p.KIND_INVOKE, b"", b"", b"", b"1", 5.0))
    await asyncio.sleep(0)
    conn.connection_lost(None)
    with pytest.raises(InstanceGone):
        await call
    await asyncio.sleep(0)
    assert t.writes == []  # nothing is written to a closed connection
