"""The transform engine resumed from a checkpoint inside an object: the output has every record
once, in order, and the model is not run again on records before the checkpoint. A fake
instance (upper-casing each batch) stands in for the model; the crash is an exception."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import pytest

from moorage.backends.base import FileRange, Reply
from moorage.jobs import transform
from moorage.jobs.transform import Checkpoint, TransformSpec


class Crash(Exception):
    pass


def _spec(tmp_path: Path, strategy: str, compression: str, max_payload: int) -> TransformSpec:
    return TransformSpec(input_uri=str(tmp_path / "in"), data_type="S3Prefix", content_type="text/csv",
                         compression=compression, split="Line", output_path=str(tmp_path / "out"), accept="",
                         assemble="Line", strategy=strategy, max_payload=max_payload, concurrency=2,
                         instances=1, timeout=5, retries=0)


def _run(spec: TransformSpec, tmp_path: Path, seen: list[bytes], crash_at: int | None,
         resume: Checkpoint | None) -> list[Checkpoint]:
    checkpoints: list[Checkpoint] = []

    async def invoke(ctype: bytes, accept: bytes, body: bytes | FileRange, timeout: float) -> Reply:
        data = body.read() if isinstance(body, FileRange) else body
        if crash_at is not None and len(seen) == crash_at:
            raise Crash()
        seen.append(data)
        return Reply(200, b"text/csv", b"", data.upper())

    with pytest.raises(Crash) if crash_at is not None else _nothing():
        asyncio.run(transform.run(spec, invoke, tmp_path / "staging", tmp_path / "partial" / "current.part",
                                  lambda p: None, checkpoints.append, resume))
    return checkpoints


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("strategy, compression, max_payload", [
    ("MultiRecord", "None", 64),   # byte ranges; resumed by seeking
    ("MultiRecord", "Gzip", 64),   # read through gzip; resumed by seeking the decompressed stream
    ("SingleRecord", "None", 0),   # record by record; resumed by counting records
])
def test_a_job_resumed_inside_an_object_loses_and_repeats_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str, compression: str, max_payload: int) -> None:
    monkeypatch.setattr(transform, "CHECKPOINT_SECONDS", 0.0)
    lines = [f"row-{i},{'x' * (i % 9)}\n".encode() for i in range(200)]
    (tmp_path / "in").mkdir()
    data = b"".join(lines)
    (tmp_path / "in" / "a.csv").write_bytes(gzip.compress(data) if compression == "Gzip" else data)
    spec = _spec(tmp_path, strategy, compression, max_payload)

    first: list[bytes] = []
    checkpoints = _run(spec, tmp_path, first, crash_at=12, resume=None)
    assert checkpoints and not (tmp_path / "out" / "a.csv.out").exists()
    last = checkpoints[-1]
    assert 0 < last.records < 200
    assert (last.input_offset > 0) == (strategy == "MultiRecord")

    second: list[bytes] = []
    _run(spec, tmp_path, second, crash_at=None, resume=last)
    assert (tmp_path / "out" / "a.csv.out").read_bytes() == data.upper()
    # the model saw again only what followed the checkpoint, and never anything before it
    resent = b"".join(second)
    assert resent == b"".join(lines[last.records:])
    assert b"".join(first).startswith(b"".join(lines[:last.records]))


def test_a_checkpoint_of_another_object_is_not_applied(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_bytes(b"1\n2\n")
    seen: list[bytes] = []
    _run(_spec(tmp_path, "SingleRecord", "None", 0), tmp_path, seen, crash_at=None,
         resume=Checkpoint(object_index=3, records=1, output_bytes=2))
    assert (tmp_path / "out" / "a.csv.out").read_bytes() == b"1\n2\n" and seen == [b"1\n", b"2\n"]


def test_a_checkpoint_of_an_object_since_replaced_is_not_applied(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transform, "CHECKPOINT_SECONDS", 0.0)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_bytes(b"".join(b"%d\n" % i for i in range(50)))
    spec = _spec(tmp_path, "SingleRecord", "None", 0)
    checkpoints = _run(spec, tmp_path, [], crash_at=20, resume=None)
    (tmp_path / "in" / "a.csv").write_bytes(b"".join(b"new-%d\n" % i for i in range(30)))  # same name, new data
    seen: list[bytes] = []
    _run(spec, tmp_path, seen, crash_at=None, resume=checkpoints[-1])
    assert (tmp_path / "out" / "a.csv.out").read_bytes() == b"".join(b"NEW-%d\n" % i for i in range(30))
    assert len(seen) == 30  # started over: nothing of the old object was kept
