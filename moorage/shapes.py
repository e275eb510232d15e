"""botocore's service models, the authority on AWS request and response shapes.

Moorage never restates an AWS shape by hand: names, types, bounds, patterns and enums come
from the JSON models that ship inside botocore, so the AWS wire layer, the native REST API,
request validation (:mod:`moorage.control.validation`) and the OpenAPI document
(:mod:`moorage.api.native.openapi`) all agree with what boto3 itself sends.

Loading is lazy and cached: importing botocore costs about 0.1 s and parsing the sagemaker
model (3,100 shapes, 400 operations) another 0.1 s, so it happens on the first request that
needs a service, once per process, not at import time.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from moorage.errors import UnknownOperation

if TYPE_CHECKING:
    from botocore.model import OperationModel, ServiceModel

__all__ = ["compile_java_pattern", "operation_model", "service_model"]


@lru_cache(maxsize=None)
def service_model(service: str) -> ServiceModel:
    """Return botocore's model of ``service`` (e.g. ``"sagemaker"``), loaded once per process.

    Raises:
        botocore.exceptions.UnknownServiceError: ``service`` is not a botocore service name
            (a programming error: Moorage only asks for the services it serves).
    """
    # Imported here so that importing moorage (the CLI, the instance runtime) stays fast.
    from botocore.loaders import Loader
    from botocore.model import ServiceModel

    return ServiceModel(Loader().load_service_model(service, "service-2"), service_name=service)


@lru_cache(maxsize=1024)
def operation_model(service: str, operation: str) -> OperationModel:
    """Return the model of ``operation`` (PascalCase, e.g. ``"CreateEndpoint"``) of ``service``.

    Raises:
        UnknownOperation: the service has no such operation. The message is generic so that
            transports may re-word it for their protocol.
    """
    from botocore.model import OperationNotFoundError

    try:
        return service_model(service).operation_model(operation)
    except OperationNotFoundError as exc:
        raise UnknownOperation(f"Operation {operation} is not supported by Moorage.") from exc


# Java's POSIX classes are US-ASCII only; `regex` would read them as Unicode classes.
_POSIX_CLASSES = {
    "Lower": "a-z", "Upper": "A-Z", "ASCII": "\\x00-\\x7f", "Alpha": "a-zA-Z", "Digit": "0-9",
    "Alnum": "a-zA-Z0-9", "Punct": "!-/:-@\\[-`{-~", "Graph": "!-~", "Print": " -~",
    "Blank": " \\t", "Cntrl": "\\x00-\\x1f\\x7f", "XDigit": "0-9a-fA-F", "Space": " \\t\\n\\x0b\\f\\r",
}
_SURROGATE_PAIR = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)


def _combine_surrogates(match: re.Match[str]) -> str:
    high, low = int(match[1], 16), int(match[2], 16)
    return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"


def _translate(pattern: str) -> str:
    """Rewrite the Java-only parts of a model pattern in Python syntax.

    Handles UTF-16 surrogate pairs (``\\uD800\\uDC00-\\uDBFF\\uDFFF`` = U+10000..U+10FFFF),
    ``\\z`` (end of input) and the ASCII POSIX classes (``\\p{Alnum}``, ``\\p{Print}`` ...).
    """
    pattern = _SURROGATE_PAIR.sub(_combine_surrogates, pattern)
    out: list[str] = []
    depth, i = 0, 0  # depth: inside a character class
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escape = pattern[i:i + 2]
            if escape == "\\z":
                escape = "\\Z"
            elif escape == "\\p" and pattern.startswith("{", i + 2) and "}" in pattern[i:]:
                end = pattern.index("}", i)
                ascii_class = _POSIX_CLASSES.get(pattern[i + 3:end])
                if ascii_class is not None:
                    out.append(ascii_class if depth else f"[{ascii_class}]")
                    i = end + 1
                    continue
            out.append(escape)
            i += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        out.append(char)
        i += 1
    return "".join(out)


@lru_cache(maxsize=None)
def compile_java_pattern(pattern: str) -> re.Pattern[str] | None:
    """Compile a botocore ``pattern`` (a Java regex) for ``fullmatch``, like Java's ``matches()``.

    The stdlib ``re`` takes most patterns once translated; those with Unicode property
    classes (``\\p{L}``, as in ``TagKey``) need the ``regex`` package. Returns None when
    neither can compile the pattern: it is then not enforced (better than rejecting valid input).
    """
    python = _translate(pattern)
    try:
        return re.compile(python)
    except re.error:
        pass
    try:  # Unicode property classes (\\p{L}, \\p{N}, ...) that the stdlib lacks
        import regex
    except ImportError:  # pragma: no cover - then such patterns are not enforced
        return None
    try:
        return regex.compile(python)  # type: ignore[no-any-return]
    except regex.error:
        return None
