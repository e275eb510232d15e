"""Limits and time caps: what an instance type means for the instance process (threads, CPU
affinity, address space), a model that allocates past its limit, the invocation timeout and
recovery from a hung instance, and the 6 MB payload cap on both sides of the boundary."""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from typing import Any

import pytest

from tests.helpers import ADMIN_ENV, ServerProcess, deploy, tarball, wait_status

pytestmark = pytest.mark.slow

GIB = 1024**3
CAP = 6 * 1024 * 1024  # the InvokeEndpoint payload cap: 6,291,456 bytes
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

PROBE = b'''
import json, os, resource, time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    if content_type == "application/octet-stream":
        return str(len(body)), "text/plain"
    if body == "hog":
        block = bytearray(6 * 1024 ** 3)  # more than the 4 GiB of an ml.t2.medium
        return str(len(block)), "text/plain"
    if body == "slow":
        time.sleep(30)
        return "woke up", "text/plain"
    if body == "stuck":
        time.sleep(300)
        return "woke up", "text/plain"
    return json.dumps({
        "affinity": sorted(os.sched_getaffinity(0)),
        "threads": {v: os.environ.get(v) for v in
                    ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "rlimit_as": list(resource.getrlimit(resource.RLIMIT_AS)),
        "pid": os.getpid(),
    }), "application/json"
'''

VARIANTS = {"t2": "ml.t2.medium", "c5": "ml.c5.large", "local": "ml.local"}


@pytest.fixture(scope="module")
def probe_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tarball(tmp_path_factory.mktemp("lim") / "probe.tar.gz", {"code/inference.py": PROBE}))


