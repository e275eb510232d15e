"""The batch transform engine: every input object through a pool of model instances.

For each input object, in order: stream it (an s3:// object is first streamed to a staging
file; Gzip is decompressed as it is read), split it into records, pack records into
mini-batches, keep at most ``instances × MaxConcurrentTransforms`` mini-batches in flight, and
write each response to the object's result file as soon as every earlier one is written, so
output keeps input order and memory holds only the mini-batches in flight. The result is
published write-once as ``<S3OutputPath>/<object name>.out`` only when the whole object
succeeded; an object whose result already exists (a run before a restart) is skipped.

Inside an object, a checkpoint is reported at most every ``CHECKPOINT_SECONDS``: how many of
its records have their results in the partial result file, how long that file is, and where
in the input the next record starts when that is known. A job resumed from one truncates the
partial file to that length, skips those records (seeking straight to them when it can) and
goes on. So a resumed job neither loses nor duplicates records, and runs the model again
only on the records after its last checkpoint.

The engine writes no state: it reports progress and checkpoints through callbacks, and
control/ stores them. A Ray Data engine can replace it behind the same ``run`` signature.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, BinaryIO, Callable, Iterator

from moorage.artifacts import objects
from moorage.backends.base import FileRange, InstanceGone, Reply
from moorage.errors import ValidationException
from moorage.jobs.joins import Processing
from moorage.jobs.jsonpath import PathError
from moorage.jobs.records import (
    BadRecordFormat,
    Batch,
    RecordTooLarge,
    batches,
    line_ranges,
    records,
)


class JobFailed(Exception):
    """The job cannot finish; the message is its FailureReason."""


@dataclass(frozen=True)
class TransformSpec:
    input_uri: str
    data_type: str  # S3Prefix | ManifestFile
    content_type: str
    compression: str  # None | Gzip
    split: str  # None | Line | RecordIO | TFRecord
    output_path: str
    accept: str
    assemble: str  # None | Line
    strategy: str  # SingleRecord | MultiRecord
    max_payload: int  # bytes; 0 = no limit
    concurrency: int  # in-flight requests per instance
    instances: int
    timeout: float
    retries: int
    processing: Processing | None = None

    @classmethod
    def from_request(cls, p: dict[str, Any]) -> TransformSpec:
        ti, to = p["TransformInput"], p["TransformOutput"]
        source = ti["DataSource"]["S3DataSource"]
        client = p.get("ModelClientConfig") or {}
        return cls(
            input_uri=source["S3Uri"], data_type=source["S3DataType"],
            content_type=ti.get("ContentType", ""), compression=ti.get("CompressionType", "None"),
            split=ti.get("SplitType", "None"), output_path=to["S3OutputPath"], accept=to.get("Accept", ""),
            assemble=to.get("AssembleWith", "None"), strategy=p.get("BatchStrategy", "MultiRecord"),
            max_payload=int(p.get("MaxPayloadInMB", 6)) * 1024 * 1024,
            concurrency=max(1, int(p.get("MaxConcurrentTransforms") or 1)),
            instances=int(p["TransformResources"]["InstanceCount"]),
            timeout=float(client.get("InvocationsTimeoutInSeconds", 600)),
            retries=int(client.get("InvocationsMaxRetries", 3)),
            processing=Processing.from_request(p.get("DataProcessing"), ti.get("ContentType", ""),
                                               to.get("Accept", "")))


@dataclass(frozen=True)
class InputObject:
    url: str
    name: str  # relative to the prefix (or as the manifest lists it): names the output
    size: int = -1  # bytes as stored (compressed, if it is); -1: unknown


@dataclass(frozen=True)
class Progress:
    objects_done: int
    objects_total: int
    records: int
    bytes: int  # of the input as stored, read so far
    bytes_total: int = 0


@dataclass(frozen=True)
class Checkpoint:
    """The results of ``records`` records of input object ``object_index`` fill the first
    ``output_bytes`` of the partial result; the next record starts at byte ``input_offset`` of
    the (decompressed) object, or -1 when only counting records finds it."""

    object_index: int
    records: int
    output_bytes: int
    input_offset: int = -1
    #: the object it was taken on: a resumed job applies it only to the same name and size
    object_name: str = ""
    object_size: int = -1


#: how often a running object reports a checkpoint (and its records done)
CHECKPOINT_SECONDS = 1.0


#: (content type, accept, body, timeout): the body is bytes, or a range of a local file that the
#: instance reads itself
Invoke = Callable[[bytes, bytes, bytes | FileRange, float], Awaitable[Reply]]


def list_inputs(spec: TransformSpec) -> list[InputObject]:
    """The job's input objects in key order (S3Prefix) or manifest order (ManifestFile)."""
    if spec.data_type == "ManifestFile":
        return _manifest(spec.input_uri)
    uri = spec.input_uri
    if objects.is_s3(uri):  # every object whose key starts with the prefix
        base = uri[5:]
        folder = base.rsplit("/", 1)[0] if "/" in base.rstrip("/") else base.rstrip("/")
        try:
            found = objects.s3().find(folder, detail=True)
        except OSError as exc:
            raise JobFailed(f"Could not list the input under {uri}: {exc}") from None
        return [InputObject("s3://" + k, k[len(folder) + 1:], int(found[k].get("size") or 0))
                for k in sorted(found) if k.startswith(base) and not k.endswith("/")]
    path = objects.local_path(uri)
    if path.is_dir():
        return [InputObject(str(p), str(p.relative_to(path)), p.stat().st_size)
                for p in sorted(path.rglob("*")) if p.is_file()]
    # a prefix of file names, as on S3
    return [InputObject(str(p), str(p.relative_to(path.parent)), p.stat().st_size)
            for p in sorted(path.parent.rglob("*")) if p.is_file() and str(p).startswith(str(path))]


