"""Asynchronous inference end to end: boto3's InvokeEndpointAsync against a real server, real
instance processes, local paths and a real S3 (moto's server), webhooks received by a local
HTTP server, and a server killed with SIGKILL under load."""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import ADMIN_ENV, ServerProcess, wait_status
from tests.s3server import s3_server  # noqa: F401  (registers the session fixture here)

pytestmark = pytest.mark.slow

#: One handler for every async test. A request {"x": [...]} answers {"y": [2x...]}; "sleep"
#: slows predict down; "boom" makes it raise. Every predict call appends the request's "id" to
#: the file named by MOORAGE_TEST_CALLS (if set), so a test can count executions.
HANDLER = '''
import json, os, time

def model_fn(model_dir):
    return 2

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    if os.environ.get("MOORAGE_TEST_CALLS"):
        with open(os.environ["MOORAGE_TEST_CALLS"], "a") as f:
            f.write(str(data.get("id", "")) + "\\n")
    if data.get("sleep"):
        time.sleep(data["sleep"])
    if data.get("boom"):
        raise ValueError("boom: " + data["boom"])
    return {"id": data.get("id"), "y": [v * model for v in data.get("x", [])]}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
'''

#: A handler that never holds a payload: input_fn reads the body as a file in 1 MiB chunks,
#: and output_fn streams a result as long as the input (each byte + 1, mod 256), so a test can
#: check both directions byte for byte.
STREAMING = '''
from typing import IO

def model_fn(model_dir):
    return None

def input_fn(body: IO[bytes], content_type):
    return body

def predict_fn(stream, model):
    table = bytes((i + 1) % 256 for i in range(256))
    def chunks():
        while True:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            yield chunk.translate(table)
    return chunks()

def output_fn(chunks, accept):
    return chunks, "application/octet-stream"
'''


def _model_dir(root: Path, code: str) -> Path:
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text(code)
    return root


@pytest.fixture(scope="module")
def handler_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model_dir(tmp_path_factory.mktemp("async-model"), HANDLER)


@pytest.fixture(scope="module")
def streaming_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model_dir(tmp_path_factory.mktemp("async-stream"), STREAMING)


class Receiver:
    """A local webhook: records every JSON POST; answers 500 to the first ``fail_first``."""

    def __init__(self, fail_first: int = 0) -> None:
        self.messages: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.attempts = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.messages.append(json.loads(body))
                receiver.headers.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def make_async(sm: Any, name: str, model_dir: Path, output: str, *, failure: str | None = None,
               per_instance: int = 4, count: int = 1, env: dict[str, str] | None = None,
               notify: dict[str, Any] | None = None, wait: bool = True) -> None:
    container: dict[str, Any] = {"Image": "moorage/python", "ModelDataUrl": str(model_dir)}
    if env:
        container["Environment"] = env
    sm.create_model(ModelName=name, PrimaryContainer=container)
    out: dict[str, Any] = {"S3OutputPath": output}
    if failure:
        out["S3FailurePath"] = failure
    if notify:
        out["NotificationConfig"] = notify
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "main", "ModelName": name, "InstanceType": "ml.m5.large",
                             "InitialInstanceCount": count}],
        AsyncInferenceConfig={"OutputConfig": out,
                              "ClientConfig": {"MaxConcurrentInvocationsPerInstance": per_instance}})
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if wait:
        wait_status(sm, name)


