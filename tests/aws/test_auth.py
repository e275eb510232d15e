"""Authentication (SigV4) and authorization (key roles) through the real server: what boto3 users
and attackers can and cannot do."""

from __future__ import annotations

import configparser
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.aws.support import (JSON11, error, frozen_signing_clock, message, minutes_ago, presigned_url,
                               signed_headers)
from tests.helpers import ADMIN_KEY, ADMIN_SECRET, REPO, ServerProcess, deploy, free_port

pytestmark = pytest.mark.slow

MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.")
INVALID_TOKEN = "The security token included in the request is invalid."
IN, OUT = "awsauth-in", "awsauth-out"
BODY = b'{"x": [1.5]}'


@pytest.fixture(scope="module")
def calls(server, handler_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two serving endpoints; each one's predict_fn appends a line per call to its own file."""
    root = tmp_path_factory.mktemp("aws-auth")
    files = {name: root / f"{name}.calls" for name in (IN, OUT)}
    sm = server.client()
    for name, path in files.items():
        deploy(sm, name, str(handler_dir), image="moorage/python", env={"MOORAGE_TEST_CALLS": str(path)},
               wait=False)
    for name in files:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return files


def _count(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def _new_key(server, role: str, endpoints: str = "*") -> dict[str, str]:
    with server.http() as http:
        r = http.post("/api/keys", json={"Role": role, "Endpoints": endpoints})
    assert r.status_code == 201, r.text
    key = r.json()
    assert (key["Role"], key["Endpoints"]) == (role, endpoints)
    return key


@pytest.fixture(scope="module")
def invoker(server, calls) -> dict[str, str]:
    """An invoke key for endpoints matching 'awsauth-in*'."""
    return _new_key(server, "invoke", "awsauth-in*")


def _invoke(rt: Any, name: str = IN) -> Any:
    return rt.invoke_endpoint(EndpointName=name, ContentType="application/json", Body=BODY)


# -- wrong, unknown and revoked keys -------------------------------------------------------

def test_wrong_secret(server, calls) -> None:
    sm = server.client(secret="not-the-secret")
    with pytest.raises(ClientError) as exc:
        sm.list_models()
    assert error(exc) == ("InvalidSignatureException", 403)
    assert message(exc) == MISMATCH
    rt = server.client("sagemaker-runtime", secret="not-the-secret")
    before = _count(calls[IN])
    with pytest.raises(ClientError) as exc:
        _invoke(rt)
    assert error(exc) == ("SignatureDoesNotMatch", 403)
    assert message(exc) == MISMATCH
    assert _count(calls[IN]) == before


def test_unknown_key(server, calls) -> None:
    for service, call in (("sagemaker", lambda c: c.list_models()),
                          ("sagemaker-runtime", _invoke),
                          ("application-autoscaling", lambda c: c.describe_scalable_targets(
                              ServiceNamespace="sagemaker"))):
        client = server.client(service, key="AKIDUNKNOWNKEY000000", secret=ADMIN_SECRET)
        with pytest.raises(ClientError) as exc:
            call(client)
        assert error(exc) == ("UnrecognizedClientException", 403), service
        assert message(exc) == INVALID_TOKEN


def test_revoked_key(server, calls) -> None:
    admin = _new_key(server, "admin")
    invoke = _new_key(server, "invoke", IN)
    sm = server.client(key=admin["AccessKeyId"], secret=admin["SecretAccessKey"])
    rt = server.client("sagemaker-runtime", key=invoke["AccessKeyId"], secret=invoke["SecretAccessKey"])
    assert sm.describe_endpoint(EndpointName=IN)["EndpointStatus"] == "InService"
    assert json.loads(_invoke(rt)["Body"].read()) == {"y": [3.0]}
    with server.http() as http:
        listed = http.get("/api/keys")
        assert listed.status_code == 200
        status = {k["AccessKeyId"]: k["Status"] for k in listed.json()["AccessKeys"]}
        assert status[admin["AccessKeyId"]] == status[invoke["AccessKeyId"]] == "Active"
        # secrets are shown once, at creation, never listed
        assert admin["SecretAccessKey"] not in listed.text and "SecretAccessKey" not in listed.text
        for key in (admin, invoke):
            r = http.delete(f"/api/keys/{key['AccessKeyId']}")
            assert (r.status_code, r.json()) == (200, {})
        status = {k["AccessKeyId"]: k["Status"] for k in http.get("/api/keys").json()["AccessKeys"]}
        assert status[admin["AccessKeyId"]] == status[invoke["AccessKeyId"]] == "Revoked"
        again = http.delete(f"/api/keys/{admin['AccessKeyId']}")
        assert again.status_code == 400
        assert again.json()["__type"] == "ValidationException"
    with pytest.raises(ClientError) as exc:
        sm.describe_endpoint(EndpointName=IN)
    assert error(exc) == ("UnrecognizedClientException", 403)
    before = _count(calls[IN])
    with pytest.raises(ClientError) as exc:
        _invoke(rt)
    assert error(exc) == ("UnrecognizedClientException", 403)
    assert _count(calls[IN]) == before


# -- tampering and timing ------------------------------------------------------------------

def test_body_tampered_after_signing(server, calls) -> None:
    url = server.url + "/"
    body = json.dumps({"ModelName": "awsauth-signed", "PrimaryContainer": {"Image": "command:true"}}).encode()
    headers = signed_headers("POST", url, body, {"Content-Type": JSON11, "X-Amz-Target": "SageMaker.CreateModel"})
    evil = body.replace(b"awsauth-signed", b"awsauth-forged")
    r = httpx.post(url, content=evil, headers=headers)
    assert r.status_code == 403
    assert r.json() == {"__type": "InvalidSignatureException", "message": MISMATCH}
    # the operation header is signed too: swapping it is refused as well
    r = httpx.post(url, content=body, headers={**headers, "X-Amz-Target": "SageMaker.DeleteModel"})
    assert (r.status_code, r.json()["__type"]) == (403, "InvalidSignatureException")
    sm = server.client()
    for name in ("awsauth-signed", "awsauth-forged"):
        with pytest.raises(ClientError) as exc:
            sm.describe_model(ModelName=name)
        assert error(exc) == ("ValidationException", 400)

    # the runtime: another body, or another endpoint, under the same signature
    inv = f"{server.url}/endpoints/{IN}/invocations"
    headers = signed_headers("POST", inv, BODY, {"Content-Type": "application/json"})
    assert httpx.post(inv, content=BODY, headers=headers).json() == {"y": [3.0]}  # the genuine one works
    before = {name: _count(path) for name, path in calls.items()}
    for target, content in ((inv, b'{"x": [99]}'), (f"{server.url}/endpoints/{OUT}/invocations", BODY)):
        r = httpx.post(target, content=content, headers=headers)
        assert r.status_code == 403
        assert r.headers["x-amzn-errortype"] == "SignatureDoesNotMatch"
        assert r.json()["message"] == MISMATCH
    assert {name: _count(path) for name, path in calls.items()} == before


@pytest.mark.parametrize("service", ["sagemaker", "sagemaker-runtime"])
def test_clock_skew_window(server, calls, service: str) -> None:
    client = server.client(service)

    def call() -> Any:
        return client.list_models() if service == "sagemaker" else _invoke(client)

    with frozen_signing_clock(minutes_ago(20)):
        with pytest.raises(ClientError) as exc:
            call()
    assert error(exc) == ("InvalidSignatureException", 403)
    assert message(exc).startswith("Signature expired: ")
    assert "is now earlier than" in message(exc) and "- 15 min.)" in message(exc)
    with frozen_signing_clock(minutes_ago(-20)):
        with pytest.raises(ClientError) as exc:
            call()
    assert error(exc) == ("InvalidSignatureException", 403)
    assert message(exc).startswith("Signature not yet current: ")
    with frozen_signing_clock(minutes_ago(14)):  # inside the 15-minute window
        assert call()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_presigned_urls(server, calls) -> None:
    url = server.url + f"/api/endpoints/{IN}/instances"
    ok = presigned_url(url, expires=60)
    assert "X-Amz-Signature=" in ok
    r = httpx.get(ok)
    assert r.status_code == 200, r.text
    assert [(i["VariantName"], i["State"]) for i in r.json()["Instances"]] == [("primary", "Ready")]

    # expired: signed 10 minutes ago for 60 seconds
    r = httpx.get(presigned_url(url, expires=60, at=minutes_ago(10)))
    assert r.status_code == 403
    assert r.json() == {"__type": "InvalidSignatureException", "message": "Request has expired"}
    # and one that simply ran out
    short = presigned_url(url, expires=1)
    time.sleep(2.1)
    r = httpx.get(short)
    assert (r.status_code, r.json()["message"]) == (403, "Request has expired")
    # a parameter added after signing
    r = httpx.get(ok + "&VariantName=primary")
    assert (r.status_code, r.json()["__type"]) == (403, "SignatureDoesNotMatch")
    # a URL presigned for GET is no licence to DELETE
    r = httpx.delete(presigned_url(server.url + f"/api/endpoints/{IN}"))
    assert (r.status_code, r.json()["__type"]) == (403, "SignatureDoesNotMatch")
    assert server.client().describe_endpoint(EndpointName=IN)["EndpointStatus"] == "InService"
    # longer than a week is refused outright
    r = httpx.get(presigned_url(url, expires=7 * 24 * 3600 + 1))
    assert (r.status_code, r.json()["__type"]) == (403, "IncompleteSignatureException")


def test_presigned_url_on_a_list_route(server, calls) -> None:
    r = httpx.get(presigned_url(server.url + "/api/models?NameContains=awsauth-none"))
    assert r.status_code == 200, r.text
    assert r.json() == {"Models": []}
    r = httpx.get(presigned_url(server.url + "/api/endpoints?NameContains=awsauth&SortBy=Name&SortOrder=Ascending"))
    assert r.status_code == 200, r.text
    assert [e["EndpointName"] for e in r.json()["Endpoints"]] == [IN, OUT]


# -- unsigned requests ---------------------------------------------------------------------

ROUTES = ["/api/models", "/api/models/x", "/api/endpoint-configs", "/api/endpoint-configs/x",
          "/api/endpoints", "/api/endpoints/x", "/api/endpoints/x/metrics", "/api/endpoints/x/instances",
          "/api/endpoints/x/weights-and-capacities", "/api/keys", "/api/keys/x", "/metrics", "/docs",
          "/openapi.json", "/v1/describejobqueues", "/no/such/route", "/"]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_unsigned_requests_are_refused_everywhere(server, calls, method: str) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for path in ROUTES:
            r = http.request(method, path, content=b"{}", headers={"Content-Type": "application/json"})
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            assert r.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException", (method, path)
            assert r.json() == {"__type": "MissingAuthenticationTokenException",
                                "message": "Missing Authentication Token"}, (method, path)
            assert "x-amzn-requestid" in r.headers


def test_unsigned_aws_protocol_and_invoke_are_refused(server, calls) -> None:
    before = _count(calls[IN])
    with httpx.Client(base_url=server.url, timeout=10) as http:
        r = http.post("/", content=b"{}", headers={"Content-Type": JSON11, "X-Amz-Target": "SageMaker.ListModels"})
        assert r.status_code == 403
        assert r.headers["content-type"] == JSON11
        assert r.json()["__type"] == "MissingAuthenticationTokenException"
        r = http.post(f"/endpoints/{IN}/invocations", content=BODY, headers={"Content-Type": "application/json"})
        assert r.status_code == 403
        assert r.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
        assert r.json()["message"] == "Missing Authentication Token"
        # half a signature is no signature
        r = http.get("/api/models", headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x",
                                              "X-Amz-Date": "20240101T000000Z"})
        assert (r.status_code, r.json()["__type"]) == (403, "IncompleteSignatureException")
        r = http.get("/api/models?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x&X-Amz-Signature=00")
        assert (r.status_code, r.json()["__type"]) == (403, "IncompleteSignatureException")
        # only the liveness probe is open, and it says nothing
        for method in ("GET", "HEAD"):
            r = http.request(method, "/ping")
            assert (r.status_code, r.content) == (200, b"")
    assert _count(calls[IN]) == before
    # boto3 with signing turned off gets the same answer
    anon = boto3.client("sagemaker", endpoint_url=server.url, region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as exc:
        anon.list_models()
    assert error(exc) == ("MissingAuthenticationTokenException", 403)


@pytest.mark.parametrize("how", ["unsigned", "wrong-secret", "unknown-key", "invoke-key", "expired", "tampered"])
def test_a_rejected_request_changes_nothing(server, calls, invoker, how: str) -> None:
    name = f"awsauth-rejected-{how}"
    url = server.url + "/"
    body = json.dumps({"ModelName": name, "PrimaryContainer": {"Image": "command:true"}}).encode()
    base = {"Content-Type": JSON11, "X-Amz-Target": "SageMaker.CreateModel"}
    key, secret, at, send = ADMIN_KEY, ADMIN_SECRET, None, body
    if how == "wrong-secret":
        secret = "nope"
    elif how == "unknown-key":
        key = "AKIDUNKNOWNKEY000000"
    elif how == "invoke-key":
        key, secret = invoker["AccessKeyId"], invoker["SecretAccessKey"]
    elif how == "expired":
        at = minutes_ago(30)
    elif how == "tampered":
        send = body.replace(b"command:true", b"command:rm -rf /")
    headers = base if how == "unsigned" else signed_headers("POST", url, body, base, key=key, secret=secret, at=at)
    r = httpx.post(url, content=send, headers=headers)
    assert r.status_code == 403, r.text
    assert r.json()["__type"] == {"unsigned": "MissingAuthenticationTokenException",
                                  "unknown-key": "UnrecognizedClientException",
                                  "invoke-key": "AccessDeniedException"}.get(how, "InvalidSignatureException")
    with pytest.raises(ClientError) as exc:
        server.client().describe_model(ModelName=name)
    assert error(exc) == ("ValidationException", 400)


# -- roles -----------------------------------------------------------------------------

def test_invoke_key_is_confined_to_its_endpoints(server, calls, invoker) -> None:
    key, secret = invoker["AccessKeyId"], invoker["SecretAccessKey"]
    rt = server.client("sagemaker-runtime", key=key, secret=secret)
    before = {name: _count(path) for name, path in calls.items()}
    r = _invoke(rt, IN)
    assert (r["ResponseMetadata"]["HTTPStatusCode"], json.loads(r["Body"].read())) == (200, {"y": [3.0]})
    for name in (OUT, "zz-awsauth-missing"):  # outside the glob: denied before the name is looked up
        with pytest.raises(ClientError) as exc:
            _invoke(rt, name)
        assert error(exc) == ("AccessDeniedException", 403), name
        assert message(exc) == (f"User: {key} is not authorized to perform: sagemaker:InvokeEndpoint "
                                f"on endpoint {name}.")
    assert {name: _count(path) for name, path in calls.items()} == {IN: before[IN] + 1, OUT: before[OUT]}

    sm = server.client(key=key, secret=secret)
    for call in (lambda: sm.describe_endpoint(EndpointName=IN), lambda: sm.list_models(),
                 lambda: sm.delete_endpoint(EndpointName=IN),
                 lambda: sm.update_endpoint_weights_and_capacities(EndpointName=IN, DesiredWeightsAndCapacities=[
                     {"VariantName": "primary", "DesiredInstanceCount": 3}])):
        with pytest.raises(ClientError) as exc:
            call()
        assert error(exc) == ("AccessDeniedException", 403)
        assert message(exc).startswith(f"User: {key} is not authorized to perform: sagemaker:")
    aa = server.client("application-autoscaling", key=key, secret=secret)
    with pytest.raises(ClientError) as exc:
        aa.describe_scalable_targets(ServiceNamespace="sagemaker")
    assert error(exc) == ("AccessDeniedException", 403)
    with server.http(key=key, secret=secret) as http:
        for method, path, body in (("GET", "/api/models", None), ("GET", "/metrics", None),
                                   ("GET", "/api/keys", None), ("POST", "/api/keys", {"Role": "admin"}),
                                   ("DELETE", f"/api/keys/{key}", None)):
            r = http.request(method, path, json=body)
            assert (r.status_code, r.json()["__type"]) == (403, "AccessDeniedException"), (method, path)
    # the endpoint is untouched and the key still works: it could not revoke itself or escalate
    d = server.client().describe_endpoint(EndpointName=IN)
    assert (d["EndpointStatus"], d["ProductionVariants"][0]["DesiredInstanceCount"]) == ("InService", 1)
    assert _invoke(rt, IN)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with server.http() as http:
        roles = [k["Role"] for k in http.get("/api/keys").json()["AccessKeys"] if k["Status"] == "Active"]
    assert roles.count("admin") == 1  # no key was minted by the invoke key


# -- how the server starts -------------------------------------------------------------------

def _server_cmd(port: int, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "moorage", "server", "--port", str(port), "--data-dir", str(data),
            "--log-level", "warning", *extra]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOORAGE_", "AWS_"))}
    return {**env, "PYTHONPATH": str(REPO), **extra}


@pytest.mark.parametrize("args, env", [
    (["--no-auth", "--host", "0.0.0.0"], {}),
    (["--host", "0.0.0.0"], {"MOORAGE_AUTH": "false"}),
])
def test_no_auth_refuses_a_non_loopback_host(tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(_server_cmd(free_port(), tmp_path / "data", *args), env=_clean_env(**env),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert ("moorage: refusing to listen on 0.0.0.0 with authentication off; --no-auth is for loopback "
            "addresses only.") in proc.stderr


def test_no_auth_on_loopback_accepts_unsigned_requests(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_server_cmd(port, tmp_path / "data", "--no-auth", "--host", "127.0.0.1"),
                                env=_clean_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        anon = boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1",
                            config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))
        assert anon.list_models()["Models"] == []
        assert "authentication is OFF" in log.read_text()
        assert not (tmp_path / "data" / "credentials").exists()  # no key is made when auth is off
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
def no_admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("MOORAGE_", "AWS_")):
            monkeypatch.delenv(name)


def test_first_start_writes_a_private_credentials_file(tmp_path: Path, no_admin_env,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    srv = ServerProcess(tmp_path / "data", env={}).start()
    try:
        path = tmp_path / "data" / "credentials"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        ini = configparser.ConfigParser()
        ini.read_string(text)
        assert ini.sections() == ["moorage"]
        key, secret = ini["moorage"]["aws_access_key_id"], ini["moorage"]["aws_secret_access_key"]
        assert key and len(secret) >= 30

        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
        session = boto3.Session(profile_name="moorage", region_name="us-east-1")
        sm = session.client("sagemaker", endpoint_url=srv.url, config=Config(retries={"max_attempts": 1}))
        assert sm.list_models()["Models"] == []
        rt = session.client("sagemaker-runtime", endpoint_url=srv.url, config=Config(retries={"max_attempts": 1}))
        with pytest.raises(ClientError) as exc:
            rt.invoke_endpoint(EndpointName="nothing-here", ContentType="text/csv", Body=b"1")
        assert error(exc) == ("ValidationError", 400)  # authenticated, then not found
        # the test env's admin key means nothing here
        with pytest.raises(ClientError) as exc:
            srv.client().list_models()
        assert error(exc) == ("UnrecognizedClientException", 403)
    finally:
        srv.stop()
    log = srv.log_text()
    assert str(path) in log  # the operator is told where the key is
    assert secret not in log

    # a restart keeps the key and does not rewrite the file
    srv = ServerProcess(tmp_path / "data", port=srv.port, env={}).start()
    try:
        assert path.read_text() == text
        assert sm.list_models()["Models"] == []
    finally:
        srv.stop()
    assert srv.log_text().count("Created an admin access key") == 1
    assert secret not in srv.log_text()
