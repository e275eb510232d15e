"""The router ↔ instance wire format: length-prefixed binary frames over a Unix socket.

Why not HTTP between router and instance: on one core, a second HTTP parse per request costs
about as much as the model itself for small payloads (see docs/benchmarks.md). Frames carry
only what the SageMaker container contract forwards: content type, accept, custom attributes
and the body. Many requests may be in flight on one connection; responses carry the request id.

Request frame:  <u32 length><u32 id><u8 kind><u16 ct_len><u16 accept_len><u16 attrs_len> ct accept attrs body
Response frame: <u32 length><u32 id><u16 status><u16 ct_len><u16 attrs_len> ct attrs body
``length`` counts the bytes after itself. All integers little-endian.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

KIND_INVOKE = 1
KIND_PING = 2
#: an invocation whose body is a file: the request body is b"<input path>\0<output path>"; the
#: instance reads the input from disk and writes the response body to the output path, so a
#: payload of any size never passes through the router (asynchronous inference)
KIND_INVOKE_FILE = 3

_REQ = struct.Struct("<IIBHHH")
_RESP = struct.Struct("<IIHHH")
_LEN = struct.Struct("<I")
REQ_HEADER = _REQ.size
RESP_HEADER = _RESP.size


class Request(NamedTuple):
    id: int
    kind: int
    content_type: bytes
    accept: bytes
    custom_attributes: bytes
    body: bytes


class Response(NamedTuple):
    id: int
    status: int
    content_type: bytes
    custom_attributes: bytes
    body: bytes


def encode_request(rid: int, kind: int, content_type: bytes, accept: bytes,
                   custom_attributes: bytes, body: bytes) -> bytes:
    n = REQ_HEADER - 4 + len(content_type) + len(accept) + len(custom_attributes) + len(body)
    head = _REQ.pack(n, rid, kind, len(content_type), len(accept), len(custom_attributes))
    return b"".join((head, content_type, accept, custom_attributes, body))


def encode_response(rid: int, status: int, content_type: bytes, custom_attributes: bytes,
                    body: bytes) -> bytes:
    n = RESP_HEADER - 4 + len(content_type) + len(custom_attributes) + len(body)
    head = _RESP.pack(n, rid, status, len(content_type), len(custom_attributes))
    return b"".join((head, content_type, custom_attributes, body))


def decode_request(frame: bytes) -> Request:
    _, rid, kind, lc, la, lx = _REQ.unpack_from(frame)
    a = REQ_HEADER
    b = a + lc
    c = b + la
    d = c + lx
    return Request(rid, kind, frame[a:b], frame[b:c], frame[c:d], frame[d:])


def decode_response(frame: bytes) -> Response:
    _, rid, status, lc, lx = _RESP.unpack_from(frame)
    a = RESP_HEADER
    b = a + lc
    c = b + lx
    return Response(rid, status, frame[a:b], frame[b:c], frame[c:])


class FrameBuffer:
    """Accumulates stream bytes and yields whole frames (each including its length prefix)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        frames = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if end - pos - 4 < n:
                break
            frames.append(bytes(buf[pos:pos + 4 + n]))
            pos += 4 + n
        if pos:
            del buf[:pos]
        return frames
