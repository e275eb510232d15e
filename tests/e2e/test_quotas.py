"""Bounds that protect one machine: queued invocations per instance, and instances in total."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.helpers import ADMIN_ENV, ServerProcess, deploy, sklearn_model, sklearn_tarball, tarball

pytestmark = pytest.mark.slow

SLOW = b'''
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    time.sleep(1.0)
    return "done"
'''


@pytest.fixture
def tight_server(tmp_path: Path):
    srv = ServerProcess(tmp_path / "data", env={**ADMIN_ENV, "MOORAGE_MAX_QUEUED_PER_INSTANCE": "2",
                                                "MOORAGE_MAX_INSTANCES": "3"}).start()
    yield srv
    srv.stop()


def test_full_queue_answers_throttling(tight_server, tmp_path: Path) -> None:
    url = str(tarball(tmp_path / "slow.tar.gz", {"code/inference.py": SLOW}))
    deploy(tight_server.client(), "slow", url, image="moorage/python",
           env={"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/plain"})
    statuses: list[int] = []
    codes: list[str] = []

    def call() -> None:
        with tight_server.http() as http:
            r = http.post("/endpoints/slow/invocations", content=b"x", headers={"Content-Type": "text/plain"})
            statuses.append(r.status_code)
            codes.append(r.headers.get("x-amzn-errortype", ""))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # one instance, at most 2 in flight: the other 3 are refused at once, not queued
    assert sorted(statuses) == [200, 200, 429, 429, 429], statuses
    assert codes.count("ThrottlingException") == 3
    with tight_server.http() as http:
        points = http.get("/api/endpoints/slow/metrics", params={"MetricName": "Invocations"}).json()
    assert sum(p["Sum"] for p in points["Datapoints"]) == 2  # refused requests never reached the model


def test_instance_cap_is_resource_limit_exceeded(tight_server, tmp_path: Path) -> None:
    url = str(sklearn_tarball(tmp_path / "m.tar.gz", sklearn_model("lr")))
    sm = tight_server.client()
    deploy(sm, "two", url, variants=[("a", 1.0, 2)])
    sm.create_endpoint_config(EndpointConfigName="two-more", ProductionVariants=[
        {"VariantName": "b", "ModelName": "two", "InstanceType": "ml.m5.large", "InitialInstanceCount": 2}])
    for call, kwargs in [
        (sm.create_endpoint, {"EndpointName": "over", "EndpointConfigName": "two-more"}),
        # blue/green runs both fleets during the switch: 2 running + 2 new > 3
        (sm.update_endpoint, {"EndpointName": "two", "EndpointConfigName": "two-more"}),
        (sm.update_endpoint_weights_and_capacities, {"EndpointName": "two", "DesiredWeightsAndCapacities": [
            {"VariantName": "a", "DesiredInstanceCount": 4}]}),
    ]:
        with pytest.raises(ClientError) as exc:
            call(**kwargs)
        assert exc.value.response["Error"]["Code"] == "ResourceLimitExceeded"
        assert "current utilization of 2 Instances" in str(exc.value)
    # nothing was accepted: the endpoint is untouched and the refused one does not exist
    assert sm.describe_endpoint(EndpointName="two")["EndpointStatus"] == "InService"
    with pytest.raises(ClientError):
        sm.describe_endpoint(EndpointName="over")
