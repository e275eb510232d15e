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

import os
import struct
from typing import NamedTuple

from moorage.artifacts import objects

KIND_INVOKE = 1
KIND_PING = 2
#: an invocation whose body is a file: the request body is b"<input path>\0<output path>"; the
#: instance reads the input from disk and writes the response body to the output path, so a
#: payload of any size never passes through the router (asynchronous inference)
KIND_INVOKE_FILE = 3
#: an invocation whose body is a byte range of a file on this machine: the request body is
#: b"<path>\0<offset>\0<length>"; the instance reads the range itself and answers inline, so a
#: batch transform's mini-batches never pass through the router's socket (see FileRange)
KIND_INVOKE_RANGE = 4
#: an inline invocation whose result the instance publishes itself, write-once, to a local
#: path (asynchronous inference with a local output): the request body is a Publish target
#: and then the payload. The response carries the result too, and its status says whether it
#: was written: 200 yes, LATE not (too close to the router's timeout), NOT_STORED not (the
#: write failed; the body is the error)
KIND_INVOKE_TO = 5
#: statuses of KIND_INVOKE_TO responses beyond HTTP's (>= 400, so never read as a success)
NOT_STORED = 1000
LATE = 1001

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


class FileRange(NamedTuple):
    """A request body that is ``length`` bytes of the local file ``path`` from ``offset``."""

    path: str
    offset: int
    length: int

    def read(self) -> bytes:
        with open(self.path, "rb", buffering=0) as f:
            data = os.pread(f.fileno(), self.length, self.offset)
        if len(data) != self.length:
            raise OSError(f"{self.path} ends before byte {self.offset + self.length}")
        return data

    def encode(self) -> bytes:
        return f"{self.path}\0{self.offset}\0{self.length}".encode()

    @classmethod
    def decode(cls, body: bytes) -> FileRange:
        path, offset, length = body.decode().split("\0")
        return cls(path, int(offset), int(length))


class Publish(NamedTuple):
    """Where a KIND_INVOKE_TO result goes: ``location``, a local path or file:// URL (through a
    file in ``staging`` where the file system has no O_TMPFILE), if the instance has it before
    ``deadline`` (``time.monotonic()``, one clock for every process on a host). Past it, the
    router may already have failed the request for its timeout, so the instance only answers."""

    location: str
    staging: str
    deadline: float

    def write(self, result: bytes) -> bytes | None:
        """Publish ``result`` at ``location`` unless a result is already there (a request run again
        after a crash); None when it is there, else the error text."""
        try:
            objects.publish_bytes(result, self.location, self.staging)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}".encode()
        return None

    def encode(self, payload: bytes) -> bytes:
        head = f"{self.location}\0{self.staging}\0{self.deadline!r}\0".encode()
        return head + payload

    @classmethod
    def decode(cls, body: bytes) -> tuple[Publish, bytes]:
        a = body.index(b"\0")
        b = body.index(b"\0", a + 1)
        c = body.index(b"\0", b + 1)
        return cls(body[:a].decode(), body[a + 1:b].decode(), float(body[b + 1:c])), body[c + 1:]


class FrameBuffer:
    """Accumulates stream bytes and yields whole frames (each including its length prefix).

    Chunks are kept as they arrive and joined once, when the frame they belong to is complete:
    a 6 MB frame that arrives in 64 KB reads costs one copy, not one per read. A chunk that is
    exactly one frame (every small request) is returned as is.
    """

    __slots__ = ("_parts", "_have", "_need")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._have = 0  # bytes in _parts
        self._need = 4  # bytes _parts must hold before a frame can be complete

    def feed(self, data: bytes) -> list[bytes]:
        if not self._parts and len(data) >= 4 and _LEN.unpack_from(data)[0] + 4 == len(data):
            return [data]
        self._parts.append(data)
        self._have += len(data)
        if self._have < self._need:
            return []
        buf = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        frames = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            n = _LEN.unpack_from(buf, pos)[0] + 4
            if end - pos < n:
                break
            frames.append(buf if n == end else buf[pos:pos + n])
            pos += n
        rest = buf[pos:] if pos else buf
        self._parts = [rest] if rest else []
        self._have = len(rest)
        self._need = _LEN.unpack_from(rest)[0] + 4 if len(rest) >= 4 else 4
        return frames
