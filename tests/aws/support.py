"""Helpers shared by the boto3-driven suites in tests/aws."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.helpers import ADMIN_KEY, ADMIN_SECRET

ACCOUNT_RE = r"\d{12}"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
JSON11 = "application/x-amz-json-1.1"

#: One ``moorage/python`` handler whose behaviour the container Environment steers:
#: MOORAGE_TEST_SCALE multiplies the inputs, MOORAGE_TEST_CALLS names a file that gets one line
#: per predict call, MOORAGE_TEST_LOAD_SLEEP / MOORAGE_TEST_LOAD_FAIL slow down or break model_fn.
#: A request {"boom": "..."} makes predict_fn raise. The response echoes the request's custom
#: attributes as "seen=<attrs>" in its own custom attributes.
HANDLER = '''
import json, os, time

def model_fn(model_dir):
    if os.environ.get("MOORAGE_TEST_LOAD_SLEEP"):
        time.sleep(float(os.environ["MOORAGE_TEST_LOAD_SLEEP"]))
    if os.environ.get("MOORAGE_TEST_LOAD_FAIL"):
        raise RuntimeError("load failed on purpose: " + os.environ["MOORAGE_TEST_LOAD_FAIL"])
    return {"scale": float(os.environ.get("MOORAGE_TEST_SCALE", "2"))}

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model, context):
    calls = os.environ.get("MOORAGE_TEST_CALLS")
    if calls:
        with open(calls, "a") as f:
            f.write("call\\n")
    if data.get("boom"):
        raise ValueError("boom: " + str(data["boom"]))
    context.response_custom_attributes = "seen=" + context.custom_attributes
    return {"y": [v * model["scale"] for v in data["x"]]}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
'''


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    """(error code, HTTP status) of a boto3 ClientError."""
    r = exc.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


def message(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Message"])


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:us-east-1:000000000000:{kind}/{name.lower()}"


def signed_headers(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None, *,
                   key: str = ADMIN_KEY, secret: str = ADMIN_SECRET, service: str = "sagemaker",
                   at: datetime | None = None) -> dict[str, str]:
    """The headers botocore's own SigV4 signer produces for this request (signed ``at`` a time)."""
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    with frozen_signing_clock(at):
        SigV4Auth(Credentials(key, secret), service, "us-east-1").add_auth(req)
    return dict(req.headers.items())


def presigned_url(url: str, *, expires: int = 60, key: str = ADMIN_KEY, secret: str = ADMIN_SECRET,
                  at: datetime | None = None) -> str:
    req = AWSRequest(method="GET", url=url)
    with frozen_signing_clock(at):
        SigV4QueryAuth(Credentials(key, secret), "sagemaker", "us-east-1", expires=expires).add_auth(req)
    return str(req.prepare().url)


class frozen_signing_clock:
    """Make botocore sign as if it were ``at`` (a no-op for None)."""

    def __init__(self, at: datetime | None) -> None:
        self._patch = None if at is None else mock.patch(
            "botocore.auth.get_current_datetime", lambda remove_tzinfo=True: at.replace(tzinfo=None))

    def __enter__(self) -> None:
        if self._patch is not None:
            self._patch.start()

    def __exit__(self, *exc: Any) -> None:
        if self._patch is not None:
            self._patch.stop()


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(minutes=minutes)
