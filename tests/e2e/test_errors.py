"""Every bad input gets the exact AWS error code and HTTP status, through boto3 and raw HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.helpers import deploy, sklearn_model, sklearn_tarball, tarball, wait_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ready(server, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = str(sklearn_tarball(tmp_path_factory.mktemp("m") / "model.tar.gz", sklearn_model("lr")))
    deploy(server.client(), "errs", url)
    return url


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    r = exc.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


def test_malformed_body_is_model_error_400(server, ready: str) -> None:
    rt = server.client("sagemaker-runtime")
    with pytest.raises(rt.exceptions.ModelError) as exc:
        rt.invoke_endpoint(EndpointName="errs", ContentType="text/csv", Body=b"1,2,abc\n")
    assert _code(exc) == ("ModelError", 424)
    assert exc.value.response["OriginalStatusCode"] == 400


def test_unsupported_content_type_is_model_error_415(server, ready: str) -> None:
    rt = server.client("sagemaker-runtime")
    with pytest.raises(rt.exceptions.ModelError) as exc:
        rt.invoke_endpoint(EndpointName="errs", ContentType="application/xml", Body=b"<a/>")
    assert exc.value.response["OriginalStatusCode"] == 415


def test_oversize_payload_refused(server, ready: str) -> None:
    with server.http() as http:
        r = http.post("/endpoints/errs/invocations", content=b"1" * (6 * 1024 * 1024 + 1),
                      headers={"Content-Type": "text/csv"})
    assert r.status_code == 413
    assert r.headers["x-amzn-errortype"] == "ValidationError"
    assert "exceeds the maximum of 6291456 bytes" in r.json()["message"]


def test_unknown_endpoint(server) -> None:
    rt = server.client("sagemaker-runtime")
    with pytest.raises(ClientError) as exc:
        rt.invoke_endpoint(EndpointName="no-such-endpoint", ContentType="text/csv", Body=b"1")
    assert _code(exc) == ("ValidationError", 400)
    assert "Endpoint no-such-endpoint of account" in str(exc.value)
    sm = server.client()
    with pytest.raises(ClientError) as exc:
        sm.describe_endpoint(EndpointName="no-such-endpoint")
    assert _code(exc) == ("ValidationException", 400)
    assert "Could not find endpoint" in str(exc.value)


def test_unknown_variant_in_weight_update(server, ready: str) -> None:
    sm = server.client()
    with pytest.raises(ClientError) as exc:
        sm.update_endpoint_weights_and_capacities(EndpointName="errs", DesiredWeightsAndCapacities=[
            {"VariantName": "ghost", "DesiredWeight": 1.0}])
    assert _code(exc) == ("ValidationException", 400)
    assert "ghost" in str(exc.value)


def test_missing_model_file(server, tmp_path: Path) -> None:
    sm = server.client()
    with pytest.raises(ClientError) as exc:
        sm.create_model(ModelName="missing", PrimaryContainer={
            "Image": "moorage/sklearn", "ModelDataUrl": str(tmp_path / "nope.tar.gz")})
    assert _code(exc) == ("ValidationException", 400)
    assert "Could not access model data" in str(exc.value)


def test_model_file_removed_before_deploy_fails_endpoint(server, tmp_path: Path) -> None:
    path = sklearn_tarball(tmp_path / "model.tar.gz", sklearn_model("lr"))
    sm = server.client()
    sm.create_model(ModelName="vanish", PrimaryContainer={"Image": "moorage/sklearn",
                                                          "ModelDataUrl": str(path)})
    sm.create_endpoint_config(EndpointConfigName="vanish", ProductionVariants=[
        {"VariantName": "v", "ModelName": "vanish", "InstanceType": "ml.m5.large",
         "InitialInstanceCount": 1}])
    path.unlink()
    sm.create_endpoint(EndpointName="vanish", EndpointConfigName="vanish")
    d = wait_status(sm, "vanish", "Failed")
    assert "Could not access model data" in d["FailureReason"]


def test_traversal_tarball_fails_endpoint(server, tmp_path: Path) -> None:
    url = str(tarball(tmp_path / "evil.tar.gz", {"../../evil.txt": b"x"}))
    sm = server.client()
    deploy(sm, "evil", url, wait=False)
    d = wait_status(sm, "evil", "Failed")
    assert "evil.txt" in d["FailureReason"]
    assert not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.parametrize("image", ["nginx:latest", "123456789012.dkr.ecr.us-east-1.amazonaws.com/mystery:1"])
def test_unknown_image(server, ready: str, image: str) -> None:
    sm = server.client()
    with pytest.raises(ClientError) as exc:
        sm.create_model(ModelName="badimage", PrimaryContainer={"Image": image, "ModelDataUrl": ready})
    assert _code(exc) == ("ValidationException", 400)
    assert "is not supported" in str(exc.value)


def test_unknown_instance_type(server, ready: str) -> None:
    sm = server.client()
    with pytest.raises(ClientError) as exc:
        sm.create_endpoint_config(EndpointConfigName="badtype", ProductionVariants=[
            {"VariantName": "v", "ModelName": "errs", "InstanceType": "ml.nope.huge",
             "InitialInstanceCount": 1}])
    assert _code(exc) == ("ValidationException", 400)
    assert "ml.nope.huge" in str(exc.value)


def test_duplicate_names(server, ready: str) -> None:
    sm = server.client()
    for call, kwargs in [
        (sm.create_model, {"ModelName": "errs", "PrimaryContainer": {"Image": "moorage/sklearn", "ModelDataUrl": ready}}),
        (sm.create_endpoint_config, {"EndpointConfigName": "errs", "ProductionVariants": [
            {"VariantName": "v", "ModelName": "errs", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]}),
        (sm.create_endpoint, {"EndpointName": "errs", "EndpointConfigName": "errs"}),
    ]:
        with pytest.raises(ClientError) as exc:
            call(**kwargs)
        assert _code(exc) == ("ValidationException", 400)
        assert "Cannot create already existing" in str(exc.value)


def test_all_zero_weights(server, ready: str) -> None:
    sm = server.client()
    with pytest.raises(ClientError) as exc:
        sm.create_endpoint_config(EndpointConfigName="zero", ProductionVariants=[
            {"VariantName": "a", "ModelName": "errs", "InstanceType": "ml.m5.large",
             "InitialInstanceCount": 1, "InitialVariantWeight": 0.0},
            {"VariantName": "b", "ModelName": "errs", "InstanceType": "ml.m5.large",
             "InitialInstanceCount": 1, "InitialVariantWeight": 0.0}])
    assert _code(exc) == ("ValidationException", 400)
    with pytest.raises(ClientError) as exc:
        sm.update_endpoint_weights_and_capacities(EndpointName="errs", DesiredWeightsAndCapacities=[
            {"VariantName": "primary", "DesiredWeight": 0.0}])
    assert _code(exc) == ("ValidationException", 400)


def test_bad_name_pattern_and_unknown_operation(server) -> None:
    sm = server.client()
    with pytest.raises(ClientError) as exc:
        sm.describe_endpoint(EndpointName="bad_name!")
    assert _code(exc) == ("ValidationException", 400)
    assert "failed to satisfy constraint" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        sm.list_training_jobs()
    assert _code(exc) == ("UnknownOperationException", 400)
    assert "ListTrainingJobs" in str(exc.value)


def test_batch_and_autoscaling_clients_get_clear_errors(server) -> None:
    """The wire layer already speaks these protocols; unimplemented operations say so."""
    batch = server.client("batch")
    with pytest.raises(ClientError) as exc:
        batch.describe_job_queues()
    assert _code(exc) == ("ClientException", 400)
    assert "describejobqueues" in str(exc.value)
    scaling = server.client("application-autoscaling")
    with pytest.raises(ClientError) as exc:
        scaling.describe_scheduled_actions(ServiceNamespace="sagemaker")
    assert _code(exc) == ("UnknownOperationException", 400)
    assert "DescribeScheduledActions" in str(exc.value)
