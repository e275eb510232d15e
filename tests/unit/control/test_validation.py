"""validate_input / coerce_query against botocore's sagemaker model, with AWS's exact wording."""

from __future__ import annotations

import time
import warnings
from typing import Any

import pytest

from moorage.control.validation import RELAXATIONS, coerce_query, validate_input
from moorage.errors import UnknownOperation, ValidationException
from moorage.shapes import compile_java_pattern, service_model

NAME_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"


def errors_of(operation: str, params: Any, service: str = "sagemaker") -> str:
    with pytest.raises(ValidationException) as info:
        validate_input(service, operation, params)
    assert info.value.aws_code == "ValidationException"
    return info.value.message


def variant(**overrides: Any) -> dict[str, Any]:
    return {"VariantName": "AllTraffic", "ModelName": "model-a", "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0, **overrides}


def endpoint_config(**overrides: Any) -> dict[str, Any]:
    return {"EndpointConfigName": "config-1", "ProductionVariants": [variant()], **overrides}


# --- exact AWS wording -------------------------------------------------------------------

def test_missing_required_members_are_all_reported_in_shape_order() -> None:
    assert errors_of("CreateEndpoint", {}) == (
        "2 validation errors detected: "
        "Value null at 'endpointName' failed to satisfy constraint: Member must not be null; "
        "Value null at 'endpointConfigName' failed to satisfy constraint: Member must not be null"
    )


def test_bad_pattern() -> None:
    assert errors_of("CreateEndpoint", {"EndpointName": "bad_name!", "EndpointConfigName": "c"}) == (
        "1 validation error detected: Value 'bad_name!' at 'endpointName' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {NAME_PATTERN}"
    )


def test_too_long_name_breaks_max_length_and_the_pattern() -> None:
    name = "a" * 64
    assert errors_of("DescribeEndpoint", {"EndpointName": name}) == (
        f"2 validation errors detected: Value '{name}' at 'endpointName' failed to satisfy "
        "constraint: Member must have length less than or equal to 63; "
        f"Value '{name}' at 'endpointName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {NAME_PATTERN}"
    )


def test_enum_violation() -> None:
    assert errors_of("ListEndpoints", {"SortOrder": "Up"}) == (
        "1 validation error detected: Value 'Up' at 'sortOrder' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Ascending, Descending]"
    )


def test_number_below_minimum_in_a_list_member_uses_one_based_member_paths() -> None:
    params = endpoint_config(ProductionVariants=[variant(), variant(VariantName="b", InitialInstanceCount=-1)])
    assert errors_of("CreateEndpointConfig", params) == (
        "1 validation error detected: Value '-1' at 'productionVariants.2.member.initialInstanceCount' "
        "failed to satisfy constraint: Member must have value greater than or equal to 1"
    )


def test_number_above_maximum() -> None:
    assert errors_of("ListEndpoints", {"MaxResults": 101}) == (
        "1 validation error detected: Value '101' at 'maxResults' failed to satisfy constraint: "
        "Member must have value less than or equal to 100"
    )


def test_list_too_long() -> None:
    params = endpoint_config(ProductionVariants=[variant(VariantName=f"v{i}") for i in range(11)])
    message = errors_of("CreateEndpointConfig", params)
    assert message.startswith("1 validation error detected: Value '[{VariantName=v0, ModelName=model-a")
    assert message.endswith("' at 'productionVariants' failed to satisfy constraint: "
                            "Member must have length less than or equal to 10")


def test_list_too_short() -> None:
    assert errors_of("CreateEndpointConfig", endpoint_config(ProductionVariants=[])) == (
        "1 validation error detected: Value '[]' at 'productionVariants' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1"
    )


def test_unknown_members_are_rejected_by_their_given_name_with_a_suggestion() -> None:
    assert errors_of("DescribeEndpoint", {"EndpointNmae": "ep"}) == (
        "2 validation errors detected: "
        "Value null at 'endpointName' failed to satisfy constraint: Member must not be null; "
        "Value 'ep' at 'EndpointNmae' failed to satisfy constraint: "
        "Member is not defined in DescribeEndpointInput (did you mean EndpointName?)"
    )
    message = errors_of("CreateEndpointConfig", endpoint_config(ProductionVariants=[variant(Colour="red")]))
    assert message == (
        "1 validation error detected: Value 'red' at 'productionVariants.1.member.Colour' "
        "failed to satisfy constraint: Member is not defined in ProductionVariant"
    )


def test_every_violation_is_counted() -> None:
    message = errors_of("CreateEndpointConfig", {
        "EndpointConfigName": "bad_name!",
        "ProductionVariants": [variant(InitialInstanceCount=0, InitialVariantWeight=-1)],
    })
    assert message.startswith("3 validation errors detected: ")
    assert message.count("failed to satisfy constraint") == 3
    assert "Value '0' at 'productionVariants.1.member.initialInstanceCount'" in message
    assert ("Value '-1' at 'productionVariants.1.member.initialVariantWeight' failed to satisfy "
            "constraint: Member must have value greater than or equal to 0") in message


def test_map_keys_and_values_are_reported_once_per_map() -> None:
    params = {"ModelName": "m", "PrimaryContainer": {"Environment": {"9BAD": "x", "OK": 3}}}
    assert errors_of("CreateModel", params) == (
        "2 validation errors detected: Value '{9BAD=x, OK=3}' at 'primaryContainer.environment' "
        "failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy "
        "regular expression pattern: ^[a-zA-Z_][a-zA-Z0-9_]*]; Value '{9BAD=x, OK=3}' at "
        "'primaryContainer.environment' failed to satisfy constraint: Map value must satisfy "
        "constraint: [Member must be of type string]"
    )


# --- types -------------------------------------------------------------------------------

@pytest.mark.parametrize(("member", "value", "expected"), [
    ("InitialInstanceCount", True, "Member must be of type integer"),  # bool is not int
    ("InitialInstanceCount", 1.5, "Member must be of type integer"),
    ("InitialInstanceCount", "1", "Member must be of type integer"),
    ("InitialInstanceCount", 2**31, "Member must have value less than or equal to 2147483647"),
    ("InitialVariantWeight", False, "Member must be of type float"),
    ("InitialVariantWeight", float("nan"), "Member must be of type float"),
    ("VariantName", 7, "Member must be of type string"),
    ("EnableSSMAccess", "yes", "Member must be of type boolean"),
    ("ServerlessConfig", [], "Member must be of type structure"),
])
def test_type_mismatches(member: str, value: Any, expected: str) -> None:
    message = errors_of("CreateEndpointConfig", endpoint_config(ProductionVariants=[variant(**{member: value})]))
    assert message.startswith("1 validation error detected: ")
    camel = member[0].lower() + member[1:]
    assert message.endswith(f"at 'productionVariants.1.member.{camel}' failed to satisfy constraint: {expected}")


def test_list_and_map_types() -> None:
    assert errors_of("CreateEndpointConfig", endpoint_config(ProductionVariants={"a": 1})).endswith(
        "at 'productionVariants' failed to satisfy constraint: Member must be of type list")
    assert errors_of("CreateModel", {"ModelName": "m", "PrimaryContainer": {"Environment": ["A"]}}).endswith(
        "at 'primaryContainer.environment' failed to satisfy constraint: Member must be of type map")
    assert errors_of("DescribeEndpoint", ["ep"]) == (
        "1 validation error detected: Value '[ep]' at 'input' failed to satisfy constraint: "
        "Member must be of type structure")


def test_null_list_element_is_rejected() -> None:
    assert errors_of("CreateEndpointConfig", endpoint_config(ProductionVariants=[None])).endswith(
        "Value null at 'productionVariants.1.member' failed to satisfy constraint: Member must not be null")


def test_timestamps_take_numbers_and_iso_8601_strings() -> None:
    for value in (1704067200, 1704067200.5, "2024-01-01T00:00:00Z", "2024-01-01T00:00:00+02:00", "2024-01-01"):
        validate_input("sagemaker", "ListEndpoints", {"CreationTimeAfter": value})
    for value in ("yesterday", True, [1]):
        assert errors_of("ListEndpoints", {"CreationTimeAfter": value}).endswith(
            "at 'creationTimeAfter' failed to satisfy constraint: Member must be of type timestamp")


def test_null_optional_members_count_as_absent() -> None:
    validate_input("sagemaker", "ListEndpoints", {"SortOrder": None, "NextToken": None})


def test_union_needs_exactly_one_member() -> None:
    message = errors_of("CreateAIRecommendationJob", {"AdapterSource": {"ModelPackageArns": [], "S3Uris": []}})
    assert ("at 'adapterSource' failed to satisfy constraint: "
            "Member must have exactly one of [ModelPackageArns, S3Uris] set") in message


def test_unicode_property_classes_in_patterns() -> None:
    pytest.importorskip("regex")
    tags = [{"Key": "équipe 2", "Value": "données"}]
    validate_input("sagemaker", "AddTags", {"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m", "Tags": tags})
    message = errors_of("CreateEndpoint", {"EndpointName": "e", "EndpointConfigName": "c",
                                           "Tags": [{"Key": "k!", "Value": "v"}]})
    assert message == (
        "1 validation error detected: Value 'k!' at 'tags.1.member.key' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)")


# --- valid requests and Moorage's relaxations ---------------------------------------------

def test_valid_hosting_requests_pass() -> None:
    validate_input("sagemaker", "CreateModel", {
        "ModelName": "model-a",
        "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sklearn:1.2-1",
                             "ModelDataUrl": "s3://bucket/model.tar.gz", "Mode": "SingleModel",
                             "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}},
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
        "Tags": [{"Key": "team", "Value": "ml"}],
    })
    validate_input("sagemaker", "CreateEndpointConfig", endpoint_config(
        ProductionVariants=[variant(), variant(VariantName="b", InitialVariantWeight=0)],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://bucket/out"},
                              "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4}},
        DataCaptureConfig={"EnableCapture": True, "InitialSamplingPercentage": 100,
                           "DestinationS3Uri": "s3://bucket/capture",
                           "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]},
    ))
    validate_input("sagemaker", "CreateEndpoint", {"EndpointName": "ep-1", "EndpointConfigName": "config-1"})
    validate_input("sagemaker", "UpdateEndpointWeightsAndCapacities", {
        "EndpointName": "ep-1",
        "DesiredWeightsAndCapacities": [{"VariantName": "AllTraffic", "DesiredWeight": 2, "DesiredInstanceCount": 0}],
    })


def test_relaxations_accept_local_locations_instance_types_and_images() -> None:
    for image, url in [("moorage/sklearn", "file:///tmp/model.tar.gz"),
                       ("command:./serve --port 8080", "/tmp/x"), ("moorage/xgboost", "relative/dir")]:
        validate_input("sagemaker", "CreateModel", {
            "ModelName": "m", "PrimaryContainer": {"Image": image, "ModelDataUrl": url}})
    validate_input("sagemaker", "CreateModel", {"ModelName": "m", "PrimaryContainer": {
        "Image": "moorage/sklearn",
        "ModelDataSource": {"S3DataSource": {"S3Uri": "/tmp/model/", "S3DataType": "S3Prefix",
                                             "CompressionType": "None"}}}})
    validate_input("sagemaker", "CreateEndpointConfig", endpoint_config(
        ProductionVariants=[variant(InstanceType="ml.local")],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "file:///tmp/out", "S3FailurePath": "/tmp/fail"}},
        DataCaptureConfig={"InitialSamplingPercentage": 10, "DestinationS3Uri": "/tmp/capture",
                           "CaptureOptions": [{"CaptureMode": "Input"}]},
    ))