def wait_for(predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def local(url: str) -> Path:
    return Path(url[len("file://"):] if url.startswith("file://") else url)


def status(srv: ServerProcess, endpoint: str, iid: str) -> dict[str, Any]:
    with srv.http() as http:
        r = http.get(f"/api/endpoints/{endpoint}/async-invocations/{iid}")
        assert r.status_code == 200, r.text
        return r.json()


def wait_done(srv: ServerProcess, endpoint: str, iid: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(lambda: (s := status(srv, endpoint, iid))["Status"] in ("Completed", "Failed") and s,
                    timeout, f"request {iid}")


# -- the happy paths -------------------------------------------------------------------------

def test_inline_body_local_output(server: ServerProcess, handler_dir: Path, tmp_path: Path) -> None:
    sm, rt = server.client(), server.client("sagemaker-runtime")
    out = tmp_path / "out"
    make_async(sm, "async-inline", handler_dir, str(out), failure=f"file://{tmp_path}/failed")
    desc = sm.describe_endpoint(EndpointName="async-inline")
    assert desc["AsyncInferenceConfig"] == {
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
        "OutputConfig": {"S3OutputPath": str(out), "S3FailurePath": f"file://{tmp_path}/failed"}}

    r = rt.invoke_endpoint_async(EndpointName="async-inline", ContentType="application/json",
                                 Body=json.dumps({"x": [1, 2.5], "id": "a"}).encode(),
                                 InferenceId="req-1", CustomAttributes="trace=1")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert r["InferenceId"] == "req-1"
    assert r["OutputLocation"] == f"{out}/req-1.out"
    assert r["FailureLocation"] == f"file://{tmp_path}/failed/req-1-error.out"
    done = wait_done(server, "async-inline", "req-1")
    assert done["Status"] == "Completed" and done["InvokedProductionVariant"] == "main"
    assert json.loads(Path(r["OutputLocation"]).read_text()) == {"id": "a", "y": [2, 5.0]}
    assert not local(r["FailureLocation"]).exists()

    # the same InferenceId again is the same request: same locations, not run twice
    again = rt.invoke_endpoint_async(EndpointName="async-inline", ContentType="application/json",
                                     Body=b'{"x": [100]}', InferenceId="req-1")
    assert (again["OutputLocation"], again["FailureLocation"]) == (r["OutputLocation"], r["FailureLocation"])
    time.sleep(0.5)
    assert json.loads(Path(r["OutputLocation"]).read_text()) == {"id": "a", "y": [2, 5.0]}

    # no InferenceId: one is generated; the extension and file name shape the output key
    r = rt.invoke_endpoint_async(EndpointName="async-inline", ContentType="application/json",
                                 Body=b'{"x": [3]}', S3OutputPathExtension="daily/run-7",
                                 Filename="result.json")
    assert len(r["InferenceId"]) == 36
    assert r["OutputLocation"] == f"{out}/daily/run-7/result.json"
    wait_done(server, "async-inline", r["InferenceId"])
    assert json.loads(Path(r["OutputLocation"]).read_text())["y"] == [6]


def test_input_location_local_and_file_url(server: ServerProcess, handler_dir: Path, tmp_path: Path) -> None:
    sm, rt = server.client(), server.client("sagemaker-runtime")
    make_async(sm, "async-local", handler_dir, f"file://{tmp_path}/out")
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps({"x": [4], "id": "p"}))
    ids = []
    for where in (str(inp), f"file://{inp}"):
        r = rt.invoke_endpoint_async(EndpointName="async-local", InputLocation=where,
                                     ContentType="application/json")
        ids.append(r["InferenceId"])
        assert r["OutputLocation"] == f"file://{tmp_path}/out/{r['InferenceId']}.out"
    for iid in ids:
        assert wait_done(server, "async-local", iid)["Status"] == "Completed"
        assert json.loads((tmp_path / "out" / f"{iid}.out").read_text()) == {"id": "p", "y": [8]}


def test_s3_input_and_output(s3_server, handler_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    s3 = s3_server.client()
    s3.create_bucket(Bucket="async-io")
    s3.put_object(Bucket="async-io", Key="inputs/one.json", Body=json.dumps({"x": [7], "id": "s3"}).encode())
    srv = ServerProcess(tmp_path / "data", env={**ADMIN_ENV, **s3_server.env}).start()
    try:
        sm, rt = srv.client(), srv.client("sagemaker-runtime")
        make_async(sm, "async-s3", handler_dir, "s3://async-io/results", failure="s3://async-io/failures")
        r = rt.invoke_endpoint_async(EndpointName="async-s3", InputLocation="s3://async-io/inputs/one.json",
                                     ContentType="application/json", InferenceId="from-s3")
        assert r["OutputLocation"] == "s3://async-io/results/from-s3.out"
        assert r["FailureLocation"] == "s3://async-io/failures/from-s3-error.out"
        assert wait_done(srv, "async-s3", "from-s3")["Status"] == "Completed"
        body = s3.get_object(Bucket="async-io", Key="results/from-s3.out")["Body"].read()
        assert json.loads(body) == {"id": "s3", "y": [14]}

        r = rt.invoke_endpoint_async(EndpointName="async-s3", ContentType="application/json",
                                     Body=b'{"boom": "on s3"}', InferenceId="bad-s3")
        assert wait_done(srv, "async-s3", "bad-s3")["Status"] == "Failed"
        doc = json.loads(s3.get_object(Bucket="async-io", Key="failures/bad-s3-error.out")["Body"].read())
        assert doc["OriginalStatusCode"] == 500 and "boom: on s3" in doc["OriginalMessage"]

        # a missing input object is refused before anything is queued
        with pytest.raises(ClientError) as exc:
            rt.invoke_endpoint_async(EndpointName="async-s3", InputLocation="s3://async-io/inputs/nope.json")
        assert exc.value.response["Error"]["Code"] == "ValidationError"
        assert "s3://async-io/inputs/nope.json" in exc.value.response["Error"]["Message"]
    finally:
        srv.stop()


# -- failures ----------------------------------------------------------------------------------

def test_model_failure_writes_the_error_document(server: ServerProcess, handler_dir: Path,
                                                 tmp_path: Path) -> None:
    sm, rt = server.client(), server.client("sagemaker-runtime")
    make_async(sm, "async-fail", handler_dir, str(tmp_path / "out"), failure=str(tmp_path / "err"))
    r = rt.invoke_endpoint_async(EndpointName="async-fail", ContentType="application/json",
                                 Body=b'{"boom": "bad row 3"}', InferenceId="f1")
    done = wait_done(server, "async-fail", "f1")
    assert done["Status"] == "Failed" and "boom: bad row 3" in done["FailureReason"]
    doc = json.loads(Path(r["FailureLocation"]).read_text())
    assert doc["InferenceId"] == "f1" and doc["OriginalStatusCode"] == 500
    assert "ValueError: boom: bad row 3" in doc["OriginalMessage"]
    assert not Path(r["OutputLocation"]).exists()

    # a body the handler cannot parse, and a timeout, are failures with their reasons too
    rt.invoke_endpoint_async(EndpointName="async-fail", ContentType="application/json",
                             Body=b"not json", InferenceId="f2")
    assert wait_done(server, "async-fail", "f2")["Status"] == "Failed"
    rt.invoke_endpoint_async(EndpointName="async-fail", ContentType="application/json",
                             Body=b'{"sleep": 3}', InferenceId="f3", InvocationTimeoutSeconds=1)
    done = wait_done(server, "async-fail", "f3")
    assert done["Status"] == "Failed" and "InvocationTimeoutSeconds (1 s)" in done["FailureReason"]
    assert "InvocationTimeoutSeconds" in json.loads((tmp_path / "err" / "f3-error.out").read_text())["FailureReason"]
    # the queue goes on after failures
    rt.invoke_endpoint_async(EndpointName="async-fail", ContentType="application/json",
                             Body=b'{"x": [1]}', InferenceId="f4")
    assert wait_done(server, "async-fail", "f4", timeout=30)["Status"] == "Completed"
    # f4 ran after f3 on the one instance, so f3's late result exists there: it was not written
    assert not (tmp_path / "out" / "f3.out").exists()


def test_a_result_near_its_timeout_is_written_once(server: ServerProcess, handler_dir: Path,
                                                   tmp_path: Path) -> None:
    """The instance writes results itself, but not one that ends within a second of its
    InvocationTimeoutSeconds (the server may be failing it): the server writes that one, and it
    is a success. A result that cannot be written fails its request with the reason."""
    sm, rt = server.client(), server.client("sagemaker-runtime")
    make_async(sm, "async-edge", handler_dir, str(tmp_path / "out"), failure=str(tmp_path / "err"))
    r = rt.invoke_endpoint_async(EndpointName="async-edge", ContentType="application/json",
                                 Body=b'{"x": [5], "sleep": 0.2, "id": "near"}', InferenceId="near",
                                 InvocationTimeoutSeconds=1)
    assert wait_done(server, "async-edge", "near")["Status"] == "Completed"
    assert json.loads(Path(r["OutputLocation"]).read_text()) == {"id": "near", "y": [10]}
    assert not (tmp_path / "err").exists()

    (tmp_path / "blocker").write_text("a file where the output folder should be")
    make_async(sm, "async-nowrite", handler_dir, str(tmp_path / "blocker" / "out"),
               failure=str(tmp_path / "err"))
    r = rt.invoke_endpoint_async(EndpointName="async-nowrite", ContentType="application/json",
                                 Body=b'{"x": [1]}', InferenceId="nowhere")
    done = wait_done(server, "async-nowrite", "nowhere")
    assert done["Status"] == "Failed"
    assert done["FailureReason"].startswith(f"Could not write the output to {tmp_path}/blocker/out/nowhere.out")
    assert "Could not write the output" in json.loads((tmp_path / "err" / "nowhere-error.out").read_text())["FailureReason"]


def test_ttl_expired_while_the_server_was_down(fresh_server: ServerProcess, handler_dir: Path,
                                               tmp_path: Path) -> None:
    """A request that waited past its RequestTTLSeconds is not run: it fails with its reason."""
    srv = fresh_server
    sm, rt = srv.client(), srv.client("sagemaker-runtime")
    make_async(sm, "async-ttl", handler_dir, str(tmp_path / "out"), count=1)
    # hold the queue: the only instance is busy for a while with the first request
    rt.invoke_endpoint_async(EndpointName="async-ttl", ContentType="application/json",
                             Body=b'{"sleep": 30}', InferenceId="busy")
    rt.invoke_endpoint_async(EndpointName="async-ttl", ContentType="application/json",
                             Body=b'{"x": [1]}', InferenceId="late", RequestTTLSeconds=60)
    srv.kill9()
    # the server stays down for two minutes: age the stored request instead of waiting
    with sqlite3.connect(srv.data_dir / "moorage.db") as db:
        db.execute("UPDATE async_requests SET created = created - 120 WHERE inference_id = 'late'")
    srv.start()
    done = wait_done(srv, "async-ttl", "late", timeout=90)
    assert done["Status"] == "Failed"
    assert "RequestTTLSeconds (60 s)" in done["FailureReason"]
    doc = json.loads((tmp_path / "out" / "late-error.out").read_text())
    assert "expired" in doc["FailureReason"]
    assert not (tmp_path / "out" / "late.out").exists()


# -- notifications -------------------------------------------------------------------------

def test_webhooks_success_error_retry_and_a_dead_hook(server: ServerProcess, handler_dir: Path,
                                                      tmp_path: Path) -> None:
    ok, flaky = Receiver(), Receiver(fail_first=2)
    try:
        with server.http() as http:
            assert http.put("/api/topics/async-ok", json={"Webhooks": [ok.url]}).status_code == 200
            r = http.put("/api/topics/async-errors",
                         json={"Webhooks": [flaky.url, "http://127.0.0.1:9/nobody-listens"]})
            assert r.status_code == 200
            ok_arn, err_arn = "arn:aws:sns:us-east-1:000000000000:async-ok", r.json()["TopicArn"]
            assert err_arn == "arn:aws:sns:us-east-1:000000000000:async-errors"
        sm, rt = server.client(), server.client("sagemaker-runtime")
        make_async(sm, "async-hooks", handler_dir, str(tmp_path / "out"), notify={
            "SuccessTopic": ok_arn, "ErrorTopic": err_arn,
            "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"]})
        rt.invoke_endpoint_async(EndpointName="async-hooks", ContentType="application/json",
                                 Body=b'{"x": [5]}', InferenceId="h-ok")
        rt.invoke_endpoint_async(EndpointName="async-hooks", ContentType="application/json",
                                 Body=b'{"boom": "x"}', InferenceId="h-bad")
        # the dead hook's retries do not hold up the queue
        rt.invoke_endpoint_async(EndpointName="async-hooks", ContentType="application/json",
                                 Body=b'{"x": [6]}', InferenceId="h-next")
        assert wait_done(server, "async-hooks", "h-next", timeout=20)["Status"] == "Completed"

        wait_for(lambda: len(ok.messages) == 2, 20, "success notifications")
        by_id = {m["inferenceId"]: m for m in ok.messages}
        m = by_id["h-ok"]
        assert m["invocationStatus"] == "Completed" and m["eventSource"] == "aws:sagemaker"
        assert m["requestParameters"] == {"endpointName": "async-hooks", "contentType": "application/json"}
        assert m["responseParameters"] == {"contentType": "application/json",
                                           "outputLocation": f"{tmp_path}/out/h-ok.out"}
        import base64
        assert json.loads(base64.b64decode(m["responseBody"]["content"])) == {"id": None, "y": [10]}
        assert ok.headers[0]["x-amz-sns-topic-arn"] == ok_arn

        wait_for(lambda: flaky.messages, 30, "the error notification after retries")
        assert flaky.attempts == 3  # two 500s, then delivered
        m = flaky.messages[0]
        assert m["invocationStatus"] == "Failed" and m["inferenceId"] == "h-bad"
        assert "boom: x" in m["failureReason"]
        assert m["responseParameters"] == {"failureLocation": f"{tmp_path}/out/h-bad-error.out"}
        assert "responseBody" not in m
    finally:
        ok.close()
        flaky.close()


# -- durability -----------------------------------------------------------------------------

N = 200


@pytest.mark.parametrize("where", ["s3", "local"])
def test_kill9_with_requests_queued_and_in_flight(s3_server, handler_dir: Path,  # noqa: F811
                                                  tmp_path: Path, where: str) -> None:
    """SIGKILL the server with N requests accepted; after a restart every one completes, each
    output written exactly once. On S3, versioning would keep a second write as a second
    version; locally the instances write the outputs themselves (and die with the server), and
    nothing but the outputs may be left in the folder."""
    s3 = s3_server.client()
    if where == "s3":
        s3.create_bucket(Bucket="async-durable")
        s3.put_bucket_versioning(Bucket="async-durable", VersioningConfiguration={"Status": "Enabled"})
    out = tmp_path / "out"

    def outputs() -> dict[str, int]:
        if where == "s3":
            return _versions(s3)
        return {f"out/{p.name}": 1 for p in out.iterdir()} if out.exists() else {}

    def output(key: str) -> bytes:
        if where == "s3":
            return s3.get_object(Bucket="async-durable", Key=key)["Body"].read()
        return (tmp_path / key).read_bytes()

    calls = tmp_path / "calls.log"
    srv = ServerProcess(tmp_path / "data", env={**ADMIN_ENV, **s3_server.env}).start()
    try:
        sm, rt = srv.client(), srv.client("sagemaker-runtime")
        make_async(sm, "async-durable", handler_dir, "s3://async-durable/out" if where == "s3" else str(out),
                   per_instance=4, count=2, env={"MOORAGE_TEST_CALLS": str(calls)})
        for i in range(N):
            rt.invoke_endpoint_async(EndpointName="async-durable", ContentType="application/json",
                                     Body=json.dumps({"x": [i], "id": i, "sleep": 0.02}).encode(),
                                     InferenceId=f"r{i:03d}")
        wait_for(lambda: calls.exists() and len(calls.read_text().split()) >= 20, 60, "some progress")
        srv.kill9()
        done_before = len(outputs())
        assert done_before < N, "everything finished before the kill; the test proves nothing"
        srv.start()
        wait_for(lambda: len(outputs()) >= N, 120, "all outputs")
        time.sleep(1)
        versions = outputs()
        assert sorted(versions) == [f"out/r{i:03d}.out" for i in range(N)]
        assert all(n == 1 for n in versions.values()), {k: n for k, n in versions.items() if n > 1}
        for i in (0, N // 2, N - 1):
            assert json.loads(output(f"out/r{i:03d}.out")) == {"id": i, "y": [2 * i]}
        statuses = {status(srv, "async-durable", f"r{i:03d}")["Status"] for i in range(0, N, 10)}
        assert statuses == {"Completed"}
        executed = calls.read_text().split()
        assert set(executed) == {str(i) for i in range(N)}  # at least once each
    finally:
        srv.stop()


def _versions(s3: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket="async-durable"):
        for v in page.get("Versions", []):
            counts[v["Key"]] = counts.get(v["Key"], 0) + 1
    return counts


# -- large payloads ---------------------------------------------------------------------------

def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_large_payload_streams_without_server_memory(server: ServerProcess, streaming_dir: Path,
                                                     tmp_path: Path) -> None:
    size = 256 * 1024 * 1024
    src = tmp_path / "big.bin"
    with src.open("wb") as f:
        block = bytes(range(256)) * 4096  # 1 MiB
        for _ in range(size // len(block)):
            f.write(block)
    sm, rt = server.client(), server.client("sagemaker-runtime")
    make_async(sm, "async-big", streaming_dir, str(tmp_path / "out"))
    assert server.proc is not None
    pid = server.proc.pid
    base = _rss(pid)
    peak = base
    r = rt.invoke_endpoint_async(EndpointName="async-big", InputLocation=str(src),
                                 ContentType="application/octet-stream", InferenceId="big")
    deadline = time.monotonic() + 120
    while status(server, "async-big", "big")["Status"] not in ("Completed", "Failed"):
        peak = max(peak, _rss(pid))
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert status(server, "async-big", "big")["Status"] == "Completed"
    growth = peak - base
    assert growth < 50 * 1024 * 1024, f"server RSS grew by {growth / 2**20:.1f} MiB for a 256 MiB payload"
    out = Path(r["OutputLocation"])
    assert out.stat().st_size == size
    with out.open("rb") as f:
        head = f.read(512)
    assert head == bytes((i + 1) % 256 for i in range(256)) * 2
    # nothing left behind beside the output
    assert [p.name for p in out.parent.iterdir()] == ["big.out"]


def test_async_requests_follow_the_variant_weights(server: ServerProcess, handler_dir: Path,
                                                  tmp_path: Path) -> None:
    """Two variants weighted 3:1, both with room to spare: requests split by weight, and every
    request gets its one output."""
    sm, rt = server.client(), server.client("sagemaker-runtime")
    sm.create_model(ModelName="async-split", PrimaryContainer={"Image": "moorage/python",
                                                             "ModelDataUrl": str(handler_dir)})
    sm.create_endpoint_config(
        EndpointConfigName="async-split",
        ProductionVariants=[{"VariantName": name, "ModelName": "async-split", "InstanceType": "ml.m5.large",
                             "InitialInstanceCount": 1, "InitialVariantWeight": weight}
                            for name, weight in (("a", 3.0), ("b", 1.0))],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": str(tmp_path / "out")},
                              "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 64}})
    sm.create_endpoint(EndpointName="async-split", EndpointConfigName="async-split")
    wait_status(sm, "async-split")
    ids = [rt.invoke_endpoint_async(EndpointName="async-split", ContentType="application/json",
                                    Body=json.dumps({"x": [i], "id": i}).encode())["InferenceId"]
           for i in range(240)]
    served = [wait_done(server, "async-split", iid)["InvokedProductionVariant"] for iid in ids]
    share = served.count("a") / len(served)
    assert 0.6 <= share <= 0.9, f"variant a served {share:.0%} of requests (weight 75%)"
    assert len(list((tmp_path / "out").iterdir())) == 240


def test_an_updated_async_endpoint_serves_from_its_new_variant(server: ServerProcess, handler_dir: Path,
                                                                tmp_path: Path) -> None:
    """Slots wait for work on the variant they served; after UpdateEndpoint, requests go to
    the new variant and each still gets its one output."""
    sm, rt = server.client(), server.client("sagemaker-runtime")
    make_async(sm, "async-upd", handler_dir, str(tmp_path / "out"), per_instance=8)

    def send(first: int, n: int) -> list[str]:
        return [rt.invoke_endpoint_async(EndpointName="async-upd", ContentType="application/json",
                                         Body=json.dumps({"x": [i], "id": i}).encode())["InferenceId"]
                for i in range(first, first + n)]
    before = send(0, 20)
    assert {wait_done(server, "async-upd", iid)["InvokedProductionVariant"] for iid in before} == {"main"}
    sm.create_endpoint_config(
        EndpointConfigName="async-upd-2",
        ProductionVariants=[{"VariantName": "next", "ModelName": "async-upd", "InstanceType": "ml.m5.large",
                             "InitialInstanceCount": 1}],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": str(tmp_path / "out")},
                              "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 8}})
    sm.update_endpoint(EndpointName="async-upd", EndpointConfigName="async-upd-2")
    wait_status(sm, "async-upd")
    after = send(20, 20)
    assert {wait_done(server, "async-upd", iid)["InvokedProductionVariant"] for iid in after} == {"next"}
    outputs = {p.name: json.loads(p.read_text()) for p in (tmp_path / "out").iterdir()}
    assert len(outputs) == 40
    assert sorted(o["id"] for o in outputs.values()) == list(range(40))


# -- bad input ------------------------------------------------------------------------------------

def test_bad_async_input(server: ServerProcess, handler_dir: Path, tmp_path: Path) -> None:
    sm, rt = server.client(), server.client("sagemaker-runtime")
    make_async(sm, "async-bad", handler_dir, str(tmp_path / "out"))

    def refused(call: Any, code: str = "ValidationError", status: int = 400) -> str:
        with pytest.raises(ClientError) as exc:
            call()
        err = exc.value.response
        assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (code, status)
        return str(err["Error"]["Message"])

    # a real-time endpoint is not async, and an async endpoint is not real-time
    sm.create_model(ModelName="async-rt", PrimaryContainer={"Image": "moorage/python",
                                                             "ModelDataUrl": str(handler_dir)})
    sm.create_endpoint_config(EndpointConfigName="async-rt", ProductionVariants=[
        {"VariantName": "main", "ModelName": "async-rt", "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="async-rt", EndpointConfigName="async-rt")
    wait_status(sm, "async-rt")
    assert "not an asynchronous endpoint" in refused(lambda: rt.invoke_endpoint_async(
        EndpointName="async-rt", Body=b"{}", ContentType="application/json"))
    assert "use InvokeEndpointAsync" in refused(lambda: rt.invoke_endpoint(
        EndpointName="async-bad", Body=b"{}", ContentType="application/json"))
    assert "not found" in refused(lambda: rt.invoke_endpoint_async(EndpointName="async-nope", Body=b"{}"))

    msg = refused(lambda: rt.invoke_endpoint_async(EndpointName="async-bad",
                                                   InputLocation=str(tmp_path / "missing.json")))
    assert "Could not access the input" in msg
    assert "absolute" in refused(lambda: rt.invoke_endpoint_async(EndpointName="async-bad",
                                                                   InputLocation="relative/in.json"))
    (tmp_path / "in.json").write_text("{}")
    assert "exactly one" in refused(lambda: rt.invoke_endpoint_async(
        EndpointName="async-bad", InputLocation=str(tmp_path / "in.json"), Body=b"{}"))
    assert "exactly one" in refused(lambda: rt.invoke_endpoint_async(EndpointName="async-bad"))
    assert "InputLocation instead" in refused(lambda: rt.invoke_endpoint_async(
        EndpointName="async-bad", Body=b"x" * 128_001), status=413)

    with server.http() as http:
        for header, value in (("X-Amzn-SageMaker-RequestTTLSeconds", "59"),
                              ("X-Amzn-SageMaker-RequestTTLSeconds", "21601"),
                              ("X-Amzn-SageMaker-InvocationTimeoutSeconds", "0"),
                              ("X-Amzn-SageMaker-InvocationTimeoutSeconds", "3601"),
                              ("X-Amzn-SageMaker-InvocationTimeoutSeconds", "soon"),
                              ("X-Amzn-SageMaker-Filename", "../../etc/passwd"),
                              ("X-Amzn-SageMaker-Inference-Id", "x" * 65)):
            r = http.post("/endpoints/async-bad/async-invocations", content=b"{}",
                          headers={header: value})
            assert (r.status_code, r.headers.get("x-amzn-errortype")) == (400, "ValidationError"), (header, value, r.text)
            assert header.split("-", 3)[-1].replace("-", "").lower() in r.json()["message"].lower(), r.json()

    # nothing refused was queued
    with server.http() as http:
        def backlog() -> list[dict[str, Any]]:
            r = http.get("/api/endpoints/async-bad/metrics", params={"MetricName": "ApproximateBacklogSize"})
            return r.json().get("Datapoints", [])
        points = wait_for(backlog, 10, "the backlog metric")
        assert all(p["Maximum"] == 0 for p in points), points


def test_bad_async_configs(server: ServerProcess, handler_dir: Path, tmp_path: Path) -> None:
    sm = server.client()
    sm.create_model(ModelName="async-cfg", PrimaryContainer={"Image": "moorage/python",
                                                              "ModelDataUrl": str(handler_dir)})
    variant = {"VariantName": "main", "ModelName": "async-cfg", "InstanceType": "ml.m5.large",
               "InitialInstanceCount": 1}

    def refused(**kwargs: Any) -> str:
        with pytest.raises(ClientError) as exc:
            sm.create_endpoint_config(EndpointConfigName="async-cfg-x", **kwargs)
        assert exc.value.response["Error"]["Code"] == "ValidationException"
        return str(exc.value.response["Error"]["Message"])

    out = {"S3OutputPath": str(tmp_path)}
    assert "not configured in Moorage" in refused(ProductionVariants=[variant], AsyncInferenceConfig={
        "OutputConfig": {**out, "NotificationConfig": {
            "SuccessTopic": "arn:aws:sns:us-east-1:000000000000:no-such-topic"}}})
    assert "absolute path" in refused(ProductionVariants=[variant],
                                      AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "out/dir"}})
    assert "names no S3 bucket" in refused(ProductionVariants=[variant],
                                           AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://"}})
    assert "serverless" in refused(ProductionVariants=[{
        "VariantName": "main", "ModelName": "async-cfg",
        "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1}}],
        AsyncInferenceConfig={"OutputConfig": out})
    assert "maxconcurrentinvocationsperinstance" in refused(ProductionVariants=[variant], AsyncInferenceConfig={
        "OutputConfig": out, "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1001}}).lower()
    with pytest.raises(ClientError):
        sm.describe_endpoint_config(EndpointConfigName="async-cfg-x")
    # an unknown topic in the native API is refused too
    with server.http() as http:
        r = http.put("/api/topics/bad name", json={"Webhooks": ["http://x"]})
        assert r.status_code == 400
        r = http.put("/api/topics/t1", json={"Webhooks": ["ftp://x"]})
        assert r.status_code == 400 and "http://" in r.json()["message"]
        r = http.delete("/api/topics/never-made")
        assert r.status_code == 400



# -- autoscaling -----------------------------------------------------------------------------

def test_async_endpoint_scales_to_zero_and_back(handler_dir: Path, tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data", env={**ADMIN_ENV, "MOORAGE_AUTOSCALING_INTERVAL_SECONDS": "1"}).start()
    try:
        sm, rt, aas = srv.client(), srv.client("sagemaker-runtime"), srv.client("application-autoscaling")
        make_async(sm, "async-zero", handler_dir, str(tmp_path / "out"))
        rid, dim = "endpoint/async-zero/variant/main", "sagemaker:variant:DesiredInstanceCount"
        aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=dim,
                                     MinCapacity=0, MaxCapacity=2)
        aas.put_scaling_policy(
            PolicyName="backlog", ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=dim,
            PolicyType="TargetTrackingScaling", TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 5.0, "ScaleOutCooldown": 0, "ScaleInCooldown": 0,
                "CustomizedMetricSpecification": {
                    "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                    "Dimensions": [{"Name": "EndpointName", "Value": "async-zero"}], "Statistic": "Average"}})

        def instances() -> int:
            d = sm.describe_endpoint(EndpointName="async-zero")
            return d["ProductionVariants"][0]["CurrentInstanceCount"] if d["EndpointStatus"] == "InService" else -1

        wait_for(lambda: instances() == 0, 30, "scale-in to zero")  # an empty queue needs nothing
        with srv.http() as http:
            r = http.get("/api/endpoints/async-zero/instances")
            assert r.json()["Instances"] == []
        for i in range(3):
            rt.invoke_endpoint_async(EndpointName="async-zero", ContentType="application/json",
                                     Body=json.dumps({"x": [i]}).encode(), InferenceId=f"z{i}")
        with srv.http() as http:  # the work waits, visibly, for capacity
            def without_capacity() -> bool:
                r = http.get("/api/endpoints/async-zero/metrics",
                             params={"MetricName": "HasBacklogWithoutCapacity", "Period": 60})
                return any(p["Maximum"] == 1 for p in r.json().get("Datapoints", []))
            wait_for(without_capacity, 10, "HasBacklogWithoutCapacity")
        for i in range(3):
            assert wait_done(srv, "async-zero", f"z{i}", timeout=60)["Status"] == "Completed"
        assert json.loads((tmp_path / "out" / "z2.out").read_text())["y"] == [4]
        acts = aas.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=rid)["ScalingActivities"]
        described = [a["Description"] for a in acts]
        assert "Setting desired instance count to 0." in described, described
        assert "Setting desired instance count to 1." in described, described
        wait_for(lambda: instances() == 0, 30, "back to zero once the queue is empty")
    finally:
        srv.stop()


def test_ended_requests_drop_their_body_and_are_forgotten_after_the_retention(handler_dir: Path,
                                                                            tmp_path: Path) -> None:
    """The store keeps an inline body only while its request may still run, and a request's row
    only for MOORAGE_ASYNC_RETENTION_SECONDS after it ends; the outputs stay."""
    srv = ServerProcess(tmp_path / "data", env={**ADMIN_ENV, "MOORAGE_ASYNC_RETENTION_SECONDS": "2"}).start()
    try:
        sm, rt = srv.client(), srv.client("sagemaker-runtime")
        make_async(sm, "async-retain", handler_dir, str(tmp_path / "out"), failure=str(tmp_path / "failed"))
        for iid, body in (("kept-out", {"x": [1]}), ("kept-error", {"boom": "kept"})):
            rt.invoke_endpoint_async(EndpointName="async-retain", ContentType="application/json",
                                     Body=json.dumps(body).encode(), InferenceId=iid)
        assert wait_done(srv, "async-retain", "kept-out")["Status"] == "Completed"
        assert wait_done(srv, "async-retain", "kept-error")["Status"] == "Failed"

        def stored() -> dict[str, Any]:
            with sqlite3.connect(f"file:{srv.data_dir / 'moorage.db'}?mode=ro", uri=True) as db:
                return {iid: body for iid, body in db.execute("SELECT inference_id, body FROM async_requests")}
        # the final state is group-committed a moment after it is visible
        wait_for(lambda: stored() == {"kept-out": None, "kept-error": None}, 10, "bodies dropped")
        wait_for(lambda: stored() == {}, 30, "rows forgotten")
        with srv.http() as http:
            r = http.get("/api/endpoints/async-retain/async-invocations/kept-out")
            assert r.status_code == 400 and "No asynchronous request kept-out" in r.json()["message"]
        assert json.loads((tmp_path / "out" / "kept-out.out").read_text())["y"] == [2]
        assert "boom: kept" in (tmp_path / "failed" / "kept-error-error.out").read_text()
    finally:
        srv.stop()


def test_bring_your_own_server_streams_files_over_http(server: ServerProcess, tmp_path: Path) -> None:
    """A command instance gets the input streamed to POST /invocations and its response
    streamed to the output, never whole in the server."""
    import sys

    from tests.e2e.test_runtimes import BYOS
    from tests.helpers import tarball
    url = str(tarball(tmp_path / "model.tar.gz", {"serve": BYOS.format(python=sys.executable).encode()}))
    sm, rt = server.client(), server.client("sagemaker-runtime")
    sm.create_model(ModelName="async-byos", PrimaryContainer={"Image": "command:serve", "ModelDataUrl": url})
    sm.create_endpoint_config(
        EndpointConfigName="async-byos",
        ProductionVariants=[{"VariantName": "main", "ModelName": "async-byos", "InstanceType": "ml.m5.large",
                             "InitialInstanceCount": 1}],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": str(tmp_path / "out")}})
    sm.create_endpoint(EndpointName="async-byos", EndpointConfigName="async-byos")
    wait_status(sm, "async-byos")
    src = tmp_path / "text.txt"
    src.write_bytes(b"moorage streams " * 500_000)  # 8 MB: more than InvokeEndpoint takes
    r = rt.invoke_endpoint_async(EndpointName="async-byos", InputLocation=str(src), ContentType="text/plain",
                                 CustomAttributes="trace=7", InferenceId="byos-1")
    assert wait_done(server, "async-byos", "byos-1")["Status"] == "Completed"
    assert Path(r["OutputLocation"]).read_bytes() == b"MOORAGE STREAMS " * 500_000
    (tmp_path / "fail.txt").write_bytes(b"fail")
    r = rt.invoke_endpoint_async(EndpointName="async-byos", InputLocation=str(tmp_path / "fail.txt"),
                                 InferenceId="byos-2")
    assert wait_done(server, "async-byos", "byos-2")["Status"] == "Failed"
    doc = json.loads(Path(r["FailureLocation"]).read_text())
    assert (doc["OriginalStatusCode"], doc["OriginalMessage"]) == (500, "the model broke")
    # an inline body: the server writes what the instance answers
    r = rt.invoke_endpoint_async(EndpointName="async-byos", Body=b"inline words", ContentType="text/plain",
                                 InferenceId="byos-3")
    assert wait_done(server, "async-byos", "byos-3")["Status"] == "Completed"
    assert Path(r["OutputLocation"]).read_bytes() == b"INLINE WORDS"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["byos-1.out", "byos-2-error.out", "byos-3.out"]


def test_cli_async_flow(server: ServerProcess, handler_dir: Path, tmp_path: Path) -> None:
    from tests.e2e.test_surfaces import Cli, _credentials
    from tests.helpers import ADMIN_KEY, ADMIN_SECRET
    cli = Cli(server, tmp_path, _credentials(tmp_path / "credentials", ADMIN_KEY, ADMIN_SECRET))
    hook = Receiver()
    try:
        arn = cli.json("topics", "put", "cli-done", "--webhook", hook.url)["TopicArn"]
        assert arn.endswith(":cli-done")
        assert [t["Name"] for t in cli.json("topics", "list")] == sorted(
            t["Name"] for t in cli.json("topics", "list"))
        cli("models", "create", "async-cli", "--image", "moorage/python", "--model-data", str(handler_dir))
        cli("endpoint-configs", "create", "async-cli", "--variant",
            "name=main,model=async-cli,instance-type=ml.m5.large,count=1",
            "--async-output", str(tmp_path / "out"), "--success-topic", arn, "--max-concurrent", "2")
        cli("endpoints", "create", "async-cli", "--config", "async-cli")
        (tmp_path / "in.json").write_text('{"x": [21]}')
        sent = cli.json("invoke-async", "async-cli", "--input-location", str(tmp_path / "in.json"),
                        "--content-type", "application/json", "--inference-id", "cli-1")
        assert sent == {"InferenceId": "cli-1", "OutputLocation": f"{tmp_path}/out/cli-1.out",
                        "FailureLocation": f"{tmp_path}/out/cli-1-error.out"}
        wait_for(lambda: cli.json("async-status", "async-cli", "cli-1")["Status"] == "Completed", 30, "cli-1")
        assert json.loads((tmp_path / "out" / "cli-1.out").read_text())["y"] == [42]
        wait_for(lambda: hook.messages, 20, "the webhook")
        assert hook.messages[0]["inferenceId"] == "cli-1"
        inline = cli.json("invoke-async", "async-cli", "--body", '{"x": [1]}', "--content-type", "application/json")
        wait_for(lambda: cli.json("async-status", "async-cli", inline["InferenceId"])["Status"] == "Completed",
                 30, "inline")
        bad = cli("invoke-async", "async-cli", "--input-location", str(tmp_path / "nope.json"), ok=False)
        assert bad.returncode == 1 and "Could not access the input" in bad.stderr
        cli("topics", "delete", "cli-done")
        assert "cli-done" not in [t["Name"] for t in cli.json("topics", "list")]
    finally:
        hook.close()
