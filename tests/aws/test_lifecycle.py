"""The whole hosting lifecycle through unmodified boto3 ``sagemaker`` and ``sagemaker-runtime``
clients: every response field a SageMaker user reads, checked at each step."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.aws.support import UUID_RE, arn, error, message

pytestmark = pytest.mark.slow

FAST = {"Delay": 1, "MaxAttempts": 90}
M1, M2 = "AwsLc-Model-A", "awslc-model-b"  # mixed case: ARNs carry the name lower-cased
CFG1, CFG2, EP = "awslc-cfg-1", "awslc-cfg-2", "AwsLc-Endpoint"


def _recent(ts: Any) -> None:
    assert isinstance(ts, datetime), ts
    assert ts.tzinfo is not None
    assert abs(datetime.now(timezone.utc) - ts) < timedelta(minutes=5), ts


def _invoke(rt: Any, x: list[float], **kw: Any) -> tuple[dict[str, Any], Any]:
    r = rt.invoke_endpoint(EndpointName=EP, ContentType="application/json", Accept="application/json",
                           Body=json.dumps({"x": x}), **kw)
    return r, json.loads(r["Body"].read())


def _variants(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["VariantName"]: v for v in d["ProductionVariants"]}


def test_full_hosting_lifecycle(server, handler_dir: Path) -> None:
    sm, rt = server.client(), server.client("sagemaker-runtime")

    # -- models ---------------------------------------------------------------------------
    for name, scale in ((M1, "2"), (M2, "3")):
        r = sm.create_model(ModelName=name, PrimaryContainer={
            "Image": "moorage/python", "ModelDataUrl": str(handler_dir),
            "Environment": {"MOORAGE_TEST_SCALE": scale}})
        assert r["ModelArn"] == arn("model", name)
        assert re.fullmatch(r"arn:aws:sagemaker:us-east-1:\d{12}:model/[a-z0-9-]+", r["ModelArn"])
    d = sm.describe_model(ModelName=M1)
    assert d["ModelName"] == M1
    assert d["ModelArn"] == "arn:aws:sagemaker:us-east-1:000000000000:model/awslc-model-a"
    assert d["PrimaryContainer"] == {"Image": "moorage/python", "ModelDataUrl": str(handler_dir),
                                     "Environment": {"MOORAGE_TEST_SCALE": "2"}}
    _recent(d["CreationTime"])
    listed = sm.list_models(NameContains="awslc-model")["Models"]
    assert [m["ModelName"] for m in listed] == [M2, M1]  # default: newest first
    assert listed[1]["ModelArn"] == arn("model", M1)
    _recent(listed[1]["CreationTime"])

    # -- endpoint configs -----------------------------------------------------------------
    r = sm.create_endpoint_config(EndpointConfigName=CFG1, ProductionVariants=[
        {"VariantName": "alpha", "ModelName": M1, "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 1, "InitialVariantWeight": 1.0},
        {"VariantName": "beta", "ModelName": M2, "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 1, "InitialVariantWeight": 0.0}])
    assert r["EndpointConfigArn"] == arn("endpoint-config", CFG1)
    sm.create_endpoint_config(EndpointConfigName=CFG2, ProductionVariants=[
        {"VariantName": "gamma", "ModelName": M1, "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 1}])
    d = sm.describe_endpoint_config(EndpointConfigName=CFG1)
    assert d["EndpointConfigName"] == CFG1
    assert d["EndpointConfigArn"] == arn("endpoint-config", CFG1)
    assert [(v["VariantName"], v["ModelName"], v["InstanceType"], v["InitialInstanceCount"],
             v["InitialVariantWeight"]) for v in d["ProductionVariants"]] == [
        ("alpha", M1, "ml.m5.large", 1, 1.0), ("beta", M2, "ml.m5.large", 1, 0.0)]
    _recent(d["CreationTime"])
    listed = sm.list_endpoint_configs(NameContains="awslc-cfg", SortBy="Name", SortOrder="Ascending")
    assert [(c["EndpointConfigName"], c["EndpointConfigArn"]) for c in listed["EndpointConfigs"]] == [
        (CFG1, arn("endpoint-config", CFG1)), (CFG2, arn("endpoint-config", CFG2))]

    # -- endpoint -------------------------------------------------------------------------
    r = sm.create_endpoint(EndpointName=EP, EndpointConfigName=CFG1)
    assert r["EndpointArn"] == "arn:aws:sagemaker:us-east-1:000000000000:endpoint/awslc-endpoint"
    sm.get_waiter("endpoint_in_service").wait(EndpointName=EP, WaiterConfig=FAST)
    d = sm.describe_endpoint(EndpointName=EP)
    assert (d["EndpointName"], d["EndpointArn"], d["EndpointConfigName"], d["EndpointStatus"]) == (
        EP, arn("endpoint", EP), CFG1, "InService")
    _recent(d["CreationTime"])
    _recent(d["LastModifiedTime"])
    assert d["LastModifiedTime"] >= d["CreationTime"]
    assert "FailureReason" not in d
    v = _variants(d)
    assert {k: v["alpha"][k] for k in ("CurrentWeight", "DesiredWeight", "CurrentInstanceCount",
                                        "DesiredInstanceCount")} == {
        "CurrentWeight": 1.0, "DesiredWeight": 1.0, "CurrentInstanceCount": 1, "DesiredInstanceCount": 1}
    assert {k: v["beta"][k] for k in ("CurrentWeight", "DesiredWeight", "CurrentInstanceCount",
                                       "DesiredInstanceCount")} == {
        "CurrentWeight": 0.0, "DesiredWeight": 0.0, "CurrentInstanceCount": 1, "DesiredInstanceCount": 1}
    assert v["alpha"]["DeployedImages"][0]["SpecifiedImage"] == "moorage/python"
    listed = sm.list_endpoints(NameContains="awslc-endpoint")["Endpoints"]
    assert [(e["EndpointName"], e["EndpointArn"], e["EndpointStatus"]) for e in listed] == [
        (EP, arn("endpoint", EP), "InService")]

    # -- invoke: a weight-0 variant gets nothing, TargetVariant reaches it anyway -----------
    for i in range(5):
        r, out = _invoke(rt, [1, 2.5, i], CustomAttributes=f"trace={i}")
        assert out == {"y": [2.0, 5.0, 2.0 * i]}
        assert r["InvokedProductionVariant"] == "alpha"
        assert r["ContentType"] == "application/json"
        assert r["CustomAttributes"] == f"seen=trace={i}"
    r, out = _invoke(rt, [1], TargetVariant="beta")
    assert (r["InvokedProductionVariant"], out) == ("beta", {"y": [3.0]})
    assert r["CustomAttributes"] == "seen="

    # -- weights and capacities: all traffic to beta, on two instances ----------------------
    r = sm.update_endpoint_weights_and_capacities(EndpointName=EP, DesiredWeightsAndCapacities=[
        {"VariantName": "alpha", "DesiredWeight": 0.0},
        {"VariantName": "beta", "DesiredWeight": 1.0, "DesiredInstanceCount": 2}])
    assert r["EndpointArn"] == arn("endpoint", EP)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=EP, WaiterConfig=FAST)
    v = _variants(sm.describe_endpoint(EndpointName=EP))
    assert (v["alpha"]["CurrentWeight"], v["alpha"]["DesiredWeight"]) == (0.0, 0.0)
    assert (v["beta"]["CurrentWeight"], v["beta"]["DesiredWeight"]) == (1.0, 1.0)
    assert (v["beta"]["CurrentInstanceCount"], v["beta"]["DesiredInstanceCount"]) == (2, 2)
    assert (v["alpha"]["CurrentInstanceCount"], v["alpha"]["DesiredInstanceCount"]) == (1, 1)
    for _ in range(5):
        r, out = _invoke(rt, [2])
        assert (r["InvokedProductionVariant"], out) == ("beta", {"y": [6.0]})

    # -- update_endpoint: blue/green to another config ------------------------------------
    r = sm.update_endpoint(EndpointName=EP, EndpointConfigName=CFG2)
    assert r["EndpointArn"] == arn("endpoint", EP)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=EP, WaiterConfig=FAST)
    d = sm.describe_endpoint(EndpointName=EP)
    assert d["EndpointConfigName"] == CFG2
    assert "PendingDeploymentSummary" not in d
    assert [(p["VariantName"], p["CurrentWeight"], p["CurrentInstanceCount"])
            for p in d["ProductionVariants"]] == [("gamma", 1.0, 1)]
    r, out = _invoke(rt, [4])
    assert (r["InvokedProductionVariant"], out) == ("gamma", {"y": [8.0]})

    # -- delete everything ----------------------------------------------------------------
    assert sm.delete_endpoint(EndpointName=EP)["ResponseMetadata"]["HTTPStatusCode"] == 200
    sm.get_waiter("endpoint_deleted").wait(EndpointName=EP, WaiterConfig=FAST)
    with pytest.raises(ClientError) as exc:
        sm.describe_endpoint(EndpointName=EP)
    assert error(exc) == ("ValidationException", 400)
    assert message(exc) == f'Could not find endpoint "{arn("endpoint", EP)}".'
    with pytest.raises(ClientError) as exc:
        _invoke(rt, [1])
    assert error(exc) == ("ValidationError", 400)
    assert sm.list_endpoints(NameContains="awslc-endpoint")["Endpoints"] == []
    for cfg in (CFG1, CFG2):
        sm.delete_endpoint_config(EndpointConfigName=cfg)
        with pytest.raises(ClientError) as exc:
            sm.describe_endpoint_config(EndpointConfigName=cfg)
        assert error(exc) == ("ValidationException", 400)
        assert message(exc) == f'Could not find endpoint configuration "{arn("endpoint-config", cfg)}".'
    for name in (M1, M2):
        sm.delete_model(ModelName=name)
        with pytest.raises(ClientError) as exc:
            sm.describe_model(ModelName=name)
        assert error(exc) == ("ValidationException", 400)
        assert message(exc) == f'Could not find model "{arn("model", name)}".'
    assert sm.list_models(NameContains="awslc-model")["Models"] == []
    assert sm.list_endpoint_configs(NameContains="awslc-cfg")["EndpointConfigs"] == []


def test_request_id_reaches_response_metadata(server, handler_dir: Path) -> None:
    """x-amzn-RequestId becomes ResponseMetadata.RequestId on successes and errors, both services."""
    sm, rt = server.client(), server.client("sagemaker-runtime")
    seen: list[str] = []

    def check(meta: dict[str, Any]) -> None:
        rid = meta["RequestId"]
        assert UUID_RE.match(rid), rid
        assert meta["HTTPHeaders"]["x-amzn-requestid"] == rid
        seen.append(rid)

    check(sm.list_models(MaxResults=1)["ResponseMetadata"])
    with pytest.raises(ClientError) as exc:
        sm.describe_model(ModelName="awslc-no-such-model")
    check(exc.value.response["ResponseMetadata"])
    with pytest.raises(ClientError) as exc:
        rt.invoke_endpoint(EndpointName="awslc-no-such-endpoint", ContentType="application/json", Body=b"{}")
    check(exc.value.response["ResponseMetadata"])
    sm.create_model(ModelName="awslc-rid", PrimaryContainer={"Image": "moorage/python",
                                                             "ModelDataUrl": str(handler_dir)})
    sm.create_endpoint_config(EndpointConfigName="awslc-rid", ProductionVariants=[
        {"VariantName": "v", "ModelName": "awslc-rid", "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="awslc-rid", EndpointConfigName="awslc-rid")
    try:
        sm.get_waiter("endpoint_in_service").wait(EndpointName="awslc-rid", WaiterConfig=FAST)
        r = rt.invoke_endpoint(EndpointName="awslc-rid", ContentType="application/json", Body=b'{"x": [1]}')
        check(r["ResponseMetadata"])
        assert json.loads(r["Body"].read()) == {"y": [2.0]}
    finally:
        sm.delete_endpoint(EndpointName="awslc-rid")
    assert len(set(seen)) == len(seen) == 4  # one id per request