def test_relaxations_do_not_switch_off_other_constraints() -> None:
    assert errors_of("CreateModel", {"ModelName": "m", "PrimaryContainer": {"Image": "x" * 256}}).endswith(
        "Member must have length less than or equal to 255")
    assert "at 'executionRoleArn' failed to satisfy constraint: Member must satisfy regular expression" in errors_of(
        "CreateModel", {"ModelName": "m", "ExecutionRoleArn": "not-an-arn"})


def test_every_relaxation_names_a_shape_that_has_the_constraint() -> None:
    """Guards the table against botocore renaming or dropping a shape."""
    for (service, shape_name), constraints in RELAXATIONS.items():
        shape = service_model(service).shape_for(shape_name)
        for constraint in constraints:
            assert shape.metadata.get(constraint), (service, shape_name, constraint)


# --- Java patterns ------------------------------------------------------------------------

@pytest.mark.parametrize("service", ["sagemaker", "sagemaker-runtime", "application-autoscaling"])
def test_every_model_pattern_compiles_without_warnings(service: str) -> None:
    pytest.importorskip("regex")
    raw = service_model(service)._shape_resolver._shape_map  # noqa: SLF001 - test-only survey
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        failed = [name for name, shape in raw.items()
                  if "pattern" in shape and compile_java_pattern(shape["pattern"]) is None]
    assert failed == []


