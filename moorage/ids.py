"""ARNs, resource names and request ids."""

from __future__ import annotations

import re
import uuid

NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")

ARN_TYPES = {
    "Model": "model",
    "EndpointConfig": "endpoint-config",
    "Endpoint": "endpoint",
    "TransformJob": "transform-job",
}


def arn(region: str, account: str, kind: str, name: str) -> str:
    """SageMaker ARN; AWS lower-cases the name part."""
    return f"arn:aws:sagemaker:{region}:{account}:{ARN_TYPES[kind]}/{name.lower()}"


def request_id() -> str:
    return str(uuid.uuid4())
