"""invoke_file: the body read from a file, the response written to one; streaming hooks."""

from __future__ import annotations

import json

import joblib
import pytest

from moorage.runtime.base import InvocationFailed, load_runtime


@pytest.fixture
def model_dir(tmp_path, lr):
    joblib.dump(lr, tmp_path / "model.joblib")
    return tmp_path


def test_default_hooks_read_and_write_files(model_dir, tmp_path, data, lr):
    rt = load_runtime("sklearn", model_dir, {})
    X = data[0][:4]
    src, dst = tmp_path / "in.csv", tmp_path / "out"
    src.write_text("\n".join(",".join(str(v) for v in row) for row in X))
    assert rt.invoke_file(str(src), str(dst), "text/csv", "application/json") == "application/json"
    assert json.loads(dst.read_text()) == {"predictions": lr.predict(X).tolist()}


def test_a_file_annotated_input_fn_reads_a_stream_and_output_may_be_chunks(model_dir, write_code, tmp_path):
    write_code("inference.py", '''
        from typing import IO

        SEEN = []

        def input_fn(body: IO[bytes], content_type):
            SEEN.append(type(body).__name__)
            return body

        def predict_fn(stream, model):
            return (line.upper() for line in stream)

        def output_fn(lines, accept):
            return lines, "text/plain"
    ''')
    rt = load_runtime("sklearn", model_dir, {})
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_bytes(b"a\nbc\n" * 1000)
    assert rt.invoke_file(str(src), str(dst), "text/plain", None) == "text/plain"
    assert dst.read_bytes() == b"A\nBC\n" * 1000
    # real-time requests reach the same hook as an in-memory file
    body, ctype = rt.invoke(b"x\ny\n", "text/plain", None)
    assert (body, ctype) == (b"X\nY\n", "text/plain")
    import inference
    assert inference.SEEN == ["BufferedReader", "BytesIO"]


def test_unannotated_input_fn_gets_bytes_from_the_file(model_dir, write_code, tmp_path):
    write_code("inference.py", '''
        def input_fn(body, content_type):
            assert isinstance(body, str)
            return [[float(v) for v in body.split(",")]]

        def output_fn(prediction, accept):
            return str(int(prediction[0]))
    ''')
    rt = load_runtime("sklearn", model_dir, {})
    src, dst = tmp_path / "in.csv", tmp_path / "out"
    src.write_text("1,2,3,4,5,6")
    rt.invoke_file(str(src), str(dst), "text/csv", "text/plain")
    assert dst.read_text() in ("0", "1")


def test_bad_chunks_and_bad_bodies_raise(model_dir, write_code, tmp_path):
    write_code("inference.py", '''
        def output_fn(prediction, accept):
            return iter([b"ok", 42])
    ''')
    rt = load_runtime("sklearn", model_dir, {})
    src, dst = tmp_path / "in.csv", tmp_path / "out"
    src.write_text("1,2,3,4,5,6")
    with pytest.raises(TypeError, match="yielded int"):
        rt.invoke_file(str(src), str(dst), "text/csv", "text/plain")
    src.write_text("not,a,number")
    with pytest.raises(InvocationFailed):
        rt.invoke_file(str(src), str(dst), "text/csv", "text/plain")
