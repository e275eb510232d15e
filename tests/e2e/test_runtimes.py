"""Each runtime end to end: a real server, real instance processes, models trained here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import csv_rows, deploy, make_data, sklearn_model, sklearn_tarball, tarball

pytestmark = pytest.mark.slow

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


def test_sklearn_every_content_type(server, tmp_path: Path) -> None:
    model = sklearn_model("rf")
    url = str(sklearn_tarball(tmp_path / "model.tar.gz", model))
    sm, rt = server.client(), server.client("sagemaker-runtime")
    deploy(sm, "sk-types", url, image=SKLEARN_IMAGE)
    X, _ = make_data(seed=3)
    X = X[:5]
    want = model.predict(X).tolist()

    r = rt.invoke_endpoint(EndpointName="sk-types", ContentType="text/csv", Body=csv_rows(X))
    assert [int(float(v)) for v in r["Body"].read().decode().split()] == want
    assert r["ContentType"].startswith("text/csv")
    assert r["InvokedProductionVariant"] == "primary"

    r = rt.invoke_endpoint(EndpointName="sk-types", ContentType="application/json",
                           Accept="application/json", Body=json.dumps({"instances": X.tolist()}))
    assert json.loads(r["Body"].read())["predictions"] == want

    lines = "\n".join(json.dumps(row) for row in X.tolist())
    r = rt.invoke_endpoint(EndpointName="sk-types", ContentType="application/jsonlines",
                           Accept="application/jsonlines", Body=lines)
    assert [json.loads(x) for x in r["Body"].read().decode().split()] == want

    import io
    buf = io.BytesIO()
    np.save(buf, X)
    r = rt.invoke_endpoint(EndpointName="sk-types", ContentType="application/x-npy",
                           Accept="application/x-npy", Body=buf.getvalue())
    assert np.load(io.BytesIO(r["Body"].read())).tolist() == want


def test_xgboost_csv_one_prediction_per_line(server, tmp_path: Path) -> None:
    import xgboost as xgb
    X, y = make_data(seed=5)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3},
                        xgb.DMatrix(X, label=y), num_boost_round=10)
    booster.save_model(str(tmp_path / "xgboost-model.json"))
    raw = (tmp_path / "xgboost-model.json").read_bytes()
    url = str(tarball(tmp_path / "model.tar.gz", {"xgboost-model": raw}))
    sm, rt = server.client(), server.client("sagemaker-runtime")
    deploy(sm, "xgb", url, image=XGBOOST_IMAGE)
    rows = X[:7]
    r = rt.invoke_endpoint(EndpointName="xgb", ContentType="text/csv", Body=csv_rows(rows))
    lines = r["Body"].read().decode().strip().split("\n")
    assert len(lines) == 7
    want = booster.predict(xgb.DMatrix(rows))
    np.testing.assert_allclose([float(v) for v in lines], want, rtol=1e-5)


HANDLER = b'''
import json, os, joblib

def model_fn(model_dir):
    return {"model": joblib.load(os.path.join(model_dir, "model.joblib")), "scale": 1}

def input_fn(body, content_type):
    assert content_type == "application/json", content_type
    return json.loads(body)["rows"]

def predict_fn(data, model):
    return model["model"].predict_proba(data)[:, 1]

def output_fn(prediction, accept):
    return json.dumps({"p": [round(float(p), 6) for p in prediction]}), "application/json"
'''


def test_handler_convention(server, tmp_path: Path) -> None:
    model = sklearn_model("lr")
    url = str(sklearn_tarball(tmp_path / "model.tar.gz", model, {"code/inference.py": HANDLER}))
    sm, rt = server.client(), server.client("sagemaker-runtime")
    deploy(sm, "handler", url, image="moorage/python")
    X, _ = make_data(seed=4)
    r = rt.invoke_endpoint(EndpointName="handler", ContentType="application/json",
                           Body=json.dumps({"rows": X[:3].tolist()}))
    got = json.loads(r["Body"].read())["p"]
    np.testing.assert_allclose(got, model.predict_proba(X[:3])[:, 1], atol=1e-5)


BYOS = '''#!{python}
"""A bring-your-own server: SageMaker's container contract on SAGEMAKER_BIND_TO_PORT."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def _send(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self._send(200 if self.path == "/ping" else 404, b"")
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if body == b"fail":
            return self._send(500, b"the model broke")
        attrs = self.headers.get("X-Amzn-SageMaker-Custom-Attributes", "")
        self._send(200, body.upper(), "text/plain",
                   [("X-Amzn-SageMaker-Custom-Attributes", "seen=" + attrs)])

ThreadingHTTPServer(("127.0.0.1", int(os.environ["SAGEMAKER_BIND_TO_PORT"])), H).serve_forever()
'''


def test_bring_your_own_server(server, tmp_path: Path) -> None:
    url = str(tarball(tmp_path / "model.tar.gz",
                      {"serve": BYOS.format(python=sys.executable).encode()}))
    sm, rt = server.client(), server.client("sagemaker-runtime")
    deploy(sm, "byos", url, image="command:serve")
    r = rt.invoke_endpoint(EndpointName="byos", ContentType="text/plain", Body=b"hello",
                           CustomAttributes="trace=42")
    assert r["Body"].read() == b"HELLO"
    assert r["CustomAttributes"] == "seen=trace=42"
    with pytest.raises(rt.exceptions.ModelError) as exc:
        rt.invoke_endpoint(EndpointName="byos", ContentType="text/plain", Body=b"fail")
    err = exc.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert err["OriginalStatusCode"] == 500
    assert err["OriginalMessage"] == "the model broke"
