"""Request validation against botocore's service models, with AWS's wording.

boto3 checks only required members, Python types and ``min`` bounds before sending; ``max``,
patterns and enums are the server's job, and native REST users (same PascalCase shapes, but
no botocore in front of them) can send anything. So every control-plane call is checked here
against the operation's input shape, and every violation is reported at once, as SageMaker
does::

    2 validation errors detected: Value 'bad_name!' at 'endpointName' failed to satisfy
    constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62};
    Value null at 'endpointConfigName' failed to satisfy constraint: Member must not be null

Paths are lowerCamelCase, lists are addressed ``productionVariants.1.member.variantName``
(1-based). Shapes are compiled once per process into small nodes (:class:`_Node`), shared by
all operations, so a typical CreateEndpointConfig costs tens of microseconds.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from moorage.errors import ValidationException
from moorage.shapes import compile_java_pattern, operation_model

if TYPE_CHECKING:
    from re import Pattern

    from botocore.model import Shape

__all__ = ["RELAXATIONS", "coerce_query", "validate_input"]

#: Constraints of botocore shapes that Moorage deliberately does not enforce, keyed by
#: (service, shape name). A shape is shared by every member that uses it.
RELAXATIONS: Mapping[tuple[str, str], frozenset[str]] = {
    # Locations: Moorage reads file:// URLs and local paths as well as s3:// and https://,
    # but the models demand `(https|s3)://...`.
    ("sagemaker", "Url"): frozenset({"pattern"}),  # ContainerDefinition.ModelDataUrl
    ("sagemaker", "S3ModelUri"): frozenset({"pattern"}),  # ModelDataSource.S3DataSource.S3Uri
    # Transform input/output, training channels and output, checkpoints, compilation I/O:
    ("sagemaker", "S3Uri"): frozenset({"pattern"}),
    # AsyncInferenceOutputConfig.S3OutputPath/S3FailurePath, DataCaptureConfig.DestinationS3Uri:
    ("sagemaker", "DestinationS3Uri"): frozenset({"pattern"}),
    ("sagemaker-runtime", "InputLocationHeader"): frozenset({"pattern"}),  # InvokeEndpointAsync
    # Instance types are checked against Moorage's own catalog, which adds e.g. ml.local.
    ("sagemaker", "ProductionVariantInstanceType"): frozenset({"enum"}),
    ("sagemaker", "TransformInstanceType"): frozenset({"enum"}),
    ("sagemaker", "TrainingInstanceType"): frozenset({"enum"}),
    # Images also name local runtimes and commands with arguments (`command:./serve --port 8080`),
    # which the model's `[\S]+` forbids.
    ("sagemaker", "ContainerImage"): frozenset({"pattern"}),
}

_INT_BOUNDS = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_SCALARS = frozenset({"string", "integer", "long", "float", "double", "boolean", "timestamp", "blob"})


class _Node:
    """One compiled shape: only what validation needs, resolved ahead of time."""

    __slots__ = ("name", "kind", "min", "max", "enum", "enum_text", "pattern", "pattern_text",
                 "members", "required", "union", "item", "key")

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.min: float | None = None
        self.max: float | None = None
        self.enum: frozenset[str] | None = None
        self.enum_text = ""
        self.pattern: Pattern[str] | None = None
        self.pattern_text = ""
        #: structure members: wire name -> (lowerCamel path name, node)
        self.members: dict[str, tuple[str, _Node]] = {}
        self.required: frozenset[str] = frozenset()
        self.union = False
        self.item: _Node | None = None  # list member / map value
        self.key: _Node | None = None  # map key


def _build(service: str, shape: Shape, nodes: dict[str, _Node]) -> _Node:
    """Compile ``shape`` (and everything below it) into ``nodes``, keyed by shape name."""
    node = nodes.get(shape.name)
    if node is not None:
        return node
    meta = shape.metadata
    kind = "any" if meta.get("document") else shape.type_name
    node = nodes[shape.name] = _Node(shape.name, kind)  # registered first: shapes can recurse
    relaxed = RELAXATIONS.get((service, shape.name), frozenset())
    node.min, node.max = meta.get("min"), meta.get("max")
    if kind in _INT_BOUNDS:
        low, high = _INT_BOUNDS[kind]
        node.min = low if node.min is None else node.min
        node.max = high if node.max is None else node.max
    elif node.min == 0 and kind in ("string", "list", "map", "blob"):
        node.min = None  # a length is never negative
    if kind == "structure":
        node.members = {name: (name[:1].lower() + name[1:], _build(service, member, nodes))
                        for name, member in shape.members.items()}
        node.required = frozenset(shape.required_members)
        node.union = bool(meta.get("union"))
    elif kind == "list":
        node.item = _build(service, shape.member, nodes)
    elif kind == "map":
        node.key = _build(service, shape.key, nodes)
        node.item = _build(service, shape.value, nodes)
    elif kind == "string":
        if shape.enum and "enum" not in relaxed:
            node.enum = frozenset(shape.enum)
            node.enum_text = "[" + ", ".join(shape.enum) + "]"
        pattern = meta.get("pattern")
        if pattern and "pattern" not in relaxed:
            node.pattern = compile_java_pattern(pattern)  # None: untranslatable, not enforced
            # AWS quotes its server-side patterns, which start with ^; botocore strips it.
            node.pattern_text = pattern if pattern.startswith("^") else "^" + pattern
    return node


_NODES: dict[str, dict[str, _Node]] = {}  # service -> shape name -> node, shared by operations
_BUILD_LOCK = threading.Lock()  # a node is registered before its members are filled in


@lru_cache(maxsize=1024)
def _input_node(service: str, operation: str) -> _Node | None:
    """The compiled input shape of an operation (None when it takes no input)."""
    shape = operation_model(service, operation).input_shape
    if shape is None:
        return None
    with _BUILD_LOCK:
        return _build(service, shape, _NODES.setdefault(service, {}))


def validate_input(service: str, operation: str, params: Mapping[str, Any]) -> None:
    """Check ``params`` (PascalCase members, as boto3 sends them) against the operation's input.

    ``None`` counts as absent. Unknown members are rejected (boto3 never sends them, so they
    are typos of native API users).

    Raises:
        UnknownOperation: ``operation`` is not an operation of ``service``.
        ValidationException: one or more violations, all listed in AWS's wording.
    """
    node = _input_node(service, operation)
    errors: list[str] = []
    if node is None:
        node = _Node(f"{operation}Input", "structure")
    if isinstance(params, Mapping):
        _check_structure(node, params, "", errors)
    else:
        errors.append(_message(params, "input", "Member must be of type structure"))
    if errors:
        count = len(errors)
        noun = "error" if count == 1 else "errors"
        raise ValidationException(f"{count} validation {noun} detected: " + "; ".join(errors))


def _check(node: _Node, value: Any, path: str, errors: list[str]) -> None:
    kind = node.kind
    if kind in _SCALARS:
        for constraint in _scalar(node, value):
            errors.append(_message(value, path, constraint))
    elif kind == "structure":
        if isinstance(value, Mapping):
            _check_structure(node, value, path + ".", errors)
        else:
            errors.append(_message(value, path, "Member must be of type structure"))
    elif kind == "list":
        if not isinstance(value, list):
            errors.append(_message(value, path, "Member must be of type list"))
            return
        errors.extend(_message(value, path, failure) for failure in _lengths(node, len(value)))
        item = node.item
        assert item is not None
        for index, element in enumerate(value, 1):
            element_path = f"{path}.{index}.member"
            if element is None:
                errors.append(_message(None, element_path, "Member must not be null"))
            else:
                _check(item, element, element_path, errors)
    elif kind == "map":
        if not isinstance(value, Mapping):
            errors.append(_message(value, path, "Member must be of type map"))
            return
        errors.extend(_message(value, path, failure) for failure in _lengths(node, len(value)))
        _check_map(node, value, path, errors)
    # kind "any" (document shapes): anything goes


def _check_structure(node: _Node, value: Mapping[str, Any], prefix: str, errors: list[str]) -> None:
    """``prefix`` is the parent path plus a dot ("" at the top level)."""
    seen = 0
    members = node.members
    for name, (camel, child) in members.items():
        member_value = value.get(name)
        if name in value:
            seen += 1
        if member_value is None:
            if name in node.required:
                errors.append(_message(None, prefix + camel, "Member must not be null"))
        else:
            _check(child, member_value, prefix + camel, errors)
    if seen < len(value):
        for name in value:
            if name not in members:
                hint = difflib.get_close_matches(str(name), list(members), n=1)
                suggestion = f" (did you mean {hint[0]}?)" if hint else ""
                errors.append(_message(value[name], f"{prefix}{name}",
                                       f"Member is not defined in {node.name}{suggestion}"))
    if node.union and sum(value.get(name) is not None for name in members) != 1:
        errors.append(_message(value, prefix[:-1] or "input",
                               "Member must have exactly one of [" + ", ".join(members) + "] set"))


def _check_map(node: _Node, value: Mapping[Any, Any], path: str, errors: list[str]) -> None:
    """AWS folds key and scalar value violations into one error per map: 'Map keys must ...'."""
    key_node, value_node = node.key, node.item
    assert key_node is not None and value_node is not None
    key_failures: list[str] = []
    value_failures: list[str] = []
    for key, item in value.items():
        key_failures.extend(c for c in _scalar(key_node, key) if c not in key_failures)
        if value_node.kind in _SCALARS or item is None:
            failures = ["Member must not be null"] if item is None else _scalar(value_node, item)
            value_failures.extend(c for c in failures if c not in value_failures)
        else:
            _check(value_node, item, f"{path}.{key}", errors)
    if key_failures:
        errors.append(_message(value, path, "Map keys must satisfy constraint: ["
                               + ", ".join(key_failures) + "]"))
    if value_failures:
        errors.append(_message(value, path, "Map value must satisfy constraint: ["
                               + ", ".join(value_failures) + "]"))


def _scalar(node: _Node, value: Any) -> list[str]:
    """The violated constraints of one scalar value (empty when it is valid)."""
    kind = node.kind
    if kind == "string":
        if not isinstance(value, str):
            return ["Member must be of type string"]
        failures = _lengths(node, len(value))
        if node.enum is not None and value not in node.enum:
            failures.append(f"Member must satisfy enum value set: {node.enum_text}")
        if node.pattern is not None and node.pattern.fullmatch(value) is None:
            failures.append(f"Member must satisfy regular expression pattern: {node.pattern_text}")
        return failures
    if kind in _INT_BOUNDS:
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"Member must be of type {kind}"]
    elif kind in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            return [f"Member must be of type {kind}"]
    elif kind == "boolean":
        return [] if isinstance(value, bool) else ["Member must be of type boolean"]
    elif kind == "timestamp":
        return [] if _timestamp(value) is not None else ["Member must be of type timestamp"]
    elif kind == "blob":
        if isinstance(value, (bytes, bytearray)):
            return _lengths(node, len(value))
        return [] if isinstance(value, str) else ["Member must be of type blob"]
    failures = []
    if node.min is not None and value < node.min:
        failures.append(f"Member must have value greater than or equal to {node.min}")
    if node.max is not None and value > node.max:
        failures.append(f"Member must have value less than or equal to {node.max}")
    return failures


def _lengths(node: _Node, length: int) -> list[str]:
    failures = []
    if node.min is not None and length < node.min:
        failures.append(f"Member must have length greater than or equal to {node.min}")
    if node.max is not None and length > node.max:
        failures.append(f"Member must have length less than or equal to {node.max}")
    return failures


def _timestamp(value: Any) -> float | None:
    """Epoch seconds from a number, an ISO-8601 string or a datetime; None if it is neither."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    return None


