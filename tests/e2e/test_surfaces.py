"""Every public surface end to end against a real server: the native REST API, the CLI as a
user runs it, ``moorage demo``, the metrics API and Prometheus text, and s3:// model data
from a real (moto) S3 server."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.helpers import (ADMIN_ENV, ADMIN_KEY, ADMIN_SECRET, REPO, ServerProcess, csv_rows,
                           deploy, free_port, make_data, sklearn_model, sklearn_tarball, wait_status)
from tests.s3server import s3_server  # noqa: F401  (registers the session fixture here)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lr(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    """A logistic regression and its model.tar.gz."""
    model = sklearn_model("lr")
    return model, str(sklearn_tarball(tmp_path_factory.mktemp("surf") / "model.tar.gz", model))


def _predict(model: Any, X: Any) -> list[int]:
    return [int(v) for v in model.predict(X)]


def _parse_predictions(text: str) -> list[int]:
    return [int(float(v)) for v in text.split()]


# --- 1. the native REST API ---------------------------------------------------------------

def _poll(http: httpx.Client, name: str, done: Callable[[dict[str, Any]], bool],
          timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = http.get(f"/api/endpoints/{name}")
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["EndpointStatus"] != "Failed", d.get("FailureReason")
        if done(d):
            return d
        if time.monotonic() > deadline:
            raise AssertionError(f"endpoint {name} never got there: {d}")
        time.sleep(0.2)


def _gone(http: httpx.Client, path: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = http.get(path)
        if r.status_code == 400:
            return r.json()
        assert r.status_code == 200, r.text
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} still exists: {r.text}")
        time.sleep(0.2)


def _validation_error(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["__type"] == "ValidationException", doc
    assert isinstance(doc["message"], str) and doc["message"]
    return doc["message"]


def test_native_rest_lifecycle(server, lr: tuple[Any, str]) -> None:
    model, url = lr
    X, _ = make_data(seed=11)
    with server.http() as http:
        for name in ("surf-rest", "surf-rest-2"):
            r = http.post("/api/models", json={"ModelName": name, "PrimaryContainer": {
                "Image": "moorage/sklearn", "ModelDataUrl": url}})
            assert r.status_code == 201, r.text
            assert r.json() == {"ModelArn": f"arn:aws:sagemaker:us-east-1:000000000000:model/{name}"}

        d = http.get("/api/models/surf-rest").json()
        assert d["ModelName"] == "surf-rest"
        assert d["PrimaryContainer"] == {"Image": "moorage/sklearn", "ModelDataUrl": url}

        # one model per page, NextToken to the next page, until there is none
        seen: list[str] = []
        params: dict[str, Any] = {"MaxResults": 1, "NameContains": "surf-rest"}
        for _ in range(5):
            page = http.get("/api/models", params=params)
            assert page.status_code == 200, page.text
            doc = page.json()
            assert len(doc["Models"]) <= 1
            seen += [m["ModelName"] for m in doc["Models"]]
            if "NextToken" not in doc:
                break
            params["NextToken"] = doc["NextToken"]
        assert sorted(seen) == ["surf-rest", "surf-rest-2"]
        first = http.get("/api/models", params={"MaxResults": 1, "NameContains": "surf-rest"}).json()
        assert len(first["Models"]) == 1 and first["NextToken"]

        for config, variant, model_name in (("surf-rest-a", "blue", "surf-rest"),
                                            ("surf-rest-b", "green", "surf-rest-2")):
            r = http.post("/api/endpoint-configs", json={
                "EndpointConfigName": config, "ProductionVariants": [
                    {"VariantName": variant, "ModelName": model_name, "InstanceType": "ml.m5.large",
                     "InitialInstanceCount": 1}]})
            assert r.status_code == 201, r.text
            assert r.json()["EndpointConfigArn"].endswith(f":endpoint-config/{config}")
        assert http.get("/api/endpoint-configs/surf-rest-a").json()["ProductionVariants"][0][
            "VariantName"] == "blue"

        r = http.post("/api/endpoints", json={"EndpointName": "surf-rest",
                                              "EndpointConfigName": "surf-rest-a"})
        assert r.status_code == 201, r.text
        assert r.json() == {"EndpointArn": "arn:aws:sagemaker:us-east-1:000000000000:endpoint/surf-rest"}
        _poll(http, "surf-rest", lambda d: d["EndpointStatus"] == "InService")
        names = [e["EndpointName"] for e in http.get("/api/endpoints").json()["Endpoints"]]
        assert "surf-rest" in names
        r = http.post("/endpoints/surf-rest/invocations", content=csv_rows(X[:4]),
                      headers={"Content-Type": "text/csv"})
        assert r.status_code == 200, r.text
        assert r.headers["x-amzn-invoked-production-variant"] == "blue"
        assert _parse_predictions(r.text) == _predict(model, X[:4])

        # UpdateEndpoint: blue/green to the second config
        r = http.put("/api/endpoints/surf-rest", json={"EndpointConfigName": "surf-rest-b"})
        assert r.status_code == 200, r.text
        assert r.json()["EndpointArn"].endswith(":endpoint/surf-rest")
        d = _poll(http, "surf-rest", lambda d: d["EndpointStatus"] == "InService"
                  and d["EndpointConfigName"] == "surf-rest-b")
        assert [v["VariantName"] for v in d["ProductionVariants"]] == ["green"]
        r = http.post("/endpoints/surf-rest/invocations", content=csv_rows(X[:4]),
                      headers={"Content-Type": "text/csv"})
        assert r.headers["x-amzn-invoked-production-variant"] == "green"

        r = http.post("/api/endpoints/surf-rest/weights-and-capacities", json={
            "DesiredWeightsAndCapacities": [{"VariantName": "green", "DesiredInstanceCount": 2}]})
        assert r.status_code == 200, r.text
        d = _poll(http, "surf-rest", lambda d: d["EndpointStatus"] == "InService"
                  and d["ProductionVariants"][0]["CurrentInstanceCount"] == 2)
        assert d["ProductionVariants"][0]["DesiredInstanceCount"] == 2
        instances = http.get("/api/endpoints/surf-rest/instances").json()["Instances"]
        assert [i["State"] for i in instances] == ["Ready", "Ready"]

        # delete everything; each is gone afterwards
        assert http.delete("/api/endpoints/surf-rest").status_code == 200
        assert "Could not find endpoint" in _gone(http, "/api/endpoints/surf-rest")["message"]
        for config in ("surf-rest-a", "surf-rest-b"):
            assert http.delete(f"/api/endpoint-configs/{config}").status_code == 200
            _gone(http, f"/api/endpoint-configs/{config}")
        for name in ("surf-rest", "surf-rest-2"):
            assert http.delete(f"/api/models/{name}").status_code == 200
            assert "Could not find model" in _gone(http, f"/api/models/{name}")["message"]


def test_native_rest_bad_bodies(server) -> None:
    with server.http() as http:
        def post(body: bytes) -> str:
            return _validation_error(http.post("/api/models", content=body,
                                               headers={"Content-Type": "application/json"}))

        assert "not valid JSON" in post(b"{not json")
        assert "JSON object" in post(b'[{"ModelName": "surf-list"}]')
        message = post(json.dumps({"ModelName": "surf-bogus", "Bogus": 1, "PrimaryContainer": {
            "Image": "moorage/sklearn"}}).encode())
        assert "Bogus" in message
        assert "Member is not defined" in message
        # nothing was created by any of them
        assert http.get("/api/models", params={"NameContains": "surf-bogus"}).json()["Models"] == []
        # a PUT body is checked the same way
        assert "JSON object" in _validation_error(http.put("/api/endpoints/surf-none", content=b"1",
                                                           headers={"Content-Type": "application/json"}))


def test_openapi_and_docs(server) -> None:
    from openapi_spec_validator import validate

    with server.http() as http:
        r = http.get("/openapi.json")
        assert r.status_code == 200
        doc = r.json()
        validate(doc)
        assert doc["openapi"].startswith("3.")
        assert {"get", "post"} <= set(doc["paths"]["/api/models"])
        assert doc["paths"]["/api/models"]["post"]["operationId"] == "CreateModel"
        assert "put" in doc["paths"]["/api/endpoints/{EndpointName}"]
        assert "/api/endpoints/{EndpointName}/weights-and-capacities" in doc["paths"]
        r = http.get("/docs")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert r.text.lstrip().lower().startswith("<!doctype html")
        assert "/openapi.json" in r.text


# --- 2. the CLI ------------------------------------------------------------------------

def _cli_env(home: Path) -> dict[str, str]:
    """The user's environment without any AWS settings, and a HOME without ~/.aws."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOORAGE_"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), AWS_EC2_METADATA_DISABLED="true")
    return env


