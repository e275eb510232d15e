"""Decoders, encoders and Accept resolution of moorage.runtime.codecs."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from moorage.runtime import codecs
from moorage.runtime.base import InvocationFailed

PAYLOADS = Path("/work/shared/bench/payloads")
SUPPORTED = "text/csv, application/json, application/jsonlines, application/x-npy"


def fails(status: int, body, content_type: str | None) -> str:
    with pytest.raises(InvocationFailed) as info:
        codecs.decode(body, content_type)
    assert info.value.status == status
    return str(info.value)


# ------------------------------------------------------------------------------------------ CSV

@pytest.mark.parametrize("body", [b"1,2.5,-3", b"1,2.5,-3\n", b"1,2.5,-3\r\n", b" 1 , 2.5,-3e0 \n"])
def test_csv_one_row(body):
    x = codecs.decode(body, "text/csv")
    assert x.dtype == np.float64 and x.shape == (1, 3)
    assert x.tolist() == [[1.0, 2.5, -3.0]]


@pytest.mark.parametrize("body", [b"1,2\n3,4", b"1,2\n3,4\n", b"1,2\r\n3,4\r\n", b"1,2\r3,4\r",
                                  b"\xef\xbb\xbf1,2\n3,4\n", b"1,2\n\n3,4\n\n", b"\n1,2\n3,4"])
def test_csv_rows_line_ends_bom_and_blank_lines(body):
    assert codecs.decode(body, "text/csv").tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize("ctype", ["text/csv", "text/csv; charset=utf-8", "Text/CSV;charset=UTF-8", None])
def test_csv_content_type_forms(ctype):
    assert codecs.decode(b"1,2\n", ctype).tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize("rows", [1, 100])
def test_csv_matches_yardstick_parse(rows):
    body = (PAYLOADS / f"rows_{rows}.csv").read_bytes()
    expected = np.loadtxt(io.BytesIO(body), delimiter=",", ndmin=2)
    got = codecs.decode(body, "text/csv")
    assert got.shape == expected.shape == (rows, 20)
    assert np.array_equal(got, expected)


def test_csv_empty_field_is_missing_value():
    x = codecs.decode(b"1,,3\n4,5,\n", "text/csv")
    assert x.shape == (2, 3) and math.isnan(x[0, 1]) and math.isnan(x[1, 2])
    assert codecs.decode(b"nan,inf,-inf", "text/csv").shape == (1, 3)


def test_csv_malformed_number_names_row_and_column():
    msg = fails(400, b"1,2,3\n4,5,x\n", "text/csv")
    assert msg == "could not parse text/csv row 2, column 3: 'x' is not a number"


def test_csv_header_row_gets_a_hint():
    msg = fails(400, b"a,b\n1,2\n", "text/csv")
    assert msg.startswith("could not parse text/csv row 1, column 1: 'a' is not a number")
    assert "no header row" in msg


@pytest.mark.parametrize("body", [b"1,2,3\n4,5\n", b"1,2\n3,4,5\n6,7\n"])
def test_csv_ragged_rows(body):
    msg = fails(400, body, "text/csv")
    assert msg.startswith("could not parse text/csv row 2: it has ")
    assert "the first row has" in msg


@pytest.mark.parametrize("body", [b"1_0,2", b"1_0,2\n3,4\n"])
def test_csv_underscore_numbers_rejected_on_every_path(body):
    assert "'1_0' is not a number" in fails(400, body, "text/csv")


@pytest.mark.parametrize("body", [b"", b"\n", b"\r\n\r\n", b"   "])
def test_csv_empty_body(body):
    assert fails(400, body, "text/csv") == "could not parse text/csv: the body is empty"


def test_csv_quoted_values_rejected():
    assert "is not a number" in fails(400, b'"1","2"\n', "text/csv")


# ----------------------------------------------------------------------------------------- JSON

@pytest.mark.parametrize("doc", [{"instances": [[1, 2], [3, 4]]}, {"inputs": [[1, 2], [3, 4]]},
                                 [[1, 2], [3, 4]],
                                 {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64",
                                              "data": [1, 2, 3, 4]}]}])
def test_json_row_forms(doc):
    x = codecs.decode(json.dumps(doc).encode(), "application/json")
    assert x.dtype == np.float64 and x.tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize("doc", [[1, 2, 3], {"instances": [1, 2, 3]}])
def test_json_single_row(doc):
    assert codecs.decode(json.dumps(doc).encode(), "application/json").tolist() == [[1.0, 2.0, 3.0]]


def test_json_bench_payloads_equal_csv():
    for rows in (1, 100):
        j = codecs.decode((PAYLOADS / f"rows_{rows}.json").read_bytes(), "application/json")
        v2 = codecs.decode((PAYLOADS / f"rows_{rows}.v2.json").read_bytes(), "application/json")
        c = codecs.decode((PAYLOADS / f"rows_{rows}.csv").read_bytes(), "text/csv")
        assert np.array_equal(j, c) and np.array_equal(v2, c)


def test_json_malformed():
    assert fails(400, b'{"instances": [[1, 2]', "application/json").startswith(
        "could not parse application/json: ")


def test_json_ragged():
    msg = fails(400, b'{"instances": [[1, 2], [3]]}', "application/json")
    assert msg == ("could not parse application/json: rows have different lengths (ragged rows); "
                   "every row needs the same number of values")


@pytest.mark.parametrize("body,needle", [
    (b'{"rows": [[1]]}', '"instances" or "inputs"'),
    (b"5", "single value"),
    (b"[]", "there are no rows"),
    (b'[["a", "b"]]', "could not convert string to float"),
    (b'[[{"x": 1}]]', "could not parse application/json"),
])
def test_json_bad_shapes(body, needle):
    assert needle in fails(400, body, "application/json")


# ---------------------------------------------------------------------------------- JSON Lines

def test_jsonlines_rows_and_feature_objects():
    body = b'[1, 2]\n{"features": [3, 4]}\n\n'
    assert codecs.decode(body, "application/jsonlines").tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_jsonlines_errors():
    assert fails(400, b"[1, 2]\n[3, \n", "application/jsonlines").startswith(
        "could not parse application/jsonlines line 2: ")
    assert '"features"' in fails(400, b'{"x": [1]}\n', "application/jsonlines")
    assert "ragged" in fails(400, b"[1, 2]\n[3]\n", "application/jsonlines")
    assert "empty" in fails(400, b"\n", "application/jsonlines")


# ------------------------------------------------------------------------------------------ NPY

def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def test_npy_keeps_dtype_and_makes_rows():
    x = codecs.decode(npy(np.arange(6, dtype=np.float32).reshape(2, 3)), "application/x-npy")
    assert x.dtype == np.float32 and x.shape == (2, 3)
    assert codecs.decode(npy(np.array([1.0, 2.0])), "application/x-npy").shape == (1, 2)


class _Boom:
    """Unpickling this would call _boom(); the decoder must never get that far."""

    def __reduce__(self):
        return (_boom, ())


_UNPICKLED: list[bool] = []


def _boom():
    _UNPICKLED.append(True)
    return 0


def test_npy_object_array_is_never_unpickled():
    body = npy(np.array([_Boom(), 1], dtype=object), allow_pickle=True)
    msg = fails(400, body, "application/x-npy")
    assert "pickled data" in msg and "never loaded" in msg
    assert _UNPICKLED == []


def test_npy_malformed_and_npz():
    assert fails(400, b"not an npy file", "application/x-npy").startswith("could not load application/x-npy")
    assert fails(400, npy(np.ones((2, 2)))[:-5], "application/x-npy").startswith(
        "could not load application/x-npy")
    buf = io.BytesIO()
    np.savez(buf, a=np.ones(2))
    assert ".npz" in fails(400, buf.getvalue(), "application/x-npy")
    assert "single value" in fails(400, npy(np.float64(3.0)), "application/x-npy")


# --------------------------------------------------------------------------- unsupported types

def test_unsupported_content_type_is_415():
    assert fails(415, b"<x/>", "application/xml") == (
        f"Content type application/xml is not supported; use one of {SUPPORTED}")
    assert fails(415, b"x", "application/octet-stream; foo=bar").startswith(
        "Content type application/octet-stream is not supported")


# --------------------------------------------------------------------------------------- accept

@pytest.mark.parametrize("accept,ctype,default,expected", [
    (None, "text/csv", None, "text/csv"),
    ("*/*", "application/json", None, "application/json"),
    ("", "application/jsonlines", None, "application/jsonlines"),
    (None, "text/csv; charset=utf-8", None, "text/csv"),
    (None, None, None, "text/csv"),
    (None, "image/png", None, "application/json"),
    (None, "text/csv", "application/json", "application/json"),
    ("*/*", "text/csv", "application/x-npy", "application/x-npy"),
    ("application/json", "text/csv", "text/csv", "application/json"),
    ("Application/JSON; q=0.9", "text/csv", None, "application/json"),
    ("application/xml, text/csv;q=0.5", "application/json", None, "text/csv"),
    ("application/xml, */*", "application/json", None, "application/json"),
    ("text/*", "application/json", None, "text/csv"),
])
def test_resolve_accept(accept, ctype, default, expected):
    assert codecs.resolve_accept(accept, ctype, default) == expected


def test_unsupported_accept_is_406():
    with pytest.raises(InvocationFailed) as info:
        codecs.resolve_accept("application/xml", "text/csv", None)
    assert info.value.status == 406
    assert str(info.value) == f"Accept type application/xml is not supported; use one of {SUPPORTED}"


# --------------------------------------------------------------------------------------- encode

def test_encode_csv():
    assert codecs.encode(np.array([0, 1, 1]), "text/csv") == b"0\n1\n1\n"
    assert codecs.encode(np.array([0.25, 1e-7]), "text/csv") == b"0.25\n1e-07\n"
    assert codecs.encode(np.array([[0.5, 0.5], [1.0, 0.0]]), "text/csv") == b"0.5,0.5\n1.0,0.0\n"
    assert codecs.encode(np.array(["a,b", "c"]), "text/csv") == b'"a,b"\nc\n'
    assert codecs.encode([1, 2], "text/csv") == b"1\n2\n"
    assert codecs.encode(np.float32(0.5), "text/csv") == b"0.5\n"
    with pytest.raises(TypeError):
        codecs.encode({"a": 1}, "text/csv")


def test_encode_json_and_jsonlines():
    assert json.loads(codecs.encode(np.array([0, 1]), "application/json")) == {"predictions": [0, 1]}
    doc = json.loads(codecs.encode({"p": np.float32(0.5), "l": np.array([1])}, "application/json"))
    assert doc == {"predictions": {"p": 0.5, "l": [1]}}
    assert codecs.encode(np.array([[1, 2], [3, 4]]), "application/jsonlines") == b"[1, 2]\n[3, 4]\n"
    assert codecs.encode(np.array([0.5, 1.5]), "application/jsonlines") == b"0.5\n1.5\n"


def test_encode_npy_round_trip():
    y = np.array([[0.1, 0.9]], dtype=np.float32)
    back = np.load(io.BytesIO(codecs.encode(y, "application/x-npy")), allow_pickle=False)
    assert back.dtype == np.float32 and np.array_equal(back, y)


def test_text_charset():
    assert codecs.text_charset("text/csv") == "utf-8"
    assert codecs.text_charset("application/json; charset=latin-1") == "latin-1"
    assert codecs.text_charset("text/plain") == "utf-8"
    assert codecs.text_charset("application/x-npy") is None
    assert codecs.text_charset(None) is None


def test_large_csv_bodies_parse_like_small_ones():
    """Bodies over 256 KiB go through pyarrow's reader: same numbers, same errors."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20_000, 5))
    body = "\n".join(",".join(f"{v:.6f}" for v in row) for row in X).encode() + b"\n"
    assert len(body) > 256 * 1024
    got = codecs.decode(body, "text/csv")
    np.testing.assert_allclose(got, X, atol=1e-6)
    assert got.dtype == np.float64
    ints = b"".join(b"%d,%d\n" % (i, -i) for i in range(40_000))
    np.testing.assert_array_equal(codecs.decode(ints, "text/csv"), [[i, -i] for i in range(40_000)])
    gaps = b"1,2\n\n" + b"3,4\n" * 40_000 + b"5,\n"
    out = codecs.decode(gaps, "text/csv")
    assert out.shape == (40_002, 2) and np.isnan(out[-1, 1]) and out[0].tolist() == [1, 2]
    with pytest.raises(InvocationFailed) as exc:
        codecs.decode(b"1,2\n" * 40_000 + b"1,x\n", "text/csv")
    assert exc.value.status == 400 and "row 40001" in str(exc.value)
    with pytest.raises(InvocationFailed, match="is not a number"):
        codecs.decode(b'"1","2"\n' * 40_000, "text/csv")
    with pytest.raises(InvocationFailed, match="row 40001: it has 3 columns but the first row has 2"):
        codecs.decode(b"1,2\n" * 40_000 + b"1,2,3\n", "text/csv")
    with pytest.raises(InvocationFailed, match="'NA' is not a number"):  # only an empty field is missing
        codecs.decode(b"1,2\n" * 40_000 + b"1,NA\n", "text/csv")
    blank_first = codecs.decode(b"\n" + b"1,2\n" * 40_000, "text/csv")
    assert blank_first.shape == (40_000, 2)
    # integers in the first blocks and a float later: one float64 table, as on the small path
    mixed = codecs.decode(b"1,2,3\n" * 500_000 + b"1.5,2,3\n", "text/csv")
    assert mixed.shape == (500_001, 3) and mixed[-1].tolist() == [1.5, 2, 3]


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint16, np.uint64])
def test_many_integer_labels_encode_like_a_few(dtype):
    """From 4,096 labels on, pyarrow writes them: byte for byte what str() gives."""
    labels = np.random.default_rng(5).integers(0 if dtype in (np.uint16, np.uint64) else -100, 100,
                                               10_000).astype(dtype)
    if dtype == np.uint64:
        labels[0] = 2**64 - 1  # past int64
    assert codecs.encode(labels, "text/csv") == ("\n".join(map(str, labels.tolist())) + "\n").encode()
