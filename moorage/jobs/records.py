"""Splitting an input object into records and records into mini-batches: pure functions over
byte streams, so memory holds one mini-batch at a time."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator


@dataclass(frozen=True)
class Batch:
    """One request's worth of records: ``first``..``last`` (1-based, inclusive) of its object."""

    first: int
    last: int
    payload: bytes
    #: where the payload starts, and where the next batch starts, in the (decompressed)
    #: object; set by ``line_ranges`` (``end`` 0: unknown)
    offset: int = 0
    end: int = 0


class RecordTooLarge(Exception):
    def __init__(self, index: int, size: int, limit: int, *, at_least: bool = False) -> None:
        size_text = f"at least {size}" if at_least else str(size)
        super().__init__(f"record {index} is {size_text} bytes, more than MaxPayloadInMB allows ({limit} bytes)")
        self.index = index


def records(stream: BinaryIO, split: str, max_payload: int = 0) -> Iterator[bytes]:
    """``Line``: each non-blank line, ending in a newline. ``None``: the whole object, once.
    ``RecordIO`` and ``TFRecord``: each record whole, header (and padding, checksum) included; a
    declared length over ``max_payload`` (0: no limit) raises RecordTooLarge before it is read."""
    if split == "None":
        yield stream.read()
        return
    if split == "RecordIO":
        yield from recordio_records(stream, max_payload)
        return
    if split == "TFRecord":
        yield from tfrecord_records(stream, max_payload)
        return
    for line in stream:
        if not line.strip():
            continue
        yield line if line.endswith(b"\n") else line + b"\n"


def batches(items: Iterator[bytes], strategy: str, max_payload: int, first: int = 1) -> Iterator[Batch]:
    """``SingleRecord``: one record per batch. ``MultiRecord``: as many consecutive records as
    fit in ``max_payload`` bytes (0: no limit). A record over the limit raises RecordTooLarge.
    Records are numbered from ``first`` (a job resumed inside an object skipped the others)."""
    parts: list[bytes] = []
    size = 0
    index = first - 1
    for index, rec in enumerate(items, start=first):
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


_NON_SPACE = re.compile(rb"\S")


def line_ranges(stream: BinaryIO, max_payload: int, first: int = 1, offset: int = 0,
                keep: bool = False) -> Iterator[Batch]:
    """``MultiRecord`` over ``Line`` records without a Python step per line: each Batch is the
    byte range ``offset``..``end`` cut after the last newline within ``max_payload`` (0: no
    limit; a longer line grows the block). Records are numbered by line from ``first`` (blank
    lines count, and reach the model, whose decoders skip them; an all-blank range is not
    sent), starting at byte ``offset`` where the stream is positioned. The server reads each
    block into one reused buffer, so a range costs it a read, a search for the cut and a count
    of the lines, and no copy; ``keep`` copies the bytes into the payload, for a stream the
    instances cannot read themselves (gzip). The last line is as the file has it."""
    limit = max_payload or UNLIMITED_BLOCK
    buf = bytearray(limit)
    view = memoryview(buf)
    kept = 0  # bytes of an unfinished line carried to the front of buf
    while True:
        filled = kept
        while filled < limit:
            n = stream.readinto(view[filled:])
            if not n:
                break
            filled += n
        if filled == 0:
            return
        cut = filled if filled < limit else buf.rfind(b"\n", 0, filled) + 1  # at the end: all of it
        if cut == 0:
            if max_payload:
                raise RecordTooLarge(first, filled, limit, at_least=True)
            view.release()  # no limit: a longer line, a larger buffer
            buf.extend(bytes(limit))
            view, limit, kept = memoryview(buf), len(buf), filled
            continue
        lines = buf.count(b"\n", 0, cut) + (buf[cut - 1] != 0x0A)
        if _NON_SPACE.search(view, 0, cut):
            yield Batch(first, first + lines - 1, bytes(view[:cut]) if keep else b"", offset, offset + cut)
        first += lines
        offset += cut
        if filled < limit:
            return
        kept = filled - cut
        buf[:kept] = bytes(view[cut:filled])  # the unfinished line (a copy: the regions may overlap)


RECORDIO_MAGIC = 0xCED7230A


class BadRecordFormat(Exception):
    """The object is not in the format its SplitType says."""


def recordio_records(stream: BinaryIO, max_payload: int = 0) -> Iterator[bytes]:
    """MXNet RecordIO, as SageMaker splits it: per part a little-endian u32 magic, a u32 whose
    top 3 bits are the continuation flag and low 29 bits the length, the data, and padding to
    4 bytes. A record split in parts (flags 1, 2…, 3) is yielded whole, parts and all."""
    pending: list[bytes] = []
    size = 0
    index = 1
    while True:
        head = stream.read(8)
        if not head:
            if pending:
                raise BadRecordFormat("the object ends inside a multi-part record")
            return
        if len(head) < 8:
            raise BadRecordFormat("the object ends inside a record header")
        magic, word = struct.unpack("<II", head)
        if magic != RECORDIO_MAGIC:
            raise BadRecordFormat(f"bad magic number {magic:#010x}: not RecordIO")
        flag, length = word >> 29, word & ((1 << 29) - 1)
        if flag > 3 or (flag in (0, 1)) == bool(pending):
            raise BadRecordFormat(f"record {index}: continuation flag {flag} out of sequence (whole 0, or 1, 2…, 3)")
        size += 8 + length + (-length % 4)
        if max_payload and size > max_payload:
            raise RecordTooLarge(index, size, max_payload, at_least=True)
        body = stream.read(length + (-length % 4))
        if len(body) < length:
            raise BadRecordFormat("the object ends inside a record")
        part = head + body
        if flag == 0:
            yield part
        else:
            pending.append(part)
            if flag == 3:
                yield b"".join(pending)
                pending = []
        if flag in (0, 3):
            size = 0
            index += 1


def tfrecord_records(stream: BinaryIO, max_payload: int = 0) -> Iterator[bytes]:
    """TensorFlow's TFRecord: a little-endian u64 length, the masked CRC-32C of those 8 bytes,
    the data and the masked CRC-32C of the data. The length's checksum is verified (a file
    that is not TFRecord fails at its first record); the data's is left to the reader."""
    index = 0
    while True:
        head = stream.read(12)
        if not head:
            return
        index += 1
        if len(head) < 12:
            raise BadRecordFormat(f"the object ends inside the header of TFRecord record {index}")
        length, check = struct.unpack("<QI", head)
        if masked_crc32c(head[:8]) != check:
            raise BadRecordFormat(f"TFRecord record {index} has a bad length checksum: not TFRecord, or corrupt")
        if max_payload and length + 16 > max_payload:
            raise RecordTooLarge(index, length + 16, max_payload)
        body = stream.read(length + 4)
        if len(body) < length + 4:
            raise BadRecordFormat(f"the object ends inside TFRecord record {index}")
        yield head + body


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), for TFRecord's small headers; pure Python, about 1 µs a byte."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
