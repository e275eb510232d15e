"""Records and mini-batches, with exact boundaries."""

from __future__ import annotations

import io

import pytest

from moorage.jobs.records import Batch, RecordTooLarge, batches, records


def _recs(data: bytes, split: str = "Line") -> list[bytes]:
    return list(records(io.BytesIO(data), split))


def test_line_split_keeps_newlines_skips_blanks_and_ends_the_last_line():
    assert _recs(b"a,1\n\nb,2\r\n  \nc,3") == [b"a,1\n", b"b,2\r\n", b"c,3\n"]
    assert _recs(b"") == []
    assert _recs(b"whole\nobject", "None") == [b"whole\nobject"]


def test_single_record_batches_are_one_record_each():
    got = list(batches(iter([b"a\n", b"b\n", b"c\n"]), "SingleRecord", 100))
    assert got == [Batch(1, 1, b"a\n"), Batch(2, 2, b"b\n"), Batch(3, 3, b"c\n")]


def test_multi_record_fills_up_to_the_payload_limit():
    recs = [b"aaaa\n", b"bbbb\n", b"cccc\n", b"dd\n"]  # 5, 5, 5, 3 bytes
    assert list(batches(iter(recs), "MultiRecord", 10)) == [
        Batch(1, 2, b"aaaa\nbbbb\n"), Batch(3, 4, b"cccc\ndd\n")]
    assert list(batches(iter(recs), "MultiRecord", 0)) == [Batch(1, 4, b"".join(recs))]  # 0: no limit
    assert list(batches(iter([]), "MultiRecord", 10)) == []


def test_a_record_over_the_limit_is_refused_with_its_index():
    with pytest.raises(RecordTooLarge) as exc:
        list(batches(iter([b"ok\n", b"x" * 11]), "MultiRecord", 10))
    assert exc.value.index == 2 and "record 2 is 11 bytes" in str(exc.value)


def test_line_ranges_cut_at_newlines_within_the_limit():
    from moorage.jobs.records import line_ranges
    data = b"aaaa\nbbbb\n\ncccc\ndd"  # lines 1..5; line 3 blank; no final newline
    got = list(line_ranges(io.BytesIO(data), 10, keep=True))
    # the end of the object is sent whole once it fits: lines 3-5, the last without its newline
    assert got == [Batch(1, 2, b"aaaa\nbbbb\n", 0, 10), Batch(3, 5, b"\ncccc\ndd", 10, 18)]
    assert b"".join(b.payload for b in got) == data
    assert [(b.first, b.last, b.payload, b.offset, b.end) for b in line_ranges(io.BytesIO(data), 10)] == [
        (b.first, b.last, b"", b.offset, b.end) for b in got]  # without keep: the ranges only
    assert list(line_ranges(io.BytesIO(b""), 10)) == []
    assert list(line_ranges(io.BytesIO(data), 0, keep=True)) == [Batch(1, 5, data, 0, 18)]  # 0: no limit
    # resumed after line 2: the stream at byte 10, numbering from 3
    tail = io.BytesIO(data)
    tail.seek(10)
    assert list(line_ranges(tail, 10, 3, 10, keep=True)) == [Batch(3, 5, b"\ncccc\ndd", 10, 18)]
    with pytest.raises(RecordTooLarge) as exc:
        list(line_ranges(io.BytesIO(b"ok\n" + b"x" * 30 + b"\n"), 10))
    assert exc.value.index == 2


def test_line_ranges_agree_with_records_on_real_text():
    from moorage.jobs.records import line_ranges
    lines = [(b"%d," % i) * (i % 7 + 1) + b"\n" for i in range(500)]
    data = b"".join(lines)
    for limit in (64, 100, 1000, 1 << 20):
        got = list(line_ranges(io.BytesIO(data), limit, keep=True))
        assert b"".join(b.payload for b in got) == data
        assert all(len(b.payload) <= limit for b in got)
        assert [b.first for b in got][0] == 1 and got[-1].last == 500
        assert all(b.payload.count(b"\n") == b.last - b.first + 1 for b in got)
        assert all(data[b.offset:b.end] == b.payload for b in got)  # byte ranges
        assert all(a.end == b.offset for a, b in zip(got, got[1:])) and got[-1].end == len(data)


def _rio(payload: bytes, flag: int = 0) -> bytes:
    import struct
    return struct.pack("<II", 0xCED7230A, (flag << 29) | len(payload)) + payload + b"\0" * (-len(payload) % 4)


def test_recordio_records_with_padding_and_multi_part_records():
    from moorage.jobs.records import BadRecordFormat
    one, two = _rio(b"abcde"), _rio(b"wxyz")
    multi = _rio(b"part1", 1) + _rio(b"p2", 2) + _rio(b"end", 3)
    data = one + multi + two
    assert _recs(data, "RecordIO") == [one, multi, two]
    assert len(one) == 16  # 8-byte header + 5 bytes + 3 padding
    assert list(batches(iter(_recs(data, "RecordIO")), "MultiRecord", 52)) == [
        Batch(1, 1, one), Batch(2, 3, multi + two)]
    with pytest.raises(BadRecordFormat, match="bad magic"):
        _recs(b"not recordio at all", "RecordIO")
    with pytest.raises(BadRecordFormat, match="ends inside a record"):
        _recs(one[:12], "RecordIO")
    with pytest.raises(BadRecordFormat, match="multi-part"):
        _recs(_rio(b"x", 1), "RecordIO")