def test_java_only_pattern_syntax_is_translated() -> None:
    ascii_alnum = compile_java_pattern(r"arn:[\p{Alnum}\-]+")
    assert ascii_alnum is not None
    assert ascii_alnum.fullmatch("arn:us-east-1")
    assert not ascii_alnum.fullmatch("arn:é")  # Java's POSIX classes are ASCII only
    printable = compile_java_pattern(r"\A\S[\p{Print}]*\z")
    assert printable is not None and printable.fullmatch("a b") and not printable.fullmatch("a\n")
    supplementary = compile_java_pattern(r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*")
    assert supplementary is not None and supplementary.fullmatch("hi \U0001f600") and not supplementary.fullmatch("\x01")


# --- operations, query coercion, cost -----------------------------------------------------

def test_unknown_operation() -> None:
    with pytest.raises(UnknownOperation, match="^Operation CreateSpaceship is not supported by Moorage.$"):
        validate_input("sagemaker", "CreateSpaceship", {})


def test_coerce_query_types_values_by_the_input_shape() -> None:
    query = {"MaxResults": "5", "SortOrder": "Ascending", "CreationTimeAfter": "2024-01-01T00:00:00Z",
             "CreationTimeBefore": "1704067200.5", "NextToken": "123", "Colour": "7"}
    assert coerce_query("sagemaker", "ListEndpoints", query) == {
        "MaxResults": 5, "SortOrder": "Ascending", "CreationTimeAfter": 1704067200.0,
        "CreationTimeBefore": 1704067200.5, "NextToken": "123", "Colour": "7"}
    assert coerce_query("sagemaker", "ListModelPackages", {"ModelApprovalStatus": "Approved"}) == {
        "ModelApprovalStatus": "Approved"}
    assert coerce_query("sagemaker", "DescribeModelPackageGroup", {}) == {}
    assert coerce_query("sagemaker", "ListCandidatesForAutoMLJob", {"MaxResults": "x"}) == {"MaxResults": "x"}
    assert coerce_query("sagemaker", "DeleteEndpointConfig", {"EndpointConfigName": "c"}) == {
        "EndpointConfigName": "c"}


def test_coerce_query_booleans_and_floats() -> None:
    typed = coerce_query("sagemaker", "UpdateEndpoint", {"RetainAllVariantProperties": "TRUE",
                                                         "RetainDeploymentConfig": "maybe"})
    assert typed == {"RetainAllVariantProperties": True, "RetainDeploymentConfig": "maybe"}
    assert coerce_query("sagemaker", "ListEndpoints", {"CreationTimeAfter": "soon"}) == {"CreationTimeAfter": "soon"}


def test_unparsed_query_values_are_left_for_validation_to_reject() -> None:
    typed = coerce_query("sagemaker", "ListEndpoints", {"MaxResults": "many", "Colour": "red"})
    assert errors_of("ListEndpoints", typed) == (
        "2 validation errors detected: Value 'many' at 'maxResults' failed to satisfy constraint: "
        "Member must be of type integer; Value 'red' at 'Colour' failed to satisfy constraint: "
        "Member is not defined in ListEndpointsInput")


def test_validation_is_compiled_once_and_cheap() -> None:
    params = endpoint_config(ProductionVariants=[variant(), variant(VariantName="b")],
                             Tags=[{"Key": "team", "Value": "ml"}])
    validate_input("sagemaker", "CreateEndpointConfig", params)  # compiles
    calls = 500
    start = time.perf_counter()
    for _ in range(calls):
        validate_input("sagemaker", "CreateEndpointConfig", params)
    per_call = (time.perf_counter() - start) / calls
    assert per_call < 500e-6  # ~20 µs measured; a generous bound that still catches recompiling


def test_recursive_shapes() -> None:
    deep = {"SubExpressions": [{"SubExpressions": [{"Operator": "Xor"}]}]}
    message = errors_of("Search", {"Resource": "TrainingJob", "SearchExpression": deep})
    assert message == (
        "1 validation error detected: Value 'Xor' at "
        "'searchExpression.subExpressions.1.member.subExpressions.1.member.operator' "
        "failed to satisfy constraint: Member must satisfy enum value set: [And, Or]")
