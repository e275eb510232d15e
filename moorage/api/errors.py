"""MoorageError → the error document each protocol's clients parse. One table, one function
per protocol.

- JSON 1.1 (sagemaker control plane): botocore reads the code only from ``__type``.
- REST-JSON (sagemaker-runtime): the code comes from the ``x-amzn-ErrorType`` header;
  modeled members (ModelError's OriginalStatusCode ...) from the JSON body, case-sensitive.
- Native REST: the JSON 1.1 document, so one client-side parser serves both.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from moorage.errors import InternalDependency, MoorageError, ValidationException

log = logging.getLogger("moorage.api")

JSON11 = b"application/x-amz-json-1.1"


def as_moorage_error(exc: BaseException) -> MoorageError:
    if isinstance(exc, MoorageError):
        return exc
    log.error("internal error", exc_info=exc)
    return MoorageError(f"Internal failure: {type(exc).__name__}")


def json11_error(exc: BaseException) -> tuple[int, bytes]:
    err = as_moorage_error(exc)
    doc: dict[str, Any] = {"__type": err.aws_code, "message": err.message, **err.fields}
    return err.http_status, json.dumps(doc).encode()


def runtime_error(exc: BaseException) -> tuple[int, str, bytes]:
    """(status, code, body) for sagemaker-runtime. A control-plane ValidationException is
    the runtime's ValidationError."""
    err = as_moorage_error(exc)
    code = err.aws_code
    if isinstance(err, ValidationException) or code == "ValidationException":
        code = "ValidationError"
    status = err.http_status
    if status >= 500 and not isinstance(err, InternalDependency) and code == "InternalFailure":
        status = 500
    doc: dict[str, Any] = {"Message": err.message, "message": err.message, **err.fields}
    return status, code, json.dumps(doc).encode()