def _manifest(uri: str) -> list[InputObject]:
    """``[{"prefix": "s3://bucket/dir/"}, "a.csv", "sub/b.csv", ...]``, as SageMaker reads it."""
    try:
        if objects.is_s3(uri):
            with objects.s3().open(uri, "rb") as f:
                doc = json.load(f)
        else:
            doc = json.loads(objects.local_path(uri).read_text())
        prefix = doc[0]["prefix"]
        names = [str(n) for n in doc[1:]]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise JobFailed(f"The manifest {uri} is not a list of a {{\"prefix\": ...}} object and "
                        f"relative keys: {exc}") from None
    return [InputObject(objects.join(prefix, n), n, objects.size(objects.join(prefix, n))) for n in names]


async def run(spec: TransformSpec, invoke: Invoke, staging: Path, partial: Path,
              on_progress: Callable[[Progress], None],
              on_checkpoint: Callable[[Checkpoint], None] = lambda _: None,
              resume: Checkpoint | None = None) -> Progress:
    """Transform every input object. ``partial`` is where the current object's result grows
    (it must survive a restart for ``resume`` to use it); ``staging`` holds s3:// inputs."""
    inputs = await asyncio.to_thread(list_inputs, spec)
    if not inputs:
        raise JobFailed(f"No input objects found under {spec.input_uri}.")
    total = sum(max(item.size, 0) for item in inputs)
    done = Progress(0, len(inputs), 0, 0, total)
    on_progress(done)
    for index, item in enumerate(inputs):
        out_url = objects.join(spec.output_path, item.name + ".out")
        if await asyncio.to_thread(objects.exists, out_url):
            n, size = 0, max(item.size, 0)  # finished before a restart
        else:
            same = resume is not None and (resume.object_index, resume.object_name, resume.object_size) == (
                index, item.name, item.size)
            start = resume if same and resume is not None else Checkpoint(index, 0, 0, 0, item.name, item.size)

            def report(c: Checkpoint, read: int, done: Progress = done) -> None:
                on_checkpoint(c)
                on_progress(Progress(done.objects_done, done.objects_total, done.records + c.records,
                                     done.bytes + read, total))
            n, size = await _transform_object(spec, invoke, staging, partial, item, out_url, start, report)
        done = Progress(done.objects_done + 1, len(inputs), done.records + n, done.bytes + size, total)
        on_progress(done)
    return done


