"""Which runtime serves a ContainerDefinition's ``Image``.

Moorage runs no containers: an image URI only selects a runtime. SageMaker's scikit-learn and
XGBoost framework images (and the older built-in XGBoost algorithm images) map to the matching
in-process runtime, so CreateModel requests written for SageMaker work unchanged. ``moorage/<kind>``
names a runtime directly, and ``command:<shell words>`` runs the user's own server command.

Server-side code imports this module, so it imports nothing heavy (only moorage.errors).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Literal

from moorage.errors import ValidationException

Kind = Literal["sklearn", "xgboost", "python", "command"]

#: <12-digit account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]/<repository>[:tag | @digest]
_ECR = re.compile(r"\d{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/"
                  r"(?P<repo>[a-z0-9][a-z0-9._/-]*)(?::[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})?")
_ECR_REPOS: dict[str, Kind] = {
    "sagemaker-scikit-learn": "sklearn",
    "sagemaker-xgboost": "xgboost",
    "xgboost": "xgboost",  # the built-in algorithm's older image name (xgboost:latest, xgboost:1)
}
_MOORAGE = re.compile(r"moorage/(?P<kind>sklearn|xgboost|python)(?::[\w][\w.-]{0,127})?")
_COMMAND = "command:"


@dataclass(frozen=True)
class RuntimeSpec:
    kind: Kind
    command: tuple[str, ...] = ()


def resolve_image(image: str) -> RuntimeSpec:
    """Map an image URI to its runtime; raises ValidationException for anything else."""
    if image.startswith(_COMMAND):
        try:
            words = tuple(shlex.split(image[len(_COMMAND):]))
        except ValueError as exc:  # unbalanced quotes
            raise ValidationException(f"Image {image!r} has a malformed command: {exc}.") from None
        if not words:
            raise ValidationException(f"Image {image!r} names no command. Use command:<your server "
                                      "command>, e.g. command:python serve.py.")
        return RuntimeSpec("command", words)
    m = _MOORAGE.fullmatch(image)
    if m:
        return RuntimeSpec(m["kind"])  # type: ignore[arg-type]
    m = _ECR.fullmatch(image)
    if m and m["repo"] in _ECR_REPOS:
        return RuntimeSpec(_ECR_REPOS[m["repo"]])
    raise ValidationException(
        f"Image {image!r} is not supported. Use a SageMaker scikit-learn or XGBoost image URI "
        "(<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-scikit-learn:<tag> or "
        ".../sagemaker-xgboost:<tag>), moorage/sklearn, moorage/xgboost, moorage/python, "
        "or command:<your server command>.")
