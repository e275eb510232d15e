"""The router ↔ instance frame format: frames survive any chunking of the byte stream."""

import random

import pytest

from moorage.runtime import protocol as p


def _frames(rng: random.Random, n: int) -> list[bytes]:
    sizes = [0, 1, 3, 100, 70_000, 1_000_000]
    return [p.encode_request(i, p.KIND_INVOKE, b"text/csv", b"", b"", rng.randbytes(rng.choice(sizes)))
            for i in range(n)]


@pytest.mark.parametrize("seed", range(20))
def test_frames_survive_any_chunking(seed: int) -> None:
    rng = random.Random(seed)
    frames = _frames(rng, 12)
    stream = b"".join(frames)
    buf, got, pos = p.FrameBuffer(), [], 0
    while pos < len(stream):
        step = rng.choice([1, 2, 5, 4096, 65536, 300_000, len(stream)])
        got += buf.feed(stream[pos:pos + step])
        pos += step
    assert got == frames
    assert [p.decode_request(f).id for f in got] == list(range(12))


def test_a_chunk_holding_exactly_one_frame_is_returned_without_a_copy() -> None:
    frame = p.encode_request(7, p.KIND_INVOKE, b"", b"", b"", b"1,2,3")
    assert p.FrameBuffer().feed(frame)[0] is frame


def test_a_split_length_prefix_waits_for_the_rest() -> None:
    frame = p.encode_request(1, p.KIND_PING, b"", b"", b"", b"")
    buf = p.FrameBuffer()
    assert buf.feed(frame[:2]) == []
    assert buf.feed(frame[2:3]) == []
    assert buf.feed(frame[3:]) == [frame]


def test_a_file_range_reads_exactly_its_bytes(tmp_path) -> None:
    f = tmp_path / "input.csv"
    f.write_bytes(b"1,2\n3,4\n5,6\n")
    part = p.FileRange(str(f), 4, 8)
    assert p.FileRange.decode(part.encode()) == part
    assert part.read() == b"3,4\n5,6\n"
    with pytest.raises(OSError, match="ends before byte 13"):
        p.FileRange(str(f), 4, 9).read()
