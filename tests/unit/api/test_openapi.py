"""The native API's OpenAPI document, generated from botocore's shapes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from moorage.api.native.openapi import build_openapi, docs_html


@dataclass(frozen=True)
class FakeRoute:
    method: str
    path: str
    operation: str
    service: str = "sagemaker"
    status: int = 200


ROUTES = [
    FakeRoute("POST", "/api/models", "CreateModel", status=201),
    FakeRoute("GET", "/api/models", "ListModels"),
    FakeRoute("GET", "/api/models/{ModelName}", "DescribeModel"),
    FakeRoute("DELETE", "/api/models/{ModelName}", "DeleteModel", status=204),
    FakeRoute("POST", "/api/endpoint-configs", "CreateEndpointConfig", status=201),
    FakeRoute("PUT", "/api/endpoints/{EndpointName}", "CreateEndpoint", status=201),
    FakeRoute("GET", "/api/endpoints", "ListEndpoints"),
    FakeRoute("GET", "/api/endpoints/{EndpointName}", "DescribeEndpoint"),
    FakeRoute("POST", "/api/endpoints/{EndpointName:str}/weights", "UpdateEndpointWeightsAndCapacities"),
    FakeRoute("DELETE", "/api/endpoints/{EndpointName}", "DeleteEndpoint", status=204),
    FakeRoute("POST", "/api/search", "Search"),  # SearchExpression is recursive
    FakeRoute("POST", "/api/scaling-policies", "PutScalingPolicy", service="application-autoscaling"),
]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build_openapi(ROUTES, title="Moorage", version="1.2.3")


def schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    result: dict[str, Any] = doc["components"]["schemas"][name]
    return result


def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {"title": "Moorage", "version": "1.2.3"}
    json.dumps(doc)  # plain JSON data


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    refs = re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', json.dumps(doc))
    assert refs
    missing = {(kind, name) for kind, name in refs if name not in doc["components"][kind]}
    assert missing == set()


def test_path_parameters_come_out_of_the_body(doc: dict[str, Any]) -> None:
    create = doc["paths"]["/api/endpoints/{EndpointName}"]["put"]
    assert create["operationId"] == "CreateEndpoint"
    assert create["tags"] == ["endpoints"]
    [parameter] = create["parameters"]
    assert parameter["name"] == "EndpointName" and parameter["in"] == "path" and parameter["required"]
    assert parameter["schema"] == {"$ref": "#/components/schemas/EndpointName"}
    assert create["requestBody"]["required"] is True
    body_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema(doc, body_ref.rsplit("/", 1)[1])
    assert "EndpointName" not in body["properties"]
    assert set(body["properties"]) == {"EndpointConfigName", "DeploymentConfig", "Tags"}
    assert body["required"] == ["EndpointConfigName"]
    assert body["additionalProperties"] is False
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateEndpointOutput"}


def test_starlette_convertors_are_dropped_from_the_template(doc: dict[str, Any]) -> None:
    weights = doc["paths"]["/api/endpoints/{EndpointName}/weights"]["post"]
    assert [p["name"] for p in weights["parameters"]] == ["EndpointName"]
    assert not any(":" in path for path in doc["paths"])


def test_post_without_path_parameters_sends_the_input_shape(doc: dict[str, Any]) -> None:
    create = doc["paths"]["/api/endpoint-configs"]["post"]
    assert "parameters" not in create
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateEndpointConfigInput"}
    config = schema(doc, "CreateEndpointConfigInput")
    assert config["required"] == ["EndpointConfigName", "ProductionVariants"]
    assert config["properties"]["ProductionVariants"]["$ref"] == "#/components/schemas/ProductionVariantList"


def test_get_members_become_query_parameters(doc: dict[str, Any]) -> None:
    listing = doc["paths"]["/api/endpoints"]["get"]
    assert "requestBody" not in listing
    parameters = {p["name"]: p for p in listing["parameters"]}
    assert {"MaxResults", "SortOrder", "NextToken", "CreationTimeAfter", "StatusEquals"} <= set(parameters)
    assert all(p["in"] == "query" and p["required"] is False for p in parameters.values())
    assert parameters["MaxResults"]["schema"] == {"$ref": "#/components/schemas/MaxResults"}
    assert "description" in parameters["MaxResults"]  # member documentation moves to the parameter
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ListEndpointsOutput"}


def test_delete_with_204_has_no_content_and_errors_share_one_schema(doc: dict[str, Any]) -> None:
    delete = doc["paths"]["/api/endpoints/{EndpointName}"]["delete"]
    assert delete["responses"]["204"] == {"description": "Success"}
    assert delete["responses"]["4XX"] == {"$ref": "#/components/responses/Error"}
    assert delete["responses"]["5XX"] == {"$ref": "#/components/responses/Error"}
    error = doc["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert set(schema(doc, "Error")["properties"]) == {"__type", "message"}


def test_scalar_and_container_shapes(doc: dict[str, Any]) -> None:
    assert schema(doc, "EndpointName") == {
        "type": "string", "maxLength": 63, "pattern": "^(?:[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})$"}
    assert schema(doc, "ProductionVariantList") == {
        "type": "array", "items": {"$ref": "#/components/schemas/ProductionVariant"},
        "minItems": 1, "maxItems": 10}
    environment = schema(doc, "EnvironmentMap")
    assert environment["type"] == "object" and environment["maxProperties"] == 100
    assert environment["additionalProperties"] == {"$ref": "#/components/schemas/EnvironmentValue"}
    assert environment["propertyNames"] == {"$ref": "#/components/schemas/EnvironmentKey"}
    assert schema(doc, "InitialTaskCount") == {"type": "integer", "format": "int32", "minimum": 1}
    assert schema(doc, "VariantWeight") == {"type": "number", "format": "float", "minimum": 0}
    assert schema(doc, "OrderKey") == {"type": "string", "enum": ["Ascending", "Descending"]}
    assert schema(doc, "Timestamp")["type"] == "number"
    variant = schema(doc, "ProductionVariant")
    assert variant["required"] == ["VariantName"]
    assert variant["properties"]["VariantName"]["$ref"] == "#/components/schemas/VariantName"


def test_relaxed_constraints_are_left_out(doc: dict[str, Any]) -> None:
    assert "pattern" not in schema(doc, "Url")
    assert "pattern" not in schema(doc, "ContainerImage")
    assert schema(doc, "ContainerImage")["maxLength"] == 255
    assert "enum" not in schema(doc, "ProductionVariantInstanceType")


def test_java_only_patterns_are_kept_as_an_extension(doc: dict[str, Any]) -> None:
    tag_key = schema(doc, "TagKey")
    assert "pattern" not in tag_key
    assert tag_key["x-aws-pattern"] == r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"


def test_recursive_shapes_use_refs(doc: dict[str, Any]) -> None:
    assert schema(doc, "SearchExpressionList")["items"] == {"$ref": "#/components/schemas/SearchExpression"}
    assert schema(doc, "SearchExpression")["properties"]["SubExpressions"]["$ref"] == (
        "#/components/schemas/SearchExpressionList")


def test_descriptions_are_plain_and_short(doc: dict[str, Any]) -> None:
    descriptions = re.findall(r'"description": "((?:[^"\\]|\\.)*)"', json.dumps(doc, ensure_ascii=False))
    assert len(descriptions) > 50
    assert not [d for d in descriptions if re.search(r"</?(p|code|a|b|i|ul|li|note)\b", d)]
    assert not [d for d in descriptions if "&lt;" in d or "&amp;" in d]
    assert max(len(json.loads(f'"{d}"')) for d in descriptions) <= 302
    assert doc["paths"]["/api/endpoints/{EndpointName}"]["get"]["description"] == (
        "Returns the description of an endpoint.")


def test_shapes_of_a_second_service_do_not_overwrite_the_first(doc: dict[str, Any]) -> None:
    put = doc["paths"]["/api/scaling-policies"]["post"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PutScalingPolicyRequest"}
    # both models define MetricName; sagemaker's was registered first
    assert "ApplicationAutoscalingMetricName" in doc["components"]["schemas"]
    assert schema(doc, "ApplicationAutoscalingMetricName") != schema(doc, "MetricName")


def test_repeated_operations_get_unique_operation_ids() -> None:
    doc = build_openapi([FakeRoute("GET", "/api/endpoints/{EndpointName}", "DescribeEndpoint"),
                         FakeRoute("GET", "/api/ep/{EndpointName}", "DescribeEndpoint")],
                        title="t", version="v")
    ids = [operation["operationId"] for item in doc["paths"].values() for operation in item.values()]
    assert ids == ["DescribeEndpoint", "DescribeEndpoint2"]


def test_unknown_path_parameters_are_strings() -> None:
    doc = build_openapi([FakeRoute("GET", "/api/endpoints/{EndpointName}/variants/{Variant}", "DescribeEndpoint")],
                        title="t", version="v")
    parameters = doc["paths"]["/api/endpoints/{EndpointName}/variants/{Variant}"]["get"]["parameters"]
    assert parameters[1] == {"name": "Variant", "in": "path", "required": True, "schema": {"type": "string"}}


def test_docs_html_loads_swagger_ui_from_jsdelivr() -> None:
    page = docs_html("/api/openapi.json")
    assert 'url: "/api/openapi.json"' in page
    assert "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js" in page
    assert "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css" in page
    hostile = docs_html('/x"</script><script>alert(1)</script>')
    assert "</script><script>alert" not in hostile


@dataclass(frozen=True)
class FakeExtra:
    method: str
    path: str
    operation: str
    summary: str
    query: tuple[str, ...] = ()


def test_moorage_routes_without_a_botocore_shape_are_documented_too() -> None:
    doc = build_openapi(ROUTES, title="Moorage", version="1", extras=[
        FakeExtra("GET", "/api/endpoints/{EndpointName}/logs", "GetEndpointLogs", "Logs.", ("TailBytes",))])
    op = doc["paths"]["/api/endpoints/{EndpointName}/logs"]["get"]
    assert op["operationId"] == "GetEndpointLogs" and op["summary"] == "Logs."
    assert [(p["name"], p["in"], p["required"]) for p in op["parameters"]] == [
        ("EndpointName", "path", True), ("TailBytes", "query", False)]


def test_every_declared_native_route_is_in_the_document() -> None:
    """The real route tables (botocore-shaped and Moorage-only) all reach /openapi.json."""
    from moorage.api.native.routes import EXTRAS, ROUTES as SERVED
    doc = build_openapi(SERVED, title="Moorage", version="1", extras=EXTRAS)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for route in [*SERVED, *EXTRAS]:
        assert (route.method, re.sub(r"\{(\w+)(?::\w+)?\}", r"{\1}", route.path)) in documented
