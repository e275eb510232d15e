"""The one error tree of Moorage. Each class carries its AWS wire mapping.

    MoorageError                     InternalFailure          500
    ├── ValidationException          ValidationException      400  bad input, missing resource, duplicate
    │   └── PayloadTooLarge          ValidationError          413  invocation body over the cap
    ├── UnknownOperation             UnknownOperationException 400
    ├── ResourceInUse                ResourceInUse            400
    ├── ResourceLimitExceeded        ResourceLimitExceeded    400
    ├── ResourceNotFound             ResourceNotFound         400
    ├── ObjectNotFound               ObjectNotFoundException  400  (application-autoscaling)
    ├── ThrottlingException          ThrottlingException      400 (429 on the runtime)
    ├── AuthError                    (abstract)               403
    │   ├── SignatureDoesNotMatch    SignatureDoesNotMatch    403
    │   ├── InvalidSignature         InvalidSignatureException 403
    │   ├── IncompleteSignature      IncompleteSignatureException 403
    │   ├── MissingAuthenticationToken MissingAuthenticationTokenException 403
    │   ├── UnrecognizedClient       UnrecognizedClientException 403
    │   └── AccessDenied             AccessDeniedException    403
    └── InvocationError              (runtime data plane)
        ├── InvokeValidationError    ValidationError          400  unknown endpoint/variant, endpoint not serving
        ├── ModelError               ModelError               424  the model raised or answered 4xx/5xx
        ├── ModelNotReady            ModelNotReadyException   429
        ├── InvokeThrottled          ThrottlingException      429  instance queues full
        ├── ServiceUnavailable       ServiceUnavailable       503
        └── InternalDependency       InternalDependencyException 530

Domain code raises these; transports render them (api/errors.py). Foreign exceptions are
translated once, at the boundary, with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MoorageError(Exception):
    """Base of every error Moorage reports to a client."""

    aws_code: ClassVar[str] = "InternalFailure"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        #: extra members of the AWS error document (e.g. ModelError's OriginalStatusCode)
        self.fields = fields

    def __str__(self) -> str:
        return self.message


class ValidationException(MoorageError):
    aws_code = "ValidationException"
    http_status = 400


class PayloadTooLarge(ValidationException):
    aws_code = "ValidationError"
    http_status = 413


class UnknownOperation(MoorageError):
    aws_code = "UnknownOperationException"
    http_status = 400


class ResourceInUse(MoorageError):
    aws_code = "ResourceInUse"
    http_status = 400


class ResourceLimitExceeded(MoorageError):
    aws_code = "ResourceLimitExceeded"
    http_status = 400


class ResourceNotFound(MoorageError):
    aws_code = "ResourceNotFound"
    http_status = 400


class ObjectNotFound(MoorageError):
    aws_code = "ObjectNotFoundException"
    http_status = 400


class ThrottlingException(MoorageError):
    aws_code = "ThrottlingException"
    http_status = 400


class AuthError(MoorageError):
    http_status = 403


class SignatureDoesNotMatch(AuthError):
    aws_code = "SignatureDoesNotMatch"


class InvalidSignature(AuthError):
    aws_code = "InvalidSignatureException"


class IncompleteSignature(AuthError):
    aws_code = "IncompleteSignatureException"


class MissingAuthenticationToken(AuthError):
    aws_code = "MissingAuthenticationTokenException"


class UnrecognizedClient(AuthError):
    aws_code = "UnrecognizedClientException"


class AccessDenied(AuthError):
    aws_code = "AccessDeniedException"


class InvocationError(MoorageError):
    """Errors of the runtime data plane (sagemaker-runtime codes)."""


class InvokeValidationError(InvocationError):
    aws_code = "ValidationError"
    http_status = 400


class ModelError(InvocationError):
    """The model raised, or its container answered an error status. Never a 5xx: boto3 resends those."""

    aws_code = "ModelError"
    http_status = 424

    def __init__(self, message: str, *, original_status: int, original_message: str,
                 log_stream_arn: str = "") -> None:
        super().__init__(message, OriginalStatusCode=original_status,
                         OriginalMessage=original_message, LogStreamArn=log_stream_arn)


class ModelNotReady(InvocationError):
    aws_code = "ModelNotReadyException"
    http_status = 429


class InvokeThrottled(InvocationError):
    aws_code = "ThrottlingException"
    http_status = 429


class ServiceUnavailable(InvocationError):
    aws_code = "ServiceUnavailable"
    http_status = 503


class InternalDependency(InvocationError):
    aws_code = "InternalDependencyException"
    http_status = 530


def not_found(kind: str, arn: str) -> ValidationException:
    """SageMaker's answer for a missing Model, EndpointConfig or Endpoint."""
    return ValidationException(f'Could not find {kind} "{arn}".')
