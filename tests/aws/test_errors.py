"""Every error mapping as boto3 sees it: the code in e.response["Error"]["Code"], the HTTP status,
and the words a user reads. Only errors the server really produces."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError

from tests.aws.support import JSON11, arn, error, message, signed_headers
from tests.helpers import ADMIN_KEY, ADMIN_SECRET, deploy

pytestmark = pytest.mark.slow

EP = "awserr-ep"
LOG_GROUP = "arn:aws:logs:us-east-1:000000000000:log-group:/aws/sagemaker/Endpoints/"
FAST = {"Delay": 1, "MaxAttempts": 60}


@pytest.fixture(scope="module")
def calls(server, handler_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A serving handler endpoint; returns the file its predict_fn appends a line to per call."""
    path = tmp_path_factory.mktemp("aws-errors") / "calls.txt"
    deploy(server.client(), EP, str(handler_dir), image="moorage/python",
           env={"MOORAGE_TEST_CALLS": str(path)})
    return path


def default_retry_client(server, service: str) -> Any:
    """A client configured like boto3's defaults: standard mode, 3 attempts."""
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=ADMIN_KEY, aws_secret_access_key=ADMIN_SECRET,
                        config=Config(retries={"mode": "standard", "max_attempts": 3}))


# -- sagemaker control plane: missing, duplicate and malformed ---------------------------