class Cli:
    def __init__(self, server: ServerProcess, home: Path, credentials: Path) -> None:
        self.server, self.env, self.credentials = server, _cli_env(home), credentials

    def __call__(self, *args: str, credentials: Path | None = None,
                 ok: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "moorage", "--credentials-file",
               str(credentials or self.credentials), *args, "--url", self.server.url]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if ok:
            assert proc.returncode == 0, f"{args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args).stdout)


def _credentials(path: Path, key: str, secret: str) -> Path:
    path.write_text(f"[moorage]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")
    return path


def test_cli_as_a_user_runs_it(server, lr: tuple[Any, str], tmp_path: Path) -> None:
    model, url = lr
    cli = Cli(server, tmp_path, _credentials(tmp_path / "credentials", ADMIN_KEY, ADMIN_SECRET))
    X, _ = make_data(seed=12)

    d = cli.json("deploy", "cli-surf", "--model-data", url)
    assert d["EndpointName"] == "cli-surf" and d["EndpointStatus"] == "InService"

    row = ",".join(f"{v:.6f}" for v in X[0])
    proc = cli("invoke", "cli-surf", "--body", row)
    assert _parse_predictions(proc.stdout) == _predict(model, X[:1])
    assert "variant: primary" in proc.stderr

    assert "cli-surf" in [e["EndpointName"] for e in cli.json("endpoints", "list")]
    d = cli.json("endpoints", "describe", "cli-surf")
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "cli-surf"

    d = cli.json("endpoints", "set-weights", "cli-surf", "--variant", "primary=1:2")
    assert d["ProductionVariants"][0]["DesiredInstanceCount"] == 2
    d = cli.json("endpoints", "describe", "cli-surf")
    [variant] = d["ProductionVariants"]
    assert (variant["DesiredInstanceCount"], variant["CurrentInstanceCount"]) == (2, 2)
    assert d["EndpointStatus"] == "InService"

    points = cli.json("endpoints", "metrics", "cli-surf", "--metric", "Invocations")
    assert points["Label"] == "Invocations"
    assert sum(p["Sum"] for p in points["Datapoints"]) == 1

    key = cli.json("keys", "create", "--role", "invoke", "--endpoints", "cli-*")
    assert key["Role"] == "invoke" and key["Endpoints"] == "cli-*"
    assert key["AccessKeyId"] and key["SecretAccessKey"]
    invoker = _credentials(tmp_path / "invoker", key["AccessKeyId"], key["SecretAccessKey"])
    proc = cli("invoke", "cli-surf", "--body", row, credentials=invoker)
    assert _parse_predictions(proc.stdout) == _predict(model, X[:1])
    proc = cli("endpoints", "list", credentials=invoker, ok=False)  # invoke-only key
    assert proc.returncode == 1 and "AccessDeniedException" in proc.stderr

    listed = {k["AccessKeyId"]: k for k in cli.json("keys", "list")}
    assert listed[key["AccessKeyId"]]["Status"] == "Active"
    assert listed[ADMIN_KEY]["Role"] == "admin"
    assert "SecretAccessKey" not in listed[key["AccessKeyId"]]
    cli("keys", "revoke", key["AccessKeyId"])
    listed = {k["AccessKeyId"]: k for k in cli.json("keys", "list")}
    assert listed[key["AccessKeyId"]]["Status"] == "Revoked"
    proc = cli("invoke", "cli-surf", "--body", row, credentials=invoker, ok=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "UnrecognizedClientException" in proc.stderr, proc.stderr  # a 403: the key is gone

    proc = cli("endpoints", "describe", "cli-no-such-endpoint", ok=False)
    assert proc.returncode == 1
    assert "ValidationException" in proc.stderr and "Could not find endpoint" in proc.stderr

    cli("endpoints", "delete", "cli-surf")
    deadline = time.monotonic() + 30  # DeleteEndpoint is asynchronous: Deleting, then gone
    while (proc := cli("endpoints", "describe", "cli-surf", ok=False)).returncode == 0:
        assert json.loads(proc.stdout)["EndpointStatus"] == "Deleting", proc.stdout
        assert time.monotonic() < deadline, "cli-surf was never deleted"
        time.sleep(0.2)
    assert proc.returncode == 1 and "ValidationException" in proc.stderr, proc.stderr


def test_cli_prints_server_errors_verbatim(server, tmp_path: Path) -> None:
    cli = Cli(server, tmp_path, _credentials(tmp_path / "credentials", ADMIN_KEY, ADMIN_SECRET))
    proc = cli("endpoints", "describe", "bad_name!", ok=False)
    assert proc.returncode == 1
    text = " ".join(proc.stderr.split())  # however the console wraps it
    assert "ValidationException" in text
    assert "pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}" in text, proc.stderr
    proc = cli("models", "create", "cli-brackets", "--model-data", "/tmp/[/x]/model.tar.gz", ok=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "MarkupError" not in proc.stderr, proc.stderr
    text = " ".join(proc.stderr.split())
    assert "Could not access model data at /tmp/[/x]/model.tar.gz" in text, proc.stderr


def test_cli_without_credentials_is_refused(server, tmp_path: Path) -> None:
    empty = tmp_path / "empty-credentials"
    empty.write_text("")
    cli = Cli(server, tmp_path, empty)
    assert not (tmp_path / ".aws").exists()
    proc = cli("endpoints", "list", ok=False)
    assert proc.returncode == 1, proc.stdout
    # the 403 AWS answers to an unsigned request
    assert "MissingAuthenticationTokenException" in proc.stderr, proc.stderr
    with server.http(signed=False) as http:
        assert http.get("/api/endpoints").status_code == 403


# --- 3. moorage demo -------------------------------------------------------------------

def test_demo(tmp_path: Path) -> None:
    port = free_port()
    env = _cli_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "moorage", "demo", "--port", str(port),
                           "--data-dir", str(tmp_path / "demo-data"), "--invocations", "6"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    rows = re.findall(r"row (\d+): prediction (\S+) \(true (\d+)\) from variant (\S+)", out)
    assert [int(r[0]) for r in rows] == list(range(6)), out
    assert all(float(r[1]) in (0.0, 1.0) for r in rows), out
    assert all(r[3] in ("lr", "rf") for r in rows), out
    m = re.search(r"variants that answered: (\{.*\})", out)
    assert m, out
    answered = ast.literal_eval(m.group(1))
    assert set(answered) <= {"lr", "rf"} and sum(answered.values()) == 6, answered
    assert answered == {v: sum(r[3] == v for r in rows) for v in answered}
    assert "done; endpoint deleted" in out
    assert (tmp_path / "demo-data" / "moorage.db").exists()  # the data dir it was given
    with pytest.raises(httpx.HTTPError):  # and its server is gone
        httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1)


# --- 4. metrics ------------------------------------------------------------------------

def _points(http: httpx.Client, name: str, metric: str) -> list[dict[str, Any]]:
    r = http.get(f"/api/endpoints/{name}/metrics", params={"MetricName": metric})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["Label"] == metric
    return doc["Datapoints"]


def _total(points: list[dict[str, Any]], stat: str) -> float:
    return sum(p[stat] for p in points)


def test_metrics_count_known_invocations(server, lr: tuple[Any, str]) -> None:
    _, url = lr
    deploy(server.client(), "surf-metrics", url)
    good, bad = csv_rows(make_data(seed=13)[0][:2]), b"1,2,abc\n"
    n, failing = 25, 5
    with server.http() as http:
        statuses = []
        for i in range(n):
            r = http.post("/endpoints/surf-metrics/invocations", content=bad if i % 5 == 0 else good,
                          headers={"Content-Type": "text/csv"})
            statuses.append(r.status_code)
        assert statuses.count(424) == failing and statuses.count(200) == n - failing, statuses

        points = _points(http, "surf-metrics", "Invocations")
        assert points and _total(points, "Sum") == n
        assert all(p["Unit"] == "None" for p in points)
        errors = _points(http, "surf-metrics", "Invocation4XXErrors")
        assert _total(errors, "Sum") == failing
        assert _total(errors, "SampleCount") == n
        assert _total(_points(http, "surf-metrics", "Invocation5XXErrors"), "Sum") == 0
        latency = _points(http, "surf-metrics", "ModelLatency")
        assert _total(latency, "SampleCount") == n
        assert _total(latency, "Sum") / n > 0 and all(p["Average"] > 0 for p in latency)
        assert all(p["Unit"] == "Microseconds" for p in latency)
        overhead = _points(http, "surf-metrics", "OverheadLatency")
        assert overhead and _total(overhead, "SampleCount") == n
        per_instance = _points(http, "surf-metrics", "InvocationsPerInstance")
        assert per_instance and _total(per_instance, "Sum") == pytest.approx(n)  # one instance

        message = _validation_error(http.get("/api/endpoints/surf-metrics/metrics",
                                             params={"MetricName": "NoSuchMetric"}))
        assert "NoSuchMetric" in message
        _validation_error(http.get("/api/endpoints/surf-metrics/metrics"))  # MetricName missing

        r = http.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        lines = set(r.text.splitlines())
        labels = '{endpoint="surf-metrics",variant="primary"}'
        assert f"moorage_invocations_total{labels} {n}" in lines
        assert f"moorage_invocation_4xx_errors_total{labels} {failing}" in lines
        assert f"moorage_invocation_5xx_errors_total{labels} 0" in lines
        assert f"moorage_model_latency_seconds_count{labels} {n}" in lines
        assert f"moorage_instances{labels} 1" in lines
        assert "# TYPE moorage_invocations_total counter" in lines
    with server.http(signed=False) as http:
        assert http.get("/metrics").status_code == 403


# --- 5. s3:// model data ---------------------------------------------------------------

def test_s3_model_data(s3_server, lr: tuple[Any, str], tmp_path: Path) -> None:  # noqa: F811
    model, url = lr
    s3 = s3_server.client()
    s3.create_bucket(Bucket="moorage-surfaces")
    s3.put_object(Bucket="moorage-surfaces", Key="models/lr/model.tar.gz", Body=Path(url).read_bytes())
    srv = ServerProcess(tmp_path / "data", env={**ADMIN_ENV, **s3_server.env}).start()
    try:
        sm, rt = srv.client(), srv.client("sagemaker-runtime")
        deploy(sm, "s3-lr", "s3://moorage-surfaces/models/lr/model.tar.gz")
        X, _ = make_data(seed=14)
        r = rt.invoke_endpoint(EndpointName="s3-lr", ContentType="text/csv", Body=csv_rows(X[:6]))
        assert _parse_predictions(r["Body"].read().decode()) == _predict(model, X[:6])
        assert sm.describe_model(ModelName="s3-lr")["PrimaryContainer"]["ModelDataUrl"] == \
            "s3://moorage-surfaces/models/lr/model.tar.gz"

        with pytest.raises(ClientError) as exc:
            sm.create_model(ModelName="s3-missing", PrimaryContainer={
                "Image": "moorage/sklearn", "ModelDataUrl": "s3://moorage-surfaces/models/nope/model.tar.gz"})
        assert exc.value.response["Error"]["Code"] == "ValidationException"
        assert "Could not access model data" in str(exc.value)
        wait_status(sm, "s3-lr")  # the failed create left the running endpoint alone
    finally:
        srv.stop()