@pytest.fixture(scope="module")
def endpoints(server, probe_url: str) -> dict[str, str]:
    """``lim-prof``: one variant per instance type; ``lim-hog``: one ml.t2.medium instance."""
    sm = server.client()
    sm.create_model(ModelName="lim-probe", PrimaryContainer={"Image": "moorage/python",
                                                             "ModelDataUrl": probe_url})
    sm.create_endpoint_config(EndpointConfigName="lim-prof", ProductionVariants=[
        {"VariantName": v, "ModelName": "lim-probe", "InstanceType": t, "InitialInstanceCount": 1,
         "InitialVariantWeight": 1.0} for v, t in VARIANTS.items()])
    sm.create_endpoint(EndpointName="lim-prof", EndpointConfigName="lim-prof")
    sm.create_endpoint_config(EndpointConfigName="lim-hog", ProductionVariants=[
        {"VariantName": "primary", "ModelName": "lim-probe", "InstanceType": "ml.t2.medium",
         "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="lim-hog", EndpointConfigName="lim-hog")
    wait_status(sm, "lim-prof")
    wait_status(sm, "lim-hog")
    return {"prof": "lim-prof", "hog": "lim-hog"}


def _probe(server, endpoint: str, variant: str) -> dict[str, Any]:
    with server.http() as http:
        r = http.post(f"/endpoints/{endpoint}/invocations", content=b"probe",
                      headers={"Content-Type": "text/plain",
                               "X-Amzn-SageMaker-Target-Variant": variant})
    assert r.status_code == 200, r.text
    assert r.headers["x-amzn-invoked-production-variant"] == variant
    return json.loads(r.content)


@pytest.mark.parametrize("variant", ["t2", "c5"])
def test_sized_instance_types_limit_the_process(server, endpoints: dict[str, str], variant: str) -> None:
    """ml.t2.medium and ml.c5.large are 2 vCPU, 4 GiB: at most 2 CPUs, thread pools of that
    size, and an address-space limit of exactly 4 GiB."""
    got = _probe(server, endpoints["prof"], variant)
    cpus = min(2, len(os.sched_getaffinity(0)))
    assert len(got["affinity"]) == cpus, got
    assert set(got["affinity"]) <= os.sched_getaffinity(0)
    assert got["threads"] == {v: str(cpus) for v in THREAD_VARS}, got
    assert got["rlimit_as"] == [4 * GIB, 4 * GIB], got


def test_ml_local_has_no_limits(server, endpoints: dict[str, str]) -> None:
    """ml.local: nothing set by Moorage; the instance inherits the server's environment,
    affinity and (unlimited) address space."""
    got = _probe(server, endpoints["prof"], "local")
    assert set(got["affinity"]) == os.sched_getaffinity(0), got
    assert got["threads"] == {v: os.environ.get(v) for v in THREAD_VARS}, got
    assert got["rlimit_as"] == list(resource.getrlimit(resource.RLIMIT_AS)), got
    assert got["rlimit_as"][0] == resource.RLIM_INFINITY


def test_allocating_past_the_limit_fails_clearly(server, endpoints: dict[str, str]) -> None:
    rt = server.client("sagemaker-runtime")
    pid = _probe(server, endpoints["hog"], "primary")["pid"]
    with pytest.raises(rt.exceptions.ModelError) as exc:
        rt.invoke_endpoint(EndpointName=endpoints["hog"], ContentType="text/plain", Body=b"hog")
    err = exc.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert err["OriginalStatusCode"] == 500
    assert "MemoryError" in err["OriginalMessage"], err
    # the instance survived its MemoryError, and the server and other endpoints are fine
    assert _probe(server, endpoints["hog"], "primary")["pid"] == pid
    assert _probe(server, endpoints["prof"], "local")["rlimit_as"][0] == resource.RLIM_INFINITY
    assert server.client().describe_endpoint(EndpointName=endpoints["hog"])["EndpointStatus"] == "InService"


def test_payload_cap_is_exactly_6_mb(server, endpoints: dict[str, str]) -> None:
    with server.http() as http:
        def send(size: int) -> Any:
            return http.post(f"/endpoints/{endpoints['prof']}/invocations", content=b"\x07" * size,
                             headers={"Content-Type": "application/octet-stream",
                                      "X-Amzn-SageMaker-Target-Variant": "local"})

        r = send(CAP)
        assert r.status_code == 200, r.text[:500]
        assert r.text == str(CAP)  # the whole body reached the model
        r = send(CAP + 1)
        assert r.status_code == 413
        assert r.headers["x-amzn-errortype"] == "ValidationError"
        assert f"{CAP + 1} bytes exceeds the maximum of {CAP} bytes" in r.json()["message"]
        r = send(CAP - 1)
        assert r.status_code == 200 and r.text == str(CAP - 1)

        def chunked(size: int) -> Any:  # no Content-Length: the cap is counted while reading
            def body() -> Any:
                for start in range(0, size, 1 << 16):
                    yield b"\x07" * min(1 << 16, size - start)
            request = http.build_request(
                "POST", f"/endpoints/{endpoints['prof']}/invocations", content=body(),
                headers={"Content-Type": "application/octet-stream",
                         "X-Amzn-SageMaker-Target-Variant": "local"})
            assert "content-length" not in request.headers
            return http.send(request)

        r = chunked(CAP)
        assert r.status_code == 200 and r.text == str(CAP)
        r = chunked(CAP + 1)
        assert r.status_code == 413 and r.headers["x-amzn-errortype"] == "ValidationError"


# --- the invocation timeout --------------------------------------------------------------

@pytest.fixture(scope="module")
def impatient_server(tmp_path_factory: pytest.TempPathFactory):
    """Invocations time out after 2 s; instances are pinged every 0.5 s with a 0.5 s timeout,
    so a busy instance is judged hung after 2 + 2 * 0.5 = 3 s without progress."""
    srv = ServerProcess(tmp_path_factory.mktemp("impatient") / "data", env={
        **ADMIN_ENV, "MOORAGE_INVOCATION_TIMEOUT_SECONDS": "2",
        "MOORAGE_HEALTH_CHECK_TIMEOUT_SECONDS": "0.5",
        "MOORAGE_HEALTH_CHECK_INTERVAL_SECONDS": "0.5",
        # a sleeping instance cannot act on SIGTERM: do not wait 10 s for it at shutdown
        "MOORAGE_INSTANCE_STOP_GRACE_SECONDS": "1"}).start()
    yield srv
    srv.stop()


def _instances(srv: ServerProcess, name: str) -> list[dict[str, Any]]:
    with srv.http() as http:
        r = http.get(f"/api/endpoints/{name}/instances")
        assert r.status_code == 200, r.text
        return r.json()["Instances"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_replaced(srv: ServerProcess, name: str, old: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The one instance of ``name`` once ``old`` is gone and a new one is Ready."""
    deadline = time.monotonic() + timeout
    while True:
        now = _instances(srv, name)
        if old["InstanceId"] not in {i["InstanceId"] for i in now} and \
                [i["State"] for i in now] == ["Ready"]:
            return now[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"hung instance {old['InstanceId']} was not replaced in "
                                 f"{timeout:g} s: {now}")
        time.sleep(0.2)


def test_invocation_timeout_and_recovery(impatient_server: ServerProcess, probe_url: str) -> None:
    srv = impatient_server
    deploy(srv.client(), "lim-slow", probe_url, image="moorage/python", instance_type="ml.local")
    [old] = _instances(srv, "lim-slow")
    with srv.http() as http:
        t0 = time.monotonic()
        r = http.post("/endpoints/lim-slow/invocations", content=b"slow",
                      headers={"Content-Type": "text/plain"})
        elapsed = time.monotonic() - t0
        assert r.status_code == 424, r.text
        assert r.headers["x-amzn-errortype"] == "ModelError"
        doc = r.json()
        assert "timed out" in doc["message"], doc
        assert doc.get("OriginalStatusCode") == 504, doc
        assert 1.9 <= elapsed <= 6, elapsed

        # the hung instance (asleep for 30 s) is replaced by a fresh one well before it wakes
        new = _wait_replaced(srv, "lim-slow", old, timeout=20)
        assert new["Pid"] != old["Pid"]
        deadline = time.monotonic() + 10
        while _alive(old["Pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(old["Pid"]), "the hung instance process was left running"
        r = http.post("/endpoints/lim-slow/invocations", content=b"probe",
                      headers={"Content-Type": "text/plain"})
        assert r.status_code == 200, r.text
        assert json.loads(r.content)["pid"] == new["Pid"]  # answered by the fresh instance
        points = http.get("/api/endpoints/lim-slow/metrics",
                          params={"MetricName": "Invocation5XXErrors"}).json()["Datapoints"]
        assert sum(p["Sum"] for p in points) == 1  # the timeout counts as a 5XX
    assert srv.client().describe_endpoint(EndpointName="lim-slow")["EndpointStatus"] == "InService"


def test_hung_instance_under_steady_load_is_replaced(impatient_server: ServerProcess,
                                                     probe_url: str) -> None:
    """Traffic that keeps arriving must not keep a hung instance alive: each request times out
    (no progress), so after 3 s the instance is hung and replaced, and requests succeed again."""
    srv = impatient_server
    deploy(srv.client(), "lim-stuck", probe_url, image="moorage/python", instance_type="ml.local")
    [old] = _instances(srv, "lim-stuck")
    stop = threading.Event()
    statuses: list[int] = []

    def call(body: bytes) -> None:
        with srv.http() as http:
            r = http.post("/endpoints/lim-stuck/invocations", content=body,
                          headers={"Content-Type": "text/plain"})
            statuses.append(r.status_code)

    def load() -> None:
        while not stop.is_set():
            call(b"probe")

    threads = [threading.Thread(target=call, args=(b"stuck",))]
    threads[0].start()
    time.sleep(0.2)
    threads += [threading.Thread(target=load) for _ in range(2)]
    for t in threads[1:]:
        t.start()
    try:
        new = _wait_replaced(srv, "lim-stuck", old, timeout=15)
        ok_before = statuses.count(200)
        time.sleep(1.0)
        assert statuses.count(200) > ok_before, statuses  # the new instance takes the traffic
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert new["Pid"] != old["Pid"]
    assert 424 in statuses
