"""Request decoders and response encoders: the default ``input_fn`` / ``output_fn`` of every runtime.

This is the per-request hot path, so the common cases are short-circuited:

* media types are parsed once per distinct header value (dicts and an lru_cache), because clients
  send the same ``Content-Type`` / ``Accept`` over and over;
* a one-row CSV body (the typical real-time request) is converted by numpy's bytes-to-float cast,
  which skips ``np.loadtxt``'s per-call setup; several rows go through ``np.loadtxt``'s C parser;
* anything unusual (empty fields, a BOM, CR-only line ends, bad numbers) falls back to a slow
  Python parser whose only jobs are exact error messages and the rare cases (empty field = NaN,
  which is how SageMaker's XGBoost container reads missing values). Blank lines are skipped.

Request bodies come from the network: ``application/x-npy`` is loaded with ``allow_pickle=False``,
so a body can never make us unpickle anything.

numpy is imported at module level: this module is only imported by ``load_runtime`` (inside the
instance's load step), never by ``moorage.runtime.base`` or the server.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from typing import Any, Callable

import numpy as np

from moorage.runtime.base import InvocationFailed

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
SUPPORTED = (CSV, JSON, JSONLINES, NPY)
_SUPPORTED_TEXT = ", ".join(SUPPORTED)

#: media types whose bodies reach a user's input_fn / transform_fn as str (besides text/*)
UTF8_TYPES = frozenset((CSV, JSON, JSONLINES))

_CACHE_LIMIT = 256
_media_cache: dict[str | None, str] = {}
_charset_cache: dict[str | None, str | None] = {}


def media_type(content_type: str | None) -> str:
    """``"Text/CSV; charset=utf-8"`` → ``"text/csv"``; None → ``""``. Cached per header value."""
    try:
        return _media_cache[content_type]
    except KeyError:
        pass
    mt = "" if content_type is None else content_type.split(";", 1)[0].strip().lower()
    if len(_media_cache) >= _CACHE_LIMIT:  # bound the cache: header values are client-controlled
        _media_cache.clear()
    _media_cache[content_type] = mt
    return mt


def text_charset(content_type: str | None) -> str | None:
    """The charset a text body is decoded with for user hooks, or None for a binary type.

    JSON, CSV, JSON Lines and every ``text/*`` type are text (UTF-8 unless a charset says otherwise),
    following the SageMaker inference toolkit, which hands those bodies to ``input_fn`` as str.
    """
    try:
        return _charset_cache[content_type]
    except KeyError:
        pass
    mt = media_type(content_type)
    charset: str | None = None
    if mt in UTF8_TYPES or mt.startswith("text/"):
        charset = "utf-8"
        for param in (content_type or "").split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"')
    if len(_charset_cache) >= _CACHE_LIMIT:
        _charset_cache.clear()
    _charset_cache[content_type] = charset
    return charset


# ---------------------------------------------------------------------------------------- decode

def decode(body: bytes | str, content_type: str | None) -> np.ndarray:
    """Request body → array of rows. A missing content type means CSV (SageMaker's default body).

    Raises InvocationFailed 415 for an unsupported type and 400 for a malformed body.
    """
    try:
        decoder = _DECODERS[media_type(content_type)]
    except KeyError:
        raise InvocationFailed(415, f"Content type {media_type(content_type)} is not supported; "
                                    f"use one of {_SUPPORTED_TEXT}") from None
    if isinstance(body, str):  # a user hook passing text back to a default decoder
        body = body.encode()
    return decoder(body)


def _decode_csv(body: bytes) -> np.ndarray:
    nl = body.find(b"\n")
    if nl < 0 or nl == len(body) - 1:
        # One row. float() and numpy accept "1_0"; loadtxt does not: keep both paths alike.
        if b"_" not in body:
            try:
                return np.array(body.split(b","), dtype=np.float64).reshape(1, -1)
            except ValueError:
                pass
        return _decode_csv_slow(body)
    # Blank lines are skipped, as by np.loadtxt and the scikit-learn container's np.genfromtxt.
    # (Looking for them first would cost more than 10% of the parse: CPython's multi-byte
    # search is slow on newline-dense text.) isspace() stops at the first other byte.
    if body.isspace():
        return _decode_csv_slow(body)
    if len(body) >= _ARROW_MIN_BYTES:
        rows = _decode_csv_arrow(body)
        if rows is not None:
            return rows
    try:
        return np.loadtxt(io.BytesIO(body), delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return _decode_csv_slow(body)


#: from this size on (batch transform mini-batches, big requests) pyarrow's CSV reader parses
#: about 3x faster than np.loadtxt; below it, its fixed cost is larger than the gain
_ARROW_MIN_BYTES = 256 * 1024
#: pyarrow parses blocks on its threads; 2 MiB blocks measured best for 6 MB bodies
_ARROW_BLOCK = 2 * 1024 * 1024


def _decode_csv_arrow(body: bytes) -> np.ndarray | None:
    """Numeric rows with pyarrow; None when the body is anything but a clean numeric table, for
    the other paths to parse or word the error. Every column is read as float64 (what the model
    gets anyway), with as many columns as the first line has: no type inference, 8 % less CPU.
    pyarrow sizes its thread pool from OMP_NUM_THREADS, which the instance's profile sets: an
    ml.m5.large parses on its 2 vCPUs."""
    import pyarrow as pa
    from pyarrow import csv

    if body[:1].isspace():  # a blank first line: the general paths
        return None
    names = [f"c{i}" for i in range(body[:body.find(b"\n")].count(b",") + 1)]
    try:
        table = csv.read_csv(pa.py_buffer(body),
                             read_options=csv.ReadOptions(column_names=names, block_size=_ARROW_BLOCK),
                             parse_options=csv.ParseOptions(ignore_empty_lines=True, quote_char=False),
                             convert_options=csv.ConvertOptions(column_types=dict.fromkeys(names, pa.float64()),
                                                                null_values=[""]))  # as the small path: only "" is missing
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    # column by column into a Fortran-ordered array: contiguous copies (np.column_stack writes
    # with a stride and costs 7x more); scikit-learn and XGBoost take either order
    rows = np.empty((table.num_rows, len(names)), dtype=np.float64, order="F")
    for i, column in enumerate(table.columns):
        start = 0
        for chunk in column.chunks:
            rows[start:start + len(chunk), i] = _values(chunk)
            start += len(chunk)
    return rows


def _values(chunk: Any) -> np.ndarray:
    """A float64 arrow array's numbers, missing ones NaN. A view of its buffer when nothing is
    missing: pyarrow's own to_numpy imports pandas when pandas is installed, 200 ms on an
    instance's first batch."""
    validity, data = chunk.buffers()
    values = np.frombuffer(data, dtype=np.float64, count=len(chunk), offset=chunk.offset * 8)
    if not chunk.null_count:
        return values
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    return np.where(bits[chunk.offset:chunk.offset + len(chunk)].astype(bool), values, np.nan)


def _decode_csv_slow(body: bytes) -> np.ndarray:
    """Exact errors (1-based lines and columns) and the rare cases: empty field = NaN, BOM, CR-only.

    Blank lines are skipped like on the fast paths; error messages count physical lines.
    """
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    rows: list[list[float]] = []
    width = -1
    nan = float("nan")
    for i, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(b",")
        if width < 0:
            width = len(fields)
        elif len(fields) != width:
            raise InvocationFailed(400, f"could not parse text/csv row {i}: it has {len(fields)} "
                                        f"columns but the first row has {width}; all rows need the same number")
        row = []
        for j, field in enumerate(fields, 1):
            value = field.strip()
            if not value:
                row.append(nan)
                continue
            try:
                if b"_" in value:
                    raise ValueError
                row.append(float(value))
            except ValueError:
                hint = " (text/csv bodies have no header row)" if i == 1 else ""
                raise InvocationFailed(400, f"could not parse text/csv row {i}, column {j}: "
                                            f"{_show(value)} is not a number{hint}") from None
        rows.append(row)
    if not rows:
        raise InvocationFailed(400, "could not parse text/csv: the body is empty")
    return np.array(rows, dtype=np.float64)


def _decode_json(body: bytes) -> np.ndarray:
    try:
        doc = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvocationFailed(400, f"could not parse application/json: {exc}") from None
    if isinstance(doc, dict):
        if "instances" in doc:
            doc = doc["instances"]
        elif "inputs" in doc:
            doc = doc["inputs"]
            if isinstance(doc, list) and doc and isinstance(doc[0], dict):
                return _v2_tensor(doc)
        else:
            raise InvocationFailed(400, 'could not parse application/json: an object body needs an '
                                        '"instances" or "inputs" member holding the rows')
    return _rows(doc, JSON)


def _v2_tensor(inputs: list[Any]) -> np.ndarray:
    """Open Inference Protocol (V2) body: one tensor ``{"shape": [n, d], "data": [...]}``."""
    if len(inputs) != 1:
        raise InvocationFailed(400, f"could not parse application/json: {len(inputs)} input tensors; "
                                    "exactly one is supported")
    tensor = inputs[0]
    try:
        x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvocationFailed(400, f"could not parse application/json input tensor: "
                                    f"{_why(exc)}") from None
    return _as_rows(x, JSON)


def _decode_jsonlines(body: bytes) -> np.ndarray:
    rows = []
    for i, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise InvocationFailed(400, f"could not parse application/jsonlines line {i}: {exc}") from None
        if isinstance(obj, dict):
            if "features" not in obj:
                raise InvocationFailed(400, f"could not parse application/jsonlines line {i}: an "
                                            'object line needs a "features" member')
            obj = obj["features"]
        rows.append(obj)
    if not rows:
        raise InvocationFailed(400, "could not parse application/jsonlines: the body is empty")
    return _rows(rows, JSONLINES)


def _decode_npy(body: bytes) -> np.ndarray:
    try:
        x = np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InvocationFailed(400, "could not load application/x-npy: the body holds Python "
                                        "objects (pickled data), which are never loaded from a "
                                        "request; send a numeric array") from None
        raise InvocationFailed(400, f"could not load application/x-npy: {exc}") from None
    except (OSError, EOFError) as exc:
        raise InvocationFailed(400, f"could not load application/x-npy: {exc or 'truncated body'}") from None
    if not isinstance(x, np.ndarray):  # an .npz archive
        x.close()
        raise InvocationFailed(400, "could not load application/x-npy: the body is an .npz archive; "
                                    "send a single .npy array")
    return _as_rows(x, NPY)


def _rows(data: Any, media: str) -> np.ndarray:
    try:
        x = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise InvocationFailed(400, f"could not parse {media}: {_why(exc)}") from None
    if x.ndim == 2 and x.shape[0]:  # the usual shape, without another call
        return x
    return _as_rows(x, media)


def _as_rows(x: np.ndarray, media: str) -> np.ndarray:
    """A single row becomes a 1×d matrix; a scalar or nothing at all is a bad request."""
    if x.ndim >= 2 and x.shape[0]:
        return x
    if x.ndim == 1 and x.size:
        return x.reshape(1, -1)
    if x.ndim == 0:
        raise InvocationFailed(400, f"could not parse {media}: expected a list of rows or a single "
                                    "row, got a single value")
    raise InvocationFailed(400, f"could not parse {media}: there are no rows")


def _why(exc: Exception) -> str:
    text = str(exc)
    if "inhomogeneous" in text:
        return "rows have different lengths (ragged rows); every row needs the same number of values"
    if isinstance(exc, KeyError):
        return f"missing member {exc}"
    return text


def _show(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    return repr(text if len(text) <= 40 else text[:37] + "...")


_DECODERS: dict[str, Callable[[bytes], np.ndarray]] = {
    CSV: _decode_csv, "": _decode_csv, JSON: _decode_json,
    JSONLINES: _decode_jsonlines, NPY: _decode_npy,
}


# ---------------------------------------------------------------------------------------- accept

@functools.lru_cache(maxsize=512)
def resolve_accept(accept: str | None, content_type: str | None, default_accept: str | None) -> str:
    """The media type to answer in, for the default encoders.

    Missing or ``*/*`` → ``default_accept`` (env SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT) if set, else
    the request's own type (the XGBoost container's habit: CSV in, CSV out). A list takes its first
    supported entry. Raises InvocationFailed 406 when nothing in ``accept`` can be produced.
    """
    if not accept:
        return _fallback(content_type, default_accept)
    for part in accept.split(","):
        mt = part.split(";", 1)[0].strip().lower()
        if mt in _ENCODERS:
            return mt
        if mt in ("*/*", "*"):
            return _fallback(content_type, default_accept)
        if mt == "text/*":
            return CSV
        if mt == "application/*":
            return JSON
    raise InvocationFailed(406, f"Accept type {accept} is not supported; use one of {_SUPPORTED_TEXT}")


def _fallback(content_type: str | None, default_accept: str | None) -> str:
    if default_accept and media_type(default_accept) in _ENCODERS:
        return media_type(default_accept)
    mt = media_type(content_type)
    if mt in _ENCODERS:
        return mt
    return CSV if mt == "" else JSON


def is_supported_accept(value: str) -> bool:
    """Whether a configured default accept (e.g. from the env) names an encodable type."""
    return media_type(value) in _ENCODERS


# ---------------------------------------------------------------------------------------- encode

def encode(prediction: Any, accept: str) -> bytes:
    """Prediction → body in ``accept``, a media type returned by :func:`resolve_accept`."""
    return _ENCODERS[accept](prediction)


def _encode_csv(pred: Any) -> bytes:
    """One prediction per line; a multi-output row is comma-joined on its line."""
    if type(pred) is np.ndarray and pred.dtype.kind in "biuf":
        if pred.ndim == 1:
            if len(pred) >= _ARROW_MIN_LABELS and (pred.dtype.kind == "i" or
                                                    (pred.dtype.kind == "u" and pred.dtype.itemsize < 8)):
                return _encode_labels_arrow(pred)
            return ("\n".join(map(str, pred.tolist())) + "\n").encode()
        if pred.ndim == 2:
            return "".join([",".join(map(str, row)) + "\n" for row in pred.tolist()]).encode()
    items = _plain(pred)
    if isinstance(items, dict):
        raise TypeError("cannot encode a dict prediction as text/csv; use application/json or an output_fn")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")  # quotes labels holding commas or quotes
    for item in items if isinstance(items, (list, tuple)) else [items]:
        writer.writerow(item if isinstance(item, (list, tuple)) else [item])
    return out.getvalue().encode()


#: from this many integer labels on (batch transform), pyarrow's CSV writer formats them 4x faster
_ARROW_MIN_LABELS = 4096


def _encode_labels_arrow(pred: np.ndarray) -> bytes:
    """Integers one per line, byte for byte what ``str`` gives (floats are left to Python:
    pyarrow's shortest representation differs from ``repr`` in places)."""
    import pyarrow as pa
    from pyarrow import csv

    values = np.ascontiguousarray(pred, dtype=np.int64)  # from buffers: pa.table(ndarray) imports pandas
    column = pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])
    sink = pa.BufferOutputStream()
    csv.write_csv(pa.Table.from_arrays([column], names=["p"]), sink, csv.WriteOptions(include_header=False))
    return sink.getvalue().to_pybytes()


def _encode_json(pred: Any) -> bytes:
    if type(pred) is np.ndarray:
        return json.dumps({"predictions": pred.tolist()}).encode()
    return json.dumps({"predictions": pred}, default=_json_default).encode()


def _encode_jsonlines(pred: Any) -> bytes:
    items = _plain(pred)
    if not isinstance(items, (list, tuple)):
        items = [items]
    return "".join([json.dumps(v, default=_json_default) + "\n" for v in items]).encode()


def _encode_npy(pred: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(pred), allow_pickle=False)
    return buf.getvalue()


def _plain(pred: Any) -> Any:
    return pred.tolist() if isinstance(pred, (np.ndarray, np.generic)) else pred


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    raise TypeError(f"cannot encode a {type(obj).__name__} prediction as JSON")


_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    CSV: _encode_csv, JSON: _encode_json, JSONLINES: _encode_jsonlines, NPY: _encode_npy,
}
