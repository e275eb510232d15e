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
