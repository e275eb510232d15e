"""Splitting an input object into records and records into mini-batches: pure functions over
byte streams, so memory holds one mini-batch at a time."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator


@dataclass(frozen=True)
class Batch:
    """One request's worth of records: ``first``..``last`` (1-based, inclusive) of its object."""

    first: int
    last: int
    payload: bytes
    #: where the payload starts in the (decompressed) object; set by ``line_batches``
    offset: int = 0


class RecordTooLarge(Exception):
    def __init__(self, index: int, size: int, limit: int, *, at_least: bool = False) -> None:
        size_text = f"at least {size}" if at_least else str(size)
        super().__init__(f"record {index} is {size_text} bytes, more than MaxPayloadInMB allows ({limit} bytes)")
        self.index = index


def records(stream: BinaryIO, split: str) -> Iterator[bytes]:
    """``Line``: each non-blank line, ending in a newline. ``None``: the whole object, once.
    ``RecordIO``: each RecordIO record, header and padding included (``recordio_records``)."""
    if split == "None":
        yield stream.read()
        return
    if split == "RecordIO":
        yield from recordio_records(stream)
        return
    for line in stream:
        if not line.strip():
            continue
        yield line if line.endswith(b"\n") else line + b"\n"


def batches(items: Iterator[bytes], strategy: str, max_payload: int) -> Iterator[Batch]:
    """``SingleRecord``: one record per batch. ``MultiRecord``: as many consecutive records as
    fit in ``max_payload`` bytes (0: no limit). A record over the limit raises RecordTooLarge."""
    parts: list[bytes] = []
    size = 0
    first = 1
    index = 0
    for index, rec in enumerate(items, start=1):
        if max_payload and len(rec) > max_payload:
            raise RecordTooLarge(index, len(rec), max_payload)
        if parts and (strategy == "SingleRecord" or (max_payload and size + len(rec) > max_payload)):
            yield Batch(first, index - 1, b"".join(parts))
            parts, size, first = [], 0, index
        parts.append(rec)
        size += len(rec)
    if parts:
        yield Batch(first, index, b"".join(parts))


#: MaxPayloadInMB 0 means no limit; lines are then read this many bytes at a time
UNLIMITED_BLOCK = 6 * 1024 * 1024


def line_batches(stream: BinaryIO, max_payload: int) -> Iterator[Batch]:
    """``MultiRecord`` over ``Line`` records without a Python step per line: read up to
    ``max_payload`` bytes, cut after the last newline, carry the partial line over. Records are
    numbered by line (blank lines count, and reach the model, whose decoders skip them)."""
    limit = max_payload or UNLIMITED_BLOCK
    carry = b""
    first = 1
    offset = 0
    while True:
        chunk = stream.read(limit - len(carry))
        data = carry + chunk if carry else chunk
        if not chunk:
            if data and not data.isspace():  # isspace stops at the first other byte; strip copies
                yield Batch(first, first + data.count(b"\n") - data.endswith(b"\n"),
                            data if data.endswith(b"\n") else data + b"\n", offset)
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) >= limit and max_payload:
                raise RecordTooLarge(first, len(data), limit, at_least=True)
            carry = data
            continue
        payload, carry = data[:cut], data[cut:]
        n = payload.count(b"\n")
        if not payload.isspace():
            yield Batch(first, first + n - 1, payload, offset)
        first += n
        offset += cut


RECORDIO_MAGIC = 0xCED7230A


class BadRecordIO(Exception):
    pass


def recordio_records(stream: BinaryIO) -> Iterator[bytes]:
    """MXNet RecordIO, as SageMaker splits it: per part a little-endian u32 magic, a u32 whose
    top 3 bits are the continuation flag and low 29 bits the length, the data, and padding to
    4 bytes. A record split in parts (flags 1, 2…, 3) is yielded whole, parts and all."""
    pending: list[bytes] = []
    while True:
        head = stream.read(8)
        if not head:
            if pending:
                raise BadRecordIO("the object ends inside a multi-part record")
            return
        if len(head) < 8:
            raise BadRecordIO("the object ends inside a record header")
        magic, word = struct.unpack("<II", head)
        if magic != RECORDIO_MAGIC:
            raise BadRecordIO(f"bad magic number {magic:#010x}: not RecordIO")
        flag, length = word >> 29, word & ((1 << 29) - 1)
        body = stream.read(length + (-length % 4))
        if len(body) < length:
            raise BadRecordIO("the object ends inside a record")
        part = head + body
        if flag == 0:
            if pending:
                raise BadRecordIO("a whole record inside a multi-part record")
            yield part
        else:
            pending.append(part)
            if flag == 3:
                yield b"".join(pending)
                pending = []
