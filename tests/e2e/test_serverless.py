"""Serverless variants: cold starts, MaxConcurrency throttling, scale to zero, provisioned
concurrency, memory limits and bad configurations."""

from __future__ import annotations

import threading
import time

import pytest
from botocore.exceptions import ClientError

from tests.helpers import (ADMIN_ENV, ServerProcess, csv_rows, make_data, sklearn_model,
                           sklearn_tarball, tarball, wait_status)

pytestmark = pytest.mark.slow

SLOW = b'''
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    if body == "hog":
        block = bytearray(3 * 1024 ** 3)  # more than the 1 GB this instance may use
        return str(len(block))
    time.sleep(0.8)
    return "slept"
'''


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    s = ServerProcess(tmp_path_factory.mktemp("sl") / "data",
                      env={**ADMIN_ENV, "MOORAGE_SERVERLESS_IDLE_SECONDS": "1.5"}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("models")
    return {"lr": str(sklearn_tarball(d / "lr.tar.gz", sklearn_model("lr"))),
            "slow": str(tarball(d / "slow.tar.gz", {"code/inference.py": SLOW}))}


def _serverless(sm, name: str, url: str, image: str = "moorage/sklearn", **config) -> None:
    sm.create_model(ModelName=name, PrimaryContainer={
        "Image": image, "ModelDataUrl": url,
        "Environment": {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/plain"} if image == "moorage/python" else {}})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": "v", "ModelName": name,
         "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2, **config}}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_status(sm, name)


def _instances(srv, name: str) -> list[dict]:
    with srv.http() as http:
        return http.get(f"/api/endpoints/{name}/instances").json()["Instances"]


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.1)


def test_cold_start_then_warm_then_scale_to_zero(srv, urls) -> None:
    sm = srv.client()
    _serverless(sm, "cold", urls["lr"])
    d = sm.describe_endpoint(EndpointName="cold")["ProductionVariants"][0]
    assert d["CurrentServerlessConfig"] == {"MemorySizeInMB": 1024, "MaxConcurrency": 2}
    assert "CurrentInstanceCount" not in d
    assert _instances(srv, "cold") == []  # nothing runs until the first call
    X, _ = make_data(seed=11)
    model = sklearn_model("lr")
    with srv.http() as http:
        r = http.post("/endpoints/cold/invocations", content=csv_rows(X[:4]), headers={"Content-Type": "text/csv"})
        assert r.status_code == 200, r.text
        assert [int(v) for v in r.text.split()] == model.predict(X[:4]).tolist()
        assert float(r.headers["x-moorage-cold-start-ms"]) > 0
        r = http.post("/endpoints/cold/invocations", content=csv_rows(X[:1]), headers={"Content-Type": "text/csv"})
        assert r.status_code == 200 and "x-moorage-cold-start-ms" not in r.headers  # warm
        setup = http.get("/api/endpoints/cold/metrics", params={"MetricName": "ModelSetupTime"}).json()
        assert sum(p["SampleCount"] for p in setup["Datapoints"]) == 1
        assert setup["Datapoints"][0]["Unit"] == "Microseconds"
    _wait(lambda: _instances(srv, "cold") == [])  # idle past MOORAGE_SERVERLESS_IDLE_SECONDS
    rt = srv.client("sagemaker-runtime")
    r = rt.invoke_endpoint(EndpointName="cold", ContentType="text/csv", Body=csv_rows(X[:2]))
    assert r["Body"].read().decode().split() == [str(v) for v in model.predict(X[:2])]


def test_max_concurrency_throttles(srv, urls) -> None:
    sm = srv.client()
    _serverless(sm, "narrow", urls["slow"], image="moorage/python", MaxConcurrency=1)
    results: list[tuple[int, str]] = []

    def call() -> None:
        with srv.http() as http:
            r = http.post("/endpoints/narrow/invocations", content=b"x", headers={"Content-Type": "text/plain"})
            results.append((r.status_code, r.headers.get("x-amzn-errortype", "")))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(60)
    assert sorted(results) == [(200, ""), (429, "ThrottlingException"), (429, "ThrottlingException"),
                               (429, "ThrottlingException")], results


def test_provisioned_concurrency_stays_warm(srv, urls) -> None:
    sm = srv.client()
    _serverless(sm, "warm", urls["lr"], ProvisionedConcurrency=1)
    assert len(_instances(srv, "warm")) == 1  # started with the endpoint
    time.sleep(3.5)  # well past the idle time
    assert len(_instances(srv, "warm")) == 1
    with srv.http() as http:
        r = http.post("/endpoints/warm/invocations", content=csv_rows(make_data()[0][:1]),
                      headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and "x-moorage-cold-start-ms" not in r.headers


def test_outgrowing_memory_is_a_clear_model_error(srv, urls) -> None:
    sm = srv.client()
    _serverless(sm, "hog", urls["slow"], image="moorage/python")
    rt = srv.client("sagemaker-runtime")
    with pytest.raises(rt.exceptions.ModelError) as exc:
        rt.invoke_endpoint(EndpointName="hog", ContentType="text/plain", Body=b"hog")
    assert "MemoryError" in exc.value.response["OriginalMessage"]
    # the server and other endpoints are unharmed
    r = rt.invoke_endpoint(EndpointName="cold", ContentType="text/csv", Body=csv_rows(make_data()[0][:1]))
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.mark.parametrize("variant, message", [
    ({"InstanceType": "ml.m5.large", "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1}},
     "cannot be combined with InstanceType"),
    ({"ServerlessConfig": {"MemorySizeInMB": 1500, "MaxConcurrency": 1}}, "MemorySizeInMB must be one of"),
    ({"ServerlessConfig": {"MemorySizeInMB": 8192, "MaxConcurrency": 1}}, "memorySizeInMB"),
    ({"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 201}}, "maxConcurrency"),
    ({"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2, "ProvisionedConcurrency": 3}},
     "cannot exceed MaxConcurrency"),
])
def test_bad_serverless_configs(srv, urls, variant: dict, message: str) -> None:
    sm = srv.client()
    try:
        sm.create_model(ModelName="bad-sl", PrimaryContainer={"Image": "moorage/sklearn", "ModelDataUrl": urls["lr"]})
    except ClientError:
        pass  # created by an earlier parameter set
    with pytest.raises(ClientError) as exc:
        sm.create_endpoint_config(EndpointConfigName="bad-sl", ProductionVariants=[
            {"VariantName": "v", "ModelName": "bad-sl", **variant}])
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert message in str(exc.value)
