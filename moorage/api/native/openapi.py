"""The OpenAPI 3.1 document of the native REST API, generated from botocore's shapes.

The native API speaks the same PascalCase shapes as the AWS wire protocol, so its schema is
derived from the one authority (botocore's service models, :mod:`moorage.shapes`) instead of
being restated by hand: every shape becomes one JSON Schema under ``components/schemas`` and
is referenced by ``$ref`` (which also covers recursive shapes). Constraints Moorage relaxes
(:data:`moorage.control.validation.RELAXATIONS`) are left out, so the document describes
what the server accepts.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from moorage.control.validation import RELAXATIONS
from moorage.shapes import operation_model, service_model

if TYPE_CHECKING:
    from botocore.model import Shape

__all__ = ["Extra", "Route", "build_openapi", "docs_html"]

_DOC_LIMIT = 300  # characters of documentation per description: keeps the document small
_BODY_METHODS = frozenset({"post", "put", "patch"})
_PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")  # Starlette: {name} or {name:convertor}
_TAG = re.compile(r"<[^>]+>")
_ERROR_REF = {"$ref": "#/components/responses/Error"}
_TIMESTAMP_DOC = "Epoch seconds (ISO-8601 strings are also accepted on input)."


class Route(Protocol):
    """What :func:`build_openapi` needs to know of one native route (read-only attributes)."""

    @property
    def method(self) -> str: ...  # "GET", "POST", ...
    @property
    def path(self) -> str: ...  # Starlette template, e.g. "/api/endpoints/{EndpointName}"
    @property
    def operation(self) -> str: ...  # SageMaker operation name, e.g. "CreateEndpoint"
    @property
    def service(self) -> str: ...  # botocore service name, e.g. "sagemaker"
    @property
    def status(self) -> int: ...  # HTTP status of success


class Extra(Protocol):
    """A Moorage route with no botocore shape (progress, logs, keys, ...): documented by its
    summary, its path parameters and ``query`` parameters; it answers a JSON object."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def query(self) -> tuple[str, ...]: ...


