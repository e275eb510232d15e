"""The batch transform engine: every input object through a pool of model instances.

For each input object, in order: stream it (an s3:// object is first streamed to a staging
file; Gzip is decompressed as it is read), split it into records, pack records into
mini-batches, keep at most ``instances × MaxConcurrentTransforms`` mini-batches in flight, and
write each response to the object's result file as soon as every earlier one is written, so
output keeps input order and memory holds only the mini-batches in flight. The result is
published write-once as ``<S3OutputPath>/<object name>.out`` only when the whole object
succeeded; an object whose result already exists (a run before a restart) is skipped. So a
resumed job neither loses nor duplicates records.

The engine writes no state: it reports progress through a callback, and control/ stores it.
A Ray Data engine can replace it behind the same ``run`` signature.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, BinaryIO, Callable, Iterator

from moorage.artifacts import objects
from moorage.backends.base import FileRange, InstanceGone, Reply
from moorage.errors import ValidationException
from moorage.jobs.joins import Processing
from moorage.jobs.jsonpath import PathError
from moorage.jobs.records import Batch, BadRecordIO, RecordTooLarge, batches, line_batches, records


class JobFailed(Exception):
    """The job cannot finish; the message is its FailureReason."""


@dataclass(frozen=True)
class TransformSpec:
    input_uri: str
    data_type: str  # S3Prefix | ManifestFile
    content_type: str
    compression: str  # None | Gzip
    split: str  # None | Line | RecordIO
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


@dataclass(frozen=True)
class Progress:
    objects_done: int
    objects_total: int
    records: int
    bytes: int


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
            keys = sorted(k for k in objects.s3().find(folder) if k.startswith(base) and not k.endswith("/"))
        except OSError as exc:
            raise JobFailed(f"Could not list the input under {uri}: {exc}") from None
        return [InputObject("s3://" + k, k[len(folder) + 1:]) for k in keys]
    path = objects.local_path(uri)
    if path.is_dir():
        return [InputObject(str(p), str(p.relative_to(path))) for p in sorted(path.rglob("*")) if p.is_file()]
    # a prefix of file names, as on S3
    return [InputObject(str(p), str(p.relative_to(path.parent))) for p in sorted(path.parent.rglob("*"))
            if p.is_file() and str(p).startswith(str(path))]


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
    return [InputObject(objects.join(prefix, n), n) for n in names]


async def run(spec: TransformSpec, invoke: Invoke, staging: Path,
              on_progress: Callable[[Progress], None]) -> Progress:
    inputs = await asyncio.to_thread(list_inputs, spec)
    if not inputs:
        raise JobFailed(f"No input objects found under {spec.input_uri}.")
    done = Progress(0, len(inputs), 0, 0)
    on_progress(done)
    for item in inputs:
        out_url = objects.join(spec.output_path, item.name + ".out")
        if await asyncio.to_thread(objects.exists, out_url):
            n, size = 0, 0  # finished before a restart
        else:
            n, size = await _transform_object(spec, invoke, staging, item, out_url)
        done = Progress(done.objects_done + 1, len(inputs), done.records + n, done.bytes + size)
        on_progress(done)
    return done


async def _transform_object(spec: TransformSpec, invoke: Invoke, staging: Path, item: InputObject,
                            out_url: str) -> tuple[int, int]:
    try:
        src, staged = await asyncio.to_thread(objects.stage_input, item.url, staging)
    except (OSError, ValidationException) as exc:
        raise JobFailed(f"Could not read input object {item.url}: {exc}") from None
    dst = await asyncio.to_thread(objects.result_file, staging)
    limit = spec.instances * spec.concurrency
    window: collections.deque[tuple[Batch, asyncio.Task[bytes]]] = collections.deque()
    count = 0
    proc = spec.processing
    originals: collections.deque[bytes] = collections.deque()
    try:
        with _open(src, spec.compression) as f, open(dst, "wb") as out:
            try:
                # An uncompressed mini-batch cut at line ends is a byte range of the (staged)
                # file: the instance reads it itself instead of through the router's socket. (A
                # last line without its newline gets one, so that batch is sent as bytes.)
                ranged = False
                if proc is not None:  # record by record: filters and joins need each record
                    work = batches(_filtered(proc, records(f, spec.split), originals, item),
                                   spec.strategy, spec.max_payload)
                elif spec.split == "Line" and spec.strategy == "MultiRecord":
                    work = line_batches(f, spec.max_payload)
                    ranged = spec.compression != "Gzip"
                else:
                    work = batches(records(f, spec.split), spec.strategy, spec.max_payload)
                size = src.stat().st_size
                for batch in work:
                    if ranged and batch.offset + len(batch.payload) <= size:
                        body: bytes | FileRange = FileRange(str(src), batch.offset, len(batch.payload))
                        batch = Batch(batch.first, batch.last, b"", batch.offset)
                    else:
                        body = batch.payload
                    call = _call(spec, invoke, item, batch, body)
                    if proc is not None:
                        sources = [originals.popleft() for _ in range(batch.last - batch.first + 1)]
                        call = _assembled(proc, call, sources, item, batch)
                    window.append((batch, asyncio.create_task(call)))
                    count = batch.last
                    while len(window) >= limit:
                        _write(out, spec, await window.popleft()[1])
                while window:
                    _write(out, spec, await window.popleft()[1])
            except (RecordTooLarge, BadRecordIO) as exc:
                raise JobFailed(f"Input object {item.url}: {exc}.") from None
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise JobFailed(f"Could not read input object {item.url}: {exc}") from None
        await asyncio.to_thread(objects.publish, dst, out_url)
        return count, src.stat().st_size
    finally:
        for _, task in window:
            task.cancel()
        dst.unlink(missing_ok=True)
        if staged:
            src.unlink(missing_ok=True)


def _filtered(proc: Processing, items: Iterator[bytes], originals: collections.deque[bytes],
              item: InputObject) -> Iterator[bytes]:
    """Records after the InputFilter; each original is kept in ``originals`` for the join."""
    for index, rec in enumerate(items, start=1):
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