def _tfr(payload: bytes) -> bytes:
    import struct

    from moorage.jobs.records import masked_crc32c
    head = struct.pack("<Q", len(payload))
    return head + struct.pack("<I", masked_crc32c(head)) + payload + struct.pack("<I", masked_crc32c(payload))


def test_crc32c_matches_the_published_check_value():
    from moorage.jobs.records import crc32c
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    assert crc32c(b"") == 0


def test_tfrecord_records_are_yielded_whole():
    from moorage.jobs.records import BadRecordFormat
    recs = [_tfr(b""), _tfr(b"one"), _tfr(b"x" * 1000)]
    assert _recs(b"".join(recs), "TFRecord") == recs
    assert len(recs[1]) == 8 + 4 + 3 + 4
    with pytest.raises(BadRecordFormat, match="bad length checksum"):
        _recs(b"1,2,3\n4,5,6\n", "TFRecord")  # a CSV file is not TFRecord
    with pytest.raises(BadRecordFormat, match="ends inside TFRecord record 2"):
        _recs(recs[0] + recs[2][:-1], "TFRecord")
    with pytest.raises(BadRecordFormat, match="header of TFRecord record 1"):
        _recs(b"\0" * 5, "TFRecord")


@pytest.mark.parametrize("limit", [8, 10, 64, 1000, 0])
def test_line_ranges_cover_the_file_in_numbered_byte_ranges(limit: int):
    """The ranges the instances read themselves: cut after a newline within the limit, numbered
    by line, no payload, blank-only ranges skipped, the last line as the file
    has it."""
    from moorage.jobs.records import line_ranges
    data = b"aaaa\nbb\n\n\n\n\n\n\ncccc\nd\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(40)) + b"tail"
    ranges = list(line_ranges(io.BytesIO(data), limit))
    assert all(r.payload == b"" for r in ranges) and ranges[-1].end == len(data)
    assert ranges[-1].last == data.count(b"\n") + 1  # every line numbered, the unfinished last one too
    for r in ranges:
        part = data[r.offset:r.end]
        assert part.strip() and (not limit or len(part) <= limit)
        assert part.count(b"\n") + (not part.endswith(b"\n")) == r.last - r.first + 1
        assert r.offset == 0 or data[r.offset - 1:r.offset] == b"\n"
        assert r.first == data[:r.offset].count(b"\n") + 1
    if limit == 8:  # the 7 blank lines fill one range of their own, which is skipped
        assert not any(data[r.offset:r.end].isspace() for r in ranges)
        assert sum(r.last - r.first + 1 for r in ranges) < ranges[-1].last
    # resumed at a range's end: the rest, numbered on
    cut = ranges[len(ranges) // 2]
    rest = io.BytesIO(data)
    rest.seek(cut.end)
    assert [(r.first, r.offset) for r in line_ranges(rest, limit, cut.last + 1, cut.end)][:1] == \
        [(r.first, r.offset) for r in ranges[len(ranges) // 2 + 1:]][:1]


def test_line_ranges_without_a_limit_keep_a_line_longer_than_a_block(monkeypatch):
    """MaxPayloadInMB 0 reads 6 MiB blocks; a longer line grows the block, nothing is dropped."""
    import moorage.jobs.records as records_module
    from moorage.jobs.records import line_ranges
    monkeypatch.setattr(records_module, "UNLIMITED_BLOCK", 16)
    data = b"a" * 40 + b"\n" + b"x\ny\nz\n" + b"c" * 20
    got = list(line_ranges(io.BytesIO(data), 0, keep=True))
    assert b"".join(b.payload for b in got) == data and got[-1].last == 5


def test_binary_records_over_the_payload_limit_fail_before_they_are_read():
    from moorage.jobs.records import BadRecordFormat
    with pytest.raises(RecordTooLarge, match="record 2"):
        list(records(io.BytesIO(_tfr(b"ok") + _tfr(b"x" * 100)), "TFRecord", 64))
    import struct

    from moorage.jobs.records import masked_crc32c
    head = struct.pack("<Q", 1 << 36)
    huge = head + struct.pack("<I", masked_crc32c(head))  # claims 64 GiB: refused, not allocated
    with pytest.raises(RecordTooLarge):
        list(records(io.BytesIO(huge), "TFRecord", 1 << 20))
    with pytest.raises(RecordTooLarge, match="record 1"):
        list(records(io.BytesIO(_rio(b"x" * 60, 1) + _rio(b"y" * 60, 3)), "RecordIO", 100))
    # continuation flags must come in order
    for bad in (_rio(b"a", 2), _rio(b"a", 3), _rio(b"a", 1) + _rio(b"b", 1) + _rio(b"c", 3), _rio(b"a", 5)):
        with pytest.raises(BadRecordFormat, match="out of sequence"):
            list(records(io.BytesIO(bad), "RecordIO"))
