"""Weighted variants, TargetVariant and live traffic changes, end to end."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import csv_rows, deploy, make_data, sklearn_model, sklearn_tarball, wait_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(sklearn_tarball(tmp_path_factory.mktemp("m") / "model.tar.gz", sklearn_model("lr")))


def _count_variants(http, name: str, n: int, **headers: str) -> Counter[str]:
    body = csv_rows(make_data(seed=1)[0][:1])
    seen: Counter[str] = Counter()
    for _ in range(n):
        r = http.post(f"/endpoints/{name}/invocations", content=body,
                      headers={"Content-Type": "text/csv", **headers})
        assert r.status_code == 200, r.text
        seen[r.headers["x-amzn-invoked-production-variant"]] += 1
    return seen


def test_weight_split_and_target_variant(server, model_url: str) -> None:
    sm = server.client()
    deploy(sm, "split", model_url, variants=[("a", 3.0, 1), ("b", 1.0, 1)])
    with server.http() as http:
        seen = _count_variants(http, "split", 1200)
        share = seen["a"] / 1200
        # binomial sd = sqrt(.75*.25/1200) = 0.0125; 4 sd either side
        assert abs(share - 0.75) < 0.05, seen
        assert _count_variants(http, "split", 50, **{"X-Amzn-SageMaker-Target-Variant": "b"}) == {"b": 50}
        r = http.post("/endpoints/split/invocations", content=b"1,2,3,4,5,6\n",
                      headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Variant": "nope"})
        assert r.status_code == 400
        assert r.headers["x-amzn-errortype"] == "ValidationError"
        assert "nope" in r.json()["message"]


class Load:
    """Invokes an endpoint from a thread until stopped, recording every failure."""

    def __init__(self, server, name: str) -> None:
        self.http = server.http()
        self.name = name
        self.ok = 0
        self.failures: list[str] = []
        self.variants: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.body = csv_rows(make_data(seed=2)[0][:1])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                r = self.http.post(f"/endpoints/{self.name}/invocations", content=self.body,
                                   headers={"Content-Type": "text/csv"})
                if r.status_code == 200:
                    self.ok += 1
                    self.variants[r.headers["x-amzn-invoked-production-variant"]] += 1
                else:
                    self.failures.append(f"{r.status_code} {r.text}")
            except Exception as exc:  # a dropped connection is a failure too
                self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.http.close()


def test_weights_and_capacity_change_under_load(server, model_url: str) -> None:
    sm = server.client()
    deploy(sm, "live", model_url, variants=[("a", 1.0, 1), ("b", 0.0, 1)])
    with Load(server, "live") as load:
        time.sleep(0.5)
        sm.update_endpoint_weights_and_capacities(EndpointName="live", DesiredWeightsAndCapacities=[
            {"VariantName": "a", "DesiredWeight": 0.0},
            {"VariantName": "b", "DesiredWeight": 1.0, "DesiredInstanceCount": 2}])
        assert sm.describe_endpoint(EndpointName="live")["EndpointStatus"] == "Updating"
        d = wait_status(sm, "live")
        before = load.variants["b"]
        time.sleep(0.5)
        after = load.variants["b"]
    assert load.failures == []
    assert after > before  # b took traffic once the change was done
    summary = {v["VariantName"]: v for v in d["ProductionVariants"]}
    assert summary["b"]["CurrentWeight"] == 1.0 and summary["b"]["CurrentInstanceCount"] == 2
    assert summary["a"]["CurrentWeight"] == 0.0
    assert load.ok > 20


def test_update_endpoint_blue_green_under_load(server, model_url: str, tmp_path: Path) -> None:
    sm = server.client()
    deploy(sm, "bg", model_url, variants=[("blue", 1.0, 1)])
    sm.create_endpoint_config(EndpointConfigName="bg-green", ProductionVariants=[
        {"VariantName": "green", "ModelName": "bg", "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 2}])
    with Load(server, "bg") as load:
        time.sleep(0.5)
        sm.update_endpoint(EndpointName="bg", EndpointConfigName="bg-green")
        d = sm.describe_endpoint(EndpointName="bg")
        assert d["EndpointStatus"] == "Updating"
        assert d["PendingDeploymentSummary"]["EndpointConfigName"] == "bg-green"
        d = wait_status(sm, "bg")
        time.sleep(0.5)
    assert load.failures == []
    assert d["EndpointConfigName"] == "bg-green"
    assert [v["VariantName"] for v in d["ProductionVariants"]] == ["green"]
    assert load.variants["blue"] > 0 and load.variants["green"] > 0
    with server.http() as http:
        assert http.get("/api/endpoints/bg/instances").json()["Instances"].__len__() == 2