def build_openapi(routes: Iterable[Route], *, title: str, version: str,
                  extras: Iterable[Extra] = ()) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document for ``routes``.

    Path parameters are members of the operation's input shape. For GET, HEAD and DELETE the
    other members are query parameters; for POST, PUT and PATCH they form the JSON body.
    Errors are ``{"__type": ..., "message": ...}``, as on the AWS wire.
    """
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for route in routes:
        template = _PATH_PARAM.sub(r"{\1}", route.path)
        operation_id = _unique(route.operation, operation_ids)
        operation_ids.add(operation_id)
        paths.setdefault(template, {})[route.method.lower()] = {
            "operationId": operation_id, **_operation(route, template, schemas)}
    for extra in extras:
        template = _PATH_PARAM.sub(r"{\1}", extra.path)
        operation_id = _unique(extra.operation, operation_ids)
        operation_ids.add(operation_id)
        parameters = [_parameter(n, "path", True, {"type": "string"}) for n in _PATH_PARAM.findall(extra.path)]
        parameters += [_parameter(n, "query", False, {"type": "string"}) for n in extra.query]
        paths.setdefault(template, {})[extra.method.lower()] = {
            "operationId": operation_id, "summary": extra.summary, "tags": ["moorage"],
            **({"parameters": parameters} if parameters else {}),
            "responses": {"200": {"description": "Success", "content": {"application/json": {
                "schema": {"type": "object"}}}}, "4XX": dict(_ERROR_REF), "5XX": dict(_ERROR_REF)}}

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "responses": {"Error": {
                "description": "Error (the same document as the AWS wire protocol)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }},
        },
    }


def _operation(route: Route, template: str, schemas: _Schemas) -> dict[str, Any]:
    """The Operation Object of one route (without its operationId)."""
    model = operation_model(route.service, route.operation)
    operation: dict[str, Any] = {"summary": route.operation}
    description = _describe(model.documentation)
    if description:
        operation["description"] = description
    tag = next((part for part in template.split("/") if part and part != "api"), "")
    if tag and not tag.startswith("{"):
        operation["tags"] = [tag]

    shape = model.input_shape
    members = dict(shape.members) if shape is not None else {}
    required = set(shape.required_members) if shape is not None else set()
    parameters = []
    for name in _PATH_PARAM.findall(route.path):
        member = members.pop(name, None)
        schema = schemas.ref(route.service, member) if member is not None else {"type": "string"}
        parameters.append(_parameter(name, "path", True, schema))
    if route.method.lower() in _BODY_METHODS:
        if shape is not None and members:
            operation["requestBody"] = {
                "required": bool(required & set(members)),
                "content": {"application/json": {
                    "schema": schemas.body(route.service, shape, members, required)}},
            }
    else:
        parameters.extend(_parameter(name, "query", name in required, schemas.ref(route.service, member))
                          for name, member in members.items())
    if parameters:
        operation["parameters"] = parameters

    success: dict[str, Any] = {"description": "Success"}
    output = model.output_shape
    if output is not None and output.members and route.status != 204:
        success["content"] = {"application/json": {"schema": schemas.ref(route.service, output)}}
    operation["responses"] = {str(route.status): success, "4XX": dict(_ERROR_REF), "5XX": dict(_ERROR_REF)}
    return operation


def _parameter(name: str, location: str, required: bool, schema: dict[str, Any]) -> dict[str, Any]:
    parameter = {"name": name, "in": location, "required": required, "schema": schema}
    if "description" in schema:
        parameter["description"] = schema.pop("description")
    return parameter


class _Schemas:
    """botocore shapes → JSON Schema components, one per (service, shape), named after the shape."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {"Error": {
            "type": "object",
            "properties": {
                "__type": {"type": "string", "description": "Error code, e.g. ValidationException."},
                "message": {"type": "string"},
            },
            "required": ["__type", "message"],
        }}
        self._names: dict[tuple[str, str], str] = {}

    def ref(self, service: str, shape: Shape) -> dict[str, Any]:
        """A ``$ref`` to ``shape``'s component, with the member's own documentation if any."""
        base = service_model(service).shape_for(shape.name)  # without the member's traits
        key = (service, shape.name)
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = _unique(shape.name, self.components, prefix=_pascal(service))
            self.components[name] = {}  # holds the name while members (maybe itself) convert
            self.components[name] = self._schema(service, base)
        reference: dict[str, Any] = {"$ref": f"#/components/schemas/{name}"}
        if shape.documentation and shape.documentation != base.documentation:
            reference["description"] = _describe(shape.documentation)
        return reference

    def body(self, service: str, shape: Shape, members: dict[str, Shape],
             required: set[str]) -> dict[str, Any]:
        """The request body: the input shape itself, or a copy without its path parameters."""
        if len(members) == len(shape.members):
            return self.ref(service, shape)
        schema = self._structure(service, members, required, shape.documentation)
        name = _unique(f"{shape.name}Body", self.components)
        self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def _schema(self, service: str, shape: Shape) -> dict[str, Any]:
        kind, meta = shape.type_name, shape.metadata
        relaxed = RELAXATIONS.get((service, shape.name), frozenset())
        low, high = meta.get("min"), meta.get("max")
        schema: dict[str, Any]
        if kind == "structure":
            schema = self._structure(service, dict(shape.members), set(shape.required_members),
                                     shape.documentation)
            if meta.get("union"):
                schema.update(minProperties=1, maxProperties=1)
            return schema
        if kind == "list":
            schema = {"type": "array", "items": self.ref(service, shape.member)}
            bounds = ("minItems", "maxItems")
        elif kind == "map":
            schema = {"type": "object", "additionalProperties": self.ref(service, shape.value),
                      "propertyNames": self.ref(service, shape.key)}
            bounds = ("minProperties", "maxProperties")
        elif kind in ("string", "blob"):
            schema = {"type": "string"}
            bounds = ("minLength", "maxLength")
            if getattr(shape, "enum", None) and "enum" not in relaxed:
                schema["enum"] = list(shape.enum)
            if meta.get("pattern") and "pattern" not in relaxed:
                schema.update(_pattern(meta["pattern"]))
        elif kind in ("integer", "long", "float", "double"):
            integral = kind in ("integer", "long")
            schema = {"type": "integer" if integral else "number",
                      "format": {"integer": "int32", "long": "int64"}.get(kind, kind)}
            bounds = ("minimum", "maximum")
        elif kind == "boolean":
            schema, bounds = {"type": "boolean"}, ("", "")
        elif kind == "timestamp":
            return {"type": "number", "description": _TIMESTAMP_DOC}
        else:  # pragma: no cover - botocore has no other types
            schema, bounds = {}, ("", "")
        if low is not None and bounds[0] and not (low == 0 and bounds[0] != "minimum"):
            schema[bounds[0]] = low
        if high is not None and bounds[1]:
            schema[bounds[1]] = high
        description = _describe(shape.documentation)
        if description:
            schema["description"] = description
        return schema

    def _structure(self, service: str, members: dict[str, Shape], required: set[str],
                   documentation: str) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name: self.ref(service, member) for name, member in members.items()},
            "additionalProperties": False,  # validation rejects unknown members
        }
        names = [name for name in members if name in required]
        if names:
            schema["required"] = names
        description = _describe(documentation)
        if description:
            schema["description"] = description
        return schema


def _pattern(java: str) -> dict[str, str]:
    """``pattern`` anchored (AWS patterns match whole values), or ``x-aws-pattern`` for the few
    Java regexes (``\\p{L}``, surrogate pairs) that the common JSON Schema tooling cannot read."""
    anchored = f"^(?:{java})$"
    try:
        re.compile(anchored)
    except re.error:
        return {"x-aws-pattern": java}
    return {"pattern": anchored}


def _describe(documentation: str) -> str:
    """Shape documentation as plain text, cut at a word boundary near :data:`_DOC_LIMIT`."""
    text = " ".join(html.unescape(_TAG.sub(" ", documentation or "")).split())
    if len(text) <= _DOC_LIMIT:
        return text
    return text[:_DOC_LIMIT].rsplit(" ", 1)[0] + " …"


def _pascal(service: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^a-zA-Z0-9]", service))


def _unique(name: str, taken: Any, prefix: str = "") -> str:
    """``name``, or failing that ``prefix + name``, or a numbered variant, not in ``taken``."""
    if name not in taken:
        return name
    if prefix and prefix + name not in taken:
        return prefix + name
    number = 2
    while f"{prefix}{name}{number}" in taken:
        number += 1
    return f"{prefix}{name}{number}"


def docs_html(openapi_url: str, *, title: str = "Moorage API") -> str:
    """A Swagger UI page (swagger-ui-dist from the jsDelivr CDN) showing ``openapi_url``."""
    cdn = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
    url = json.dumps(openapi_url).replace("<", "\\u003c")  # safe inside <script>
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{html.escape(title)}</title>
  <link rel="stylesheet" href="{cdn}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{cdn}/swagger-ui-bundle.js" crossorigin="anonymous"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: {url}, dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""