async def _transform_object(spec: TransformSpec, invoke: Invoke, staging: Path, partial: Path,
                            item: InputObject, out_url: str, start: Checkpoint,
                            report: Callable[[Checkpoint, int], None]) -> tuple[int, int]:
    try:
        src, staged = await asyncio.to_thread(objects.stage_input, item.url, staging)
    except (OSError, ValidationException) as exc:
        raise JobFailed(f"Could not read input object {item.url}: {exc}") from None
    partial.parent.mkdir(parents=True, exist_ok=True)
    line_path = spec.split == "Line" and spec.strategy == "MultiRecord" and spec.processing is None
    if (start.records == 0 or not partial.exists() or partial.stat().st_size < start.output_bytes
            or (line_path and start.input_offset < 0)):
        start = Checkpoint(start.object_index, 0, 0, 0, start.object_name, start.object_size)
        partial.write_bytes(b"")
    limit = spec.instances * spec.concurrency
    window: collections.deque[tuple[Batch, asyncio.Task[bytes]]] = collections.deque()
    count = start.records
    proc = spec.processing
    originals: collections.deque[bytes] = collections.deque()
    try:
        with _open(src, spec.compression) as f, open(partial, "r+b") as out:
            out.truncate(start.output_bytes)  # what came after the checkpoint is written again
            out.seek(start.output_bytes)
            last_report = time.monotonic()
            try:
                # An uncompressed mini-batch cut at line ends is a byte range of the (staged)
                # file: the instance reads it itself instead of through the router's socket.
                ranged = line_path and spec.compression != "Gzip"
                skip = start.records
                if line_path:
                    if start.input_offset > 0:
                        f.seek(start.input_offset)
                    work = line_ranges(f, spec.max_payload, skip + 1, max(start.input_offset, 0), keep=not ranged)
                elif proc is not None:  # record by record: filters and joins need each record
                    items = itertools.islice(records(f, spec.split, spec.max_payload), skip, None)
                    work = batches(_filtered(proc, items, originals, item, skip + 1),
                                   spec.strategy, spec.max_payload, skip + 1)
                else:
                    work = batches(itertools.islice(records(f, spec.split, spec.max_payload), skip, None),
                                   spec.strategy, spec.max_payload, skip + 1)
                for batch in work:
                    body = FileRange(str(src), batch.offset, batch.end - batch.offset) if ranged else batch.payload
                    call = _call(spec, invoke, item, batch, body)
                    if proc is not None:
                        sources = [originals.popleft() for _ in range(batch.last - batch.first + 1)]
                        call = _assembled(proc, call, sources, item, batch)
                    window.append((batch, asyncio.create_task(call)))
                    count = batch.last
                    while len(window) >= limit or (window and window[0][1].done()):
                        written, task = window.popleft()
                        _write(out, spec, await task)
                        if time.monotonic() - last_report >= CHECKPOINT_SECONDS:
                            out.flush()
                            report(Checkpoint(start.object_index, written.last, out.tell(), written.end or -1,
                                              start.object_name, start.object_size), _read_so_far(f))
                            last_report = time.monotonic()
                while window:
                    _write(out, spec, await window.popleft()[1])
            except (RecordTooLarge, BadRecordFormat) as exc:
                raise JobFailed(f"Input object {item.url}: {exc}.") from None
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise JobFailed(f"Could not read input object {item.url}: {exc}") from None
        await asyncio.to_thread(objects.publish, partial, out_url)
        return count, src.stat().st_size
    finally:
        for _, task in window:
            task.cancel()
        if staged:
            src.unlink(missing_ok=True)


def _filtered(proc: Processing, items: Iterator[bytes], originals: collections.deque[bytes],
              item: InputObject, first: int) -> Iterator[bytes]:
    """Records after the InputFilter; each original is kept in ``originals`` for the join."""
    for index, rec in enumerate(items, start=first):
        originals.append(rec)
        try:
            yield proc.filter_input(rec)
        except (PathError, UnicodeDecodeError) as exc:
            raise JobFailed(f"Input object {item.url}, record {index}: InputFilter: {exc}") from None


async def _assembled(proc: Processing, call: Awaitable[bytes], sources: list[bytes], item: InputObject,
                     batch: Batch) -> bytes:
    """A mini-batch's output, one line per record, joined and filtered."""
    lines = (await call).splitlines()
    if len(lines) != len(sources):
        raise JobFailed(f"Input object {item.url}, records {batch.first}-{batch.last}: the model returned "
                        f"{len(lines)} lines for {len(sources)} records; JoinSource and OutputFilter need "
                        "one output line per record.")
    try:
        return b"".join(proc.assemble(src, line) + b"\n" for src, line in zip(sources, lines))
    except (PathError, UnicodeDecodeError) as exc:
        raise JobFailed(f"Input object {item.url}, records {batch.first}-{batch.last}: OutputFilter or "
                        f"JoinSource: {exc}") from None


def _read_so_far(f: BinaryIO) -> int:
    """Bytes of the object as stored that ``f`` has read: a gzip stream's compressed ones."""
    raw = getattr(f, "fileobj", None)
    return int((raw if raw is not None else f).tell())


def _open(src: Path, compression: str) -> BinaryIO:
    if compression == "Gzip":
        return gzip.open(src, "rb")  # type: ignore[return-value]
    return open(src, "rb")


def _write(out: BinaryIO, spec: TransformSpec, body: bytes) -> None:
    out.write(body)
    if spec.assemble == "Line" and body and not body.endswith(b"\n"):
        out.write(b"\n")


async def _call(spec: TransformSpec, invoke: Invoke, item: InputObject, batch: Batch,
                body: bytes | FileRange) -> bytes:
    """One mini-batch, retried up to InvocationsMaxRetries times; JobFailed names the records."""
    problem = ""
    for _ in range(spec.retries + 1):
        try:
            reply = await invoke(spec.content_type.encode(), spec.accept.encode(), body, spec.timeout)
        except asyncio.TimeoutError:
            problem = f"no response within InvocationsTimeoutInSeconds ({spec.timeout:g} s)"
            continue
        except InstanceGone as exc:
            problem = f"the instance stopped ({exc})"
            await asyncio.sleep(0.5)
            continue
        if reply.status < 400:
            return reply.body
        problem = f"the model answered {reply.status}: {reply.body[:1000].decode(errors='replace')}"
    where = f"record {batch.first}" if batch.first == batch.last else f"records {batch.first}-{batch.last}"
    raise JobFailed(f"Input object {item.url}, {where}: {problem} "
                    f"(after {spec.retries + 1} attempts).")
