"""The scikit-learn runtime with its default hooks: every content type in, every accept out."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from moorage.runtime.base import InvocationFailed, ModelLoadError, load_runtime


def csv_body(X: np.ndarray) -> bytes:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in X).encode()


def npy_body(X: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, X)
    return buf.getvalue()


def bodies(X: np.ndarray) -> dict[str, bytes]:
    return {
        "text/csv": csv_body(X),
        "application/json": json.dumps({"instances": X.tolist()}).encode(),
        "application/jsonlines": "".join(json.dumps(r) + "\n" for r in X.tolist()).encode(),
        "application/x-npy": npy_body(X),
    }


def parse(body: bytes, ctype: str) -> list:
    if ctype == "text/csv":
        return [float(v) for v in body.decode().split()]
    if ctype == "application/json":
        return json.loads(body)["predictions"]
    if ctype == "application/jsonlines":
        return [json.loads(line) for line in body.decode().splitlines()]
    return np.load(io.BytesIO(body), allow_pickle=False).tolist()


def deploy(tmp_path: Path, model, name: str = "model.joblib") -> Path:
    joblib.dump(model, tmp_path / name)
    return tmp_path


ACCEPTS = ["text/csv", "application/json", "application/jsonlines", "application/x-npy"]


@pytest.mark.parametrize("which", ["lr", "rf"])
@pytest.mark.parametrize("ctype", ACCEPTS)
@pytest.mark.parametrize("accept", ACCEPTS)
def test_predictions_equal_local(request, tmp_path, data, which, ctype, accept):
    model = request.getfixturevalue(which)
    rt = load_runtime("sklearn", deploy(tmp_path, model), {})
    X = data[0][:7]
    body, out_type = rt.invoke(bodies(X)[ctype], ctype, accept)
    assert out_type == accept
    assert parse(body, accept) == model.predict(X).tolist()


def test_one_row_csv_in_csv_out_exact_bytes(tmp_path, data, lr):
    rt = load_runtime("sklearn", deploy(tmp_path, lr), {})
    X = data[0][:1]
    assert rt.invoke(csv_body(X), "text/csv", None) == (f"{lr.predict(X)[0]}\n".encode(), "text/csv")
    assert rt.invoke(csv_body(X), "text/csv", "*/*")[1] == "text/csv"


def test_default_accept_env(tmp_path, data, lr):
    rt = load_runtime("sklearn", deploy(tmp_path, lr),
                      {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json"})
    X = data[0][:2]
    body, ctype = rt.invoke(csv_body(X), "text/csv", None)
    assert ctype == "application/json"
    assert json.loads(body) == {"predictions": lr.predict(X).tolist()}
    assert rt.invoke(csv_body(X), "text/csv", "text/csv")[1] == "text/csv"


def test_bad_default_accept_env_fails_at_load(tmp_path, lr):
    with pytest.raises(ModelLoadError, match="SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT='text/xml'"):
        load_runtime("sklearn", deploy(tmp_path, lr), {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/xml"})


def invoke_fails(rt, body: bytes, ctype, accept=None) -> InvocationFailed:
    with pytest.raises(InvocationFailed) as info:
        rt.invoke(body, ctype, accept)
    return info.value


def test_request_errors_have_exact_statuses(tmp_path, lr):
    rt = load_runtime("sklearn", deploy(tmp_path, lr), {})
    six = b"1,2,3,4,5,6\n"
    err = invoke_fails(rt, six + b"1,2,3,x,5,6\n", "text/csv")
    assert (err.status, str(err)) == (400, "could not parse text/csv row 2, column 4: 'x' is not a number")
    err = invoke_fails(rt, six + b"1,2,3\n", "text/csv")
    assert err.status == 400 and str(err).startswith("could not parse text/csv row 2: it has 3 columns")
    err = invoke_fails(rt, b"<a/>", "application/xml")
    assert err.status == 415 and str(err).startswith("Content type application/xml is not supported")
    err = invoke_fails(rt, six, "text/csv", "application/xml")
    assert err.status == 406 and str(err).startswith("Accept type application/xml is not supported")
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    err = invoke_fails(rt, buf.getvalue(), "application/x-npy")
    assert err.status == 400 and "pickled data" in str(err)


def test_model_failure_is_not_an_invocation_failure(tmp_path, lr):
    """Wrong feature count: sklearn raises; the instance answers 500 (as SageMaker's container)."""
    rt = load_runtime("sklearn", deploy(tmp_path, lr), {})
    with pytest.raises(ValueError, match="features"):
        rt.invoke(b"1,2,3\n", "text/csv", None)


@pytest.mark.parametrize("names,chosen", [
    (["model.joblib", "other.pkl"], "model.joblib"),
    (["clf.pkl"], "clf.pkl"),
    (["clf.pickle", "notes.txt"], "clf.pickle"),
    (["model"], "model"),
])
def test_model_file_discovery(tmp_path, data, lr, rf, names, chosen):
    for name in names:
        if name.endswith(".txt"):
            (tmp_path / name).write_text("hello")
        else:
            joblib.dump(lr if name == chosen else rf, tmp_path / name)
    rt = load_runtime("sklearn", tmp_path, {})
    X = data[0][:20]
    assert np.array_equal(rt.model.predict(X), lr.predict(X))


def test_plain_pickle_loads(tmp_path, data, lr):
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(lr))
    rt = load_runtime("sklearn", tmp_path, {})
    assert type(rt.model).__name__ == "LogisticRegression"


def test_no_model_file(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(ModelLoadError, match=r"No scikit-learn model file in .*expected one \*\.joblib"):
        load_runtime("sklearn", tmp_path, {})


def test_ambiguous_model_files(tmp_path, lr):
    joblib.dump(lr, tmp_path / "a.joblib")
    joblib.dump(lr, tmp_path / "b.pkl")
    with pytest.raises(ModelLoadError, match=r"Several candidate model files .*\(a\.joblib, b\.pkl\).*model\.joblib"):
        load_runtime("sklearn", tmp_path, {})


def test_corrupt_model_file(tmp_path):
    (tmp_path / "model.joblib").write_bytes(b"not a joblib file")
    with pytest.raises(ModelLoadError, match="Could not load model.joblib with joblib"):
        load_runtime("sklearn", tmp_path, {})


def test_unknown_kind(tmp_path):
    with pytest.raises(ModelLoadError, match="Unknown runtime kind 'torch'"):
        load_runtime("torch", tmp_path, {})


def test_importing_the_runtime_stays_light():
    """server.py imports base (and the server side imports images) before any model loads."""
    code = ("import sys, moorage.runtime.base, moorage.runtime.images, moorage.runtime.server; "
            "print(sorted(m for m in ('numpy', 'sklearn', 'xgboost', 'joblib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"
