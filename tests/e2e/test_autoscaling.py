"""Application Auto Scaling through boto3: targets, target-tracking policies, activities, and a
variant that scales out under load and back in when quiet, without failing an invocation."""

from __future__ import annotations

import threading
import time

import pytest
from botocore.exceptions import ClientError

from tests.helpers import ADMIN_ENV, ServerProcess, csv_rows, deploy, make_data, sklearn_model, sklearn_tarball

pytestmark = pytest.mark.slow
RID = "endpoint/auto/variant/primary"
DIM = "sagemaker:variant:DesiredInstanceCount"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    s = ServerProcess(tmp_path_factory.mktemp("as") / "data",
                      env={**ADMIN_ENV, "MOORAGE_AUTOSCALING_INTERVAL_SECONDS": "1"}).start()
    url = str(sklearn_tarball(tmp_path_factory.mktemp("m") / "m.tar.gz", sklearn_model("lr")))
    deploy(s.client(), "auto", url)
    yield s
    s.stop()


class Paced:
    """Invokes at about ``rate`` requests/s from a thread, counting failures."""

    def __init__(self, srv, rate: float) -> None:
        self.rate, self.ok, self.failures = rate, 0, []
        self.srv = srv
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = csv_rows(make_data()[0][:1])
        with self.srv.http() as http:
            while not self._stop.is_set():
                r = http.post("/endpoints/auto/invocations", content=body, headers={"Content-Type": "text/csv"})
                if r.status_code == 200:
                    self.ok += 1
                else:
                    self.failures.append(r.text)
                time.sleep(1 / self.rate)

    def __enter__(self) -> Paced:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(30)


def _count(sm) -> int:
    return sm.describe_endpoint(EndpointName="auto")["ProductionVariants"][0]["DesiredInstanceCount"]


def _wait_count(sm, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (_count(sm) == n and sm.describe_endpoint(EndpointName="auto")["EndpointStatus"] == "InService"):
        if time.monotonic() > deadline:
            raise AssertionError(f"desired count stayed {_count(sm)}, wanted {n}")
        time.sleep(0.2)


def test_scale_out_under_load_then_in_when_quiet(srv) -> None:
    sm, aas = srv.client(), srv.client("application-autoscaling")
    aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM,
                                 MinCapacity=1, MaxCapacity=3)
    arn = aas.put_scaling_policy(
        PolicyName="ipi", ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM,
        PolicyType="TargetTrackingScaling", TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 120.0, "ScaleOutCooldown": 0, "ScaleInCooldown": 2,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}},
    )["PolicyARN"]
    assert arn.startswith("arn:aws:autoscaling:") and "policyName/ipi" in arn
    # ~25 req/s = 1500/min on one instance: ceil(1 * 1500 / 120) is far above MaxCapacity 3
    with Paced(srv, 25) as heavy:
        _wait_count(sm, 3)
    assert heavy.failures == []
    # ~1 req/s over 3 instances = 20/min each: ceil(3 * 20 / 120) = 1; traffic goes on meanwhile
    with Paced(srv, 1) as light:
        _wait_count(sm, 1)
        time.sleep(1)
    assert light.failures == [] and light.ok > 0
    acts = aas.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=RID)["ScalingActivities"]
    assert [a["StatusCode"] for a in acts][:2] == ["Successful", "Successful"]
    assert "desired instance count to 1" in acts[0]["Description"]
    assert any("desired instance count to 3" in a["Description"] for a in acts)
    targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[RID])["ScalableTargets"]
    assert (targets[0]["MinCapacity"], targets[0]["MaxCapacity"]) == (1, 3)
    policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=RID)["ScalingPolicies"]
    assert [p["PolicyName"] for p in policies] == ["ipi"]
    aas.delete_scaling_policy(PolicyName="ipi", ServiceNamespace="sagemaker", ResourceId=RID,
                              ScalableDimension=DIM)
    aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=RID, ScalableDimension=DIM)
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_bad_autoscaling_input(srv) -> None:
    aas = srv.client("application-autoscaling")
    with pytest.raises(ClientError) as exc:  # no target registered
        aas.put_scaling_policy(PolicyName="p", ServiceNamespace="sagemaker", ResourceId=RID,
                               ScalableDimension=DIM, PolicyType="TargetTrackingScaling",
                               TargetTrackingScalingPolicyConfiguration={"TargetValue": 1.0,
                                   "PredefinedMetricSpecification": {
                                       "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})
    assert _code(exc) == "ObjectNotFoundException"
    for kwargs, message in [
        ({"ResourceId": "endpoint/auto", "MinCapacity": 1, "MaxCapacity": 2}, "must look like"),
        ({"ResourceId": "endpoint/ghost/variant/primary", "MinCapacity": 1, "MaxCapacity": 2}, "Could not find endpoint"),
        ({"ResourceId": "endpoint/auto/variant/nope", "MinCapacity": 1, "MaxCapacity": 2}, "variant nope"),
        ({"ResourceId": RID, "MinCapacity": 3, "MaxCapacity": 2}, "cannot be greater"),
        ({"ResourceId": RID}, "MinCapacity and MaxCapacity are required"),
    ]:
        with pytest.raises(ClientError) as exc:
            aas.register_scalable_target(ServiceNamespace="sagemaker", ScalableDimension=DIM, **kwargs)
        assert _code(exc) == "ValidationException", kwargs
        assert message in str(exc.value), (kwargs, str(exc.value))
    with pytest.raises(ClientError) as exc:
        aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=RID, ScalableDimension="ecs:service:DesiredCount",
                                     MinCapacity=1, MaxCapacity=2)
    assert _code(exc) == "ValidationException"
    with pytest.raises(ClientError) as exc:
        aas.delete_scaling_policy(PolicyName="none", ServiceNamespace="sagemaker", ResourceId=RID,
                                  ScalableDimension=DIM)
    assert _code(exc) == "ObjectNotFoundException"