MISSING: list[tuple[str, dict[str, Any], str]] = [
    ("describe_model", {"ModelName": "awserr-ghost"}, 'model "{model}"'),
    ("delete_model", {"ModelName": "awserr-ghost"}, 'model "{model}"'),
    ("describe_endpoint_config", {"EndpointConfigName": "awserr-ghost"}, 'endpoint configuration "{config}"'),
    ("delete_endpoint_config", {"EndpointConfigName": "awserr-ghost"}, 'endpoint configuration "{config}"'),
    ("describe_endpoint", {"EndpointName": "awserr-ghost"}, 'endpoint "{endpoint}"'),
    ("delete_endpoint", {"EndpointName": "awserr-ghost"}, 'endpoint "{endpoint}"'),
    ("update_endpoint", {"EndpointName": "awserr-ghost", "EndpointConfigName": EP}, 'endpoint "{endpoint}"'),
    ("update_endpoint", {"EndpointName": EP, "EndpointConfigName": "awserr-ghost"},
     'endpoint configuration "{config}"'),
    ("update_endpoint_weights_and_capacities", {"EndpointName": "awserr-ghost", "DesiredWeightsAndCapacities": [
        {"VariantName": "primary", "DesiredWeight": 1.0}]}, 'endpoint "{endpoint}"'),
    ("create_endpoint", {"EndpointName": "awserr-new", "EndpointConfigName": "awserr-ghost"},
     'endpoint configuration "{config}"'),
    ("create_endpoint_config", {"EndpointConfigName": "awserr-new", "ProductionVariants": [
        {"VariantName": "v", "ModelName": "awserr-ghost", "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 1}]}, 'model "{model}"'),
]


@pytest.mark.parametrize("op, kwargs, what", MISSING, ids=[f"{m[0]}-{i}" for i, m in enumerate(MISSING)])
def test_missing_resource_is_validation_exception(server, calls, op: str, kwargs: dict[str, Any],
                                                  what: str) -> None:
    sm = server.client()
    with pytest.raises(ClientError) as exc:
        getattr(sm, op)(**kwargs)
    assert error(exc) == ("ValidationException", 400)
    want = what.format(model=arn("model", "awserr-ghost"), config=arn("endpoint-config", "awserr-ghost"),
                       endpoint=arn("endpoint", "awserr-ghost"))
    assert message(exc) == f"Could not find {want}."
    # nothing half-made by the refused create
    for probe, name in (("describe_endpoint", "EndpointName"), ("describe_endpoint_config", "EndpointConfigName")):
        with pytest.raises(ClientError):
            getattr(sm, probe)(**{name: "awserr-new"})


def test_duplicates_are_refused_and_change_nothing(server, calls, handler_dir: Path) -> None:
    sm = server.client()
    attempts: list[tuple[Callable[..., Any], dict[str, Any], str]] = [
        (sm.create_model, {"ModelName": EP, "PrimaryContainer": {
            "Image": "moorage/python", "ModelDataUrl": str(handler_dir),
            "Environment": {"MOORAGE_TEST_SCALE": "100"}}}, f'model "{arn("model", EP)}"'),
        (sm.create_endpoint_config, {"EndpointConfigName": EP, "ProductionVariants": [
            {"VariantName": "other", "ModelName": EP, "InstanceType": "ml.m5.large",
             "InitialInstanceCount": 1}]}, f'endpoint configuration "{arn("endpoint-config", EP)}"'),
        (sm.create_endpoint, {"EndpointName": EP, "EndpointConfigName": EP},
         f'endpoint "{arn("endpoint", EP)}"'),
    ]
    for call, kwargs, what in attempts:
        with pytest.raises(ClientError) as exc:
            call(**kwargs)
        assert error(exc) == ("ValidationException", 400)
        assert message(exc) == f"Cannot create already existing {what}."
    assert sm.describe_model(ModelName=EP)["PrimaryContainer"]["Environment"] == {
        "MOORAGE_TEST_CALLS": str(calls)}
    assert [v["VariantName"] for v in sm.describe_endpoint_config(EndpointConfigName=EP)["ProductionVariants"]] == [
        "primary"]
    assert sm.describe_endpoint(EndpointName=EP)["EndpointStatus"] == "InService"


PATTERN_MODEL = r"^[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?"
PATTERN_ENDPOINT = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
LONG = "a" * 64


@pytest.mark.parametrize("op, kwargs, want", [
    ("describe_model", {"ModelName": "bad_name!"},
     f"Value 'bad_name!' at 'modelName' failed to satisfy constraint: Member must satisfy regular "
     f"expression pattern: {PATTERN_MODEL}"),
    ("describe_model", {"ModelName": "-leading"},
     f"Value '-leading' at 'modelName' failed to satisfy constraint: Member must satisfy regular "
     f"expression pattern: {PATTERN_MODEL}"),
    ("describe_endpoint", {"EndpointName": "trailing-"},
     f"Value 'trailing-' at 'endpointName' failed to satisfy constraint: Member must satisfy regular "
     f"expression pattern: {PATTERN_ENDPOINT}"),
    ("describe_endpoint", {"EndpointName": ""},  # boto3 sends it: the shape's min is 0
     f"Value '' at 'endpointName' failed to satisfy constraint: Member must satisfy regular "
     f"expression pattern: {PATTERN_ENDPOINT}"),
    ("delete_model", {"ModelName": LONG},  # the model pattern has no length of its own
     f"Value '{LONG}' at 'modelName' failed to satisfy constraint: Member must have length "
     "less than or equal to 63"),
    ("list_models", {"SortOrder": "Up"},
     "Value 'Up' at 'sortOrder' failed to satisfy constraint: Member must satisfy enum value set: "
     "[Ascending, Descending]"),
    ("list_endpoints", {"StatusEquals": "Running"},
     "Value 'Running' at 'statusEquals' failed to satisfy constraint: Member must satisfy enum value set: "
     "[OutOfService, Creating, Updating, SystemUpdating, RollingBack, InService, Deleting, Failed, "
     "UpdateRollbackFailed]"),
    ("create_endpoint_config", {"EndpointConfigName": "awserr-cfg", "ProductionVariants": [
        {"VariantName": "bad name", "ModelName": EP, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]},
     f"Value 'bad name' at 'productionVariants.1.member.variantName' failed to satisfy constraint: Member "
     f"must satisfy regular expression pattern: {PATTERN_ENDPOINT}"),
])
def test_one_bad_value(server, calls, op: str, kwargs: dict[str, Any], want: str) -> None:
    with pytest.raises(ClientError) as exc:
        getattr(server.client(), op)(**kwargs)
    assert error(exc) == ("ValidationException", 400)
    assert message(exc) == "1 validation error detected: " + want


def test_every_violation_is_reported_at_once(server) -> None:
    sm = server.client()
    name = LONG + "_"
    with pytest.raises(ClientError) as exc:
        sm.create_model(ModelName=name, PrimaryContainer={
            "Image": "command:true", "Environment": {"K": "v" * 1025}})
    assert error(exc) == ("ValidationException", 400)
    text = message(exc)
    assert text.startswith("3 validation errors detected: ")
    assert (f"Value '{name}' at 'modelName' failed to satisfy constraint: Member must have length less "
            "than or equal to 63; ") in text
    assert f"Member must satisfy regular expression pattern: {PATTERN_MODEL}" in text
    assert ("at 'primaryContainer.environment' failed to satisfy constraint: Map value must satisfy "
            "constraint: [Member must have length less than or equal to 1024]") in text
    with pytest.raises(ClientError):
        sm.describe_model(ModelName=name[:63])


def test_resource_limit_exceeded_accepts_nothing(server, calls) -> None:
    sm = server.client()
    sm.create_endpoint_config(EndpointConfigName="awserr-huge", ProductionVariants=[
        {"VariantName": "v", "ModelName": EP, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1000}])
    with pytest.raises(ClientError) as exc:
        sm.create_endpoint(EndpointName="awserr-huge", EndpointConfigName="awserr-huge")
    assert error(exc) == ("ResourceLimitExceeded", 400)
    assert message(exc).startswith("The account-level service limit 'instances for endpoint usage' is 64 Instances")
    assert "a request delta of 1000 Instances" in message(exc)
    with pytest.raises(ClientError) as exc:
        sm.update_endpoint_weights_and_capacities(EndpointName=EP, DesiredWeightsAndCapacities=[
            {"VariantName": "primary", "DesiredInstanceCount": 500}])
    assert error(exc) == ("ResourceLimitExceeded", 400)
    with pytest.raises(ClientError) as exc:
        sm.describe_endpoint(EndpointName="awserr-huge")
    assert error(exc) == ("ValidationException", 400)
    d = sm.describe_endpoint(EndpointName=EP)
    assert (d["EndpointStatus"], d["ProductionVariants"][0]["DesiredInstanceCount"]) == ("InService", 1)
    sm.delete_endpoint_config(EndpointConfigName="awserr-huge")


# -- unknown operations: a clear 400, never a 500 or a hang ------------------------------

def test_unknown_sagemaker_operation(server) -> None:
    sm = default_retry_client(server, "sagemaker")
    t0 = time.monotonic()
    with pytest.raises(ClientError) as exc:
        sm.create_training_job(TrainingJobName="awserr-train", RoleArn="arn:aws:iam::123456789012:role/r",
                               OutputDataConfig={"S3OutputPath": "s3://bucket/out"})
    assert error(exc) == ("UnknownOperationException", 400)
    assert message(exc) == "Operation CreateTrainingJob of sagemaker is not supported by Moorage yet."
    assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    with pytest.raises(ClientError) as exc:
        sm.list_training_jobs()
    assert error(exc) == ("UnknownOperationException", 400)
    assert "ListTrainingJobs" in message(exc)
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("target, want", [
    ("SageMaker.FlyToTheMoon", "Operation FlyToTheMoon of sagemaker is not supported by Moorage yet."),
    ("Bogus.ListModels", "Unknown X-Amz-Target 'Bogus.ListModels'."),
    ("SageMaker.", "Unknown X-Amz-Target 'SageMaker.'."),
])
def test_unknown_target_on_the_wire(server, target: str, want: str) -> None:
    url = server.url + "/"
    headers = signed_headers("POST", url, b"{}", {"Content-Type": JSON11, "X-Amz-Target": target})
    r = httpx.post(url, content=b"{}", headers=headers, timeout=10)
    assert r.status_code == 400
    assert r.headers["content-type"] == JSON11
    assert r.json() == {"__type": "UnknownOperationException", "message": want}


def test_application_autoscaling_errors(server, calls) -> None:
    aa = default_retry_client(server, "application-autoscaling")
    rid = f"endpoint/{EP}/variant/primary"
    r = aa.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[rid])
    assert r["ScalableTargets"] == []  # implemented: nothing registered for this variant
    with pytest.raises(ClientError) as exc:
        aa.describe_scalable_targets(ServiceNamespace="ecs")
    assert error(exc) == ("ValidationException", 400)
    assert message(exc) == "Moorage scales only the 'sagemaker' namespace, not 'ecs'."
    with pytest.raises(aa.exceptions.ObjectNotFoundException) as exc:
        aa.delete_scaling_policy(ServiceNamespace="sagemaker", PolicyName="awserr-p", ResourceId=rid,
                                 ScalableDimension="sagemaker:variant:DesiredInstanceCount")
    assert error(exc) == ("ObjectNotFoundException", 400)
    with pytest.raises(ClientError) as exc:
        aa.put_scheduled_action(ServiceNamespace="sagemaker", ScheduledActionName="awserr-s", ResourceId=rid,
                                ScalableDimension="sagemaker:variant:DesiredInstanceCount")
    assert error(exc) == ("UnknownOperationException", 400)
    assert message(exc) == "Operation PutScheduledAction of application-autoscaling is not supported by Moorage yet."
    assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 0


# -- sagemaker-runtime ---------------------------------------------------------------------

def test_unknown_endpoint_and_variant_are_validation_errors(server, calls) -> None:
    rt = default_retry_client(server, "sagemaker-runtime")
    with pytest.raises(ClientError) as exc:
        rt.invoke_endpoint(EndpointName="awserr-nowhere", ContentType="application/json", Body=b'{"x": [1]}')
    assert error(exc) == ("ValidationError", 400)
    assert message(exc) == "Endpoint awserr-nowhere of account 000000000000 not found."
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "ValidationError"
    assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    before = calls.read_text().count("\n") if calls.exists() else 0
    with pytest.raises(ClientError) as exc:
        rt.invoke_endpoint(EndpointName=EP, ContentType="application/json", Body=b'{"x": [1]}',
                           TargetVariant="nope")
    assert error(exc) == ("ValidationError", 400)
    assert 'variant "nope"' in message(exc)
    assert (calls.read_text().count("\n") if calls.exists() else 0) == before


def test_model_error_424_and_no_retry_storm(server, calls) -> None:
    rt = default_retry_client(server, "sagemaker-runtime")
    calls.unlink(missing_ok=True)
    with pytest.raises(rt.exceptions.ModelError) as exc:
        rt.invoke_endpoint(EndpointName=EP, ContentType="application/json",
                           Body=json.dumps({"x": [1], "boom": "kaput"}))
    assert error(exc) == ("ModelError", 424)
    err = exc.value.response
    assert err["OriginalStatusCode"] == 500
    assert err["OriginalMessage"] == "ValueError: boom: kaput"
    assert err["LogStreamArn"] == LOG_GROUP + EP
    assert err["Error"]["Message"].startswith(
        'Received server error (500) from primary with message "ValueError: boom: kaput".')
    assert err["ResponseMetadata"]["RetryAttempts"] == 0
    # exactly one call reached the model, although the client would retry a retryable error twice
    assert calls.read_text() == "call\n"
    # the instance survived: the next request is answered
    r = rt.invoke_endpoint(EndpointName=EP, ContentType="application/json", Body=b'{"x": [21]}')
    assert json.loads(r["Body"].read()) == {"y": [42.0]}
    assert calls.read_text() == "call\ncall\n"


def _wait_status(sm: Any, name: str, want: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        d = sm.describe_endpoint(EndpointName=name)
        if d["EndpointStatus"] == want:
            return d
        assert time.monotonic() < deadline, d["EndpointStatus"]
        time.sleep(0.1)


def test_creating_and_failed_endpoints_cannot_be_invoked(server, handler_dir: Path) -> None:
    sm, rt = server.client(), default_retry_client(server, "sagemaker-runtime")
    deploy(sm, "awserr-slow", str(handler_dir), image="moorage/python",
           env={"MOORAGE_TEST_LOAD_SLEEP": "4"}, wait=False)
    deploy(sm, "awserr-broken", str(handler_dir), image="moorage/python",
           env={"MOORAGE_TEST_LOAD_FAIL": "nope"}, wait=False)
    try:
        assert sm.describe_endpoint(EndpointName="awserr-slow")["EndpointStatus"] == "Creating"
        with pytest.raises(ClientError) as exc:
            rt.invoke_endpoint(EndpointName="awserr-slow", ContentType="application/json", Body=b'{"x": [1]}')
        assert error(exc) == ("ValidationError", 400)
        assert "(status Creating)" in message(exc)
        with pytest.raises(ClientError) as exc:
            sm.update_endpoint_weights_and_capacities(EndpointName="awserr-slow", DesiredWeightsAndCapacities=[
                {"VariantName": "primary", "DesiredInstanceCount": 2}])
        assert error(exc) == ("ValidationException", 400)
        assert message(exc).startswith(f'Cannot update in-progress endpoint "{arn("endpoint", "awserr-slow")}"')

        with pytest.raises(WaiterError) as werr:
            sm.get_waiter("endpoint_in_service").wait(EndpointName="awserr-broken", WaiterConfig=FAST)
        assert werr.value.last_response["EndpointStatus"] == "Failed"
        assert "load failed on purpose: nope" in werr.value.last_response["FailureReason"]
        with pytest.raises(ClientError) as exc:
            rt.invoke_endpoint(EndpointName="awserr-broken", ContentType="application/json", Body=b'{"x": [1]}')
        assert error(exc) == ("ValidationError", 400)
        assert "(status Failed)" in message(exc)
        assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    finally:
        for name in ("awserr-slow", "awserr-broken"):
            sm.delete_endpoint(EndpointName=name)
    for name in ("awserr-slow", "awserr-broken"):
        sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST)