def _message(value: Any, path: str, constraint: str) -> str:
    shown = "null" if value is None else f"'{_render(value)}'"
    return f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}"


def _render(value: Any, limit: int = 512) -> str:
    """Java-ish rendering of a value, as AWS echoes it (capped: values can be large)."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray)):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_render(v, limit) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k}={_render(v, limit)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def coerce_query(service: str, operation: str, query: Mapping[str, str]) -> dict[str, Any]:
    """Type the string query parameters of a native GET call by the operation's input shape.

    ``?MaxResults=5&SortOrder=Ascending&CreationTimeAfter=2024-01-01T00:00:00Z`` becomes
    ``{"MaxResults": 5, "SortOrder": "Ascending", "CreationTimeAfter": 1704067200.0}``.
    Timestamps become epoch seconds, as boto3 sends them. Values that do not parse, and
    names the shape does not know, are kept as strings for :func:`validate_input` to reject.
    """
    node = _input_node(service, operation)
    members = node.members if node is not None else {}
    typed: dict[str, Any] = {}
    for name, raw in query.items():
        spec = members.get(name)
        typed[name] = raw if spec is None else _coerce(spec[1].kind, raw)
    return typed


def _coerce(kind: str, raw: str) -> Any:
    text = raw.strip()
    try:
        if kind in _INT_BOUNDS:
            return int(text)
        if kind in ("float", "double"):
            return float(text)
    except ValueError:
        return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower(), raw)
    if kind == "timestamp":
        seconds = _timestamp(text)
        return raw if seconds is None else seconds
    return raw
