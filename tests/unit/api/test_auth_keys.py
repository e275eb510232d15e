"""The Authenticator over a real key store: a signing key cached for the compiled check never
outlives the secret it came from."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from moorage.api.auth import Authenticator
from moorage.api.aws.sigv4 import _parse_amz_date
from moorage.clock import FakeClock
from moorage.control.keys import KeyService
from moorage.errors import SignatureDoesNotMatch, UnrecognizedClient
from moorage.store import Store

PATH = "/endpoints/ep/invocations"
BODY = b"1.0,2.0\n"


def _scope(key_id: str, secret: str) -> tuple[dict, float]:
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:8080{PATH}", data=BODY,
                     headers={"Content-Type": "text/csv"})
    SigV4Auth(Credentials(key_id, secret), "sagemaker", "us-east-1").add_auth(req)
    headers = [(b"host", b"127.0.0.1:8080")] + [(k.lower().encode(), v.encode()) for k, v in req.headers.items()]
    scope = {"method": "POST", "raw_path": PATH.encode(), "query_string": b"", "headers": headers}
    return scope, _parse_amz_date(req.headers["X-Amz-Date"])


def test_a_replaced_secret_takes_effect_at_once(tmp_path: Path) -> None:
    old, signed_at = _scope("AKIDREPLACED", "old-secret")
    clock = FakeClock(signed_at)
    keys = KeyService(Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), clock)
    keys.create("admin", access_key_id="AKIDREPLACED", secret="old-secret")
    auth = Authenticator(keys, clock, 900.0)
    assert auth.authenticate(old, BODY).access_key_id == "AKIDREPLACED"  # caches its signing key

    keys.store.delete_key("AKIDREPLACED")  # what the server does when the environment's secret changes
    keys.create("admin", access_key_id="AKIDREPLACED", secret="new-secret")
    with pytest.raises(SignatureDoesNotMatch):
        auth.authenticate(old, BODY)
    new, _ = _scope("AKIDREPLACED", "new-secret")
    assert auth.authenticate(new, BODY).secret == "new-secret"

    keys.revoke("AKIDREPLACED")
    with pytest.raises(UnrecognizedClient):
        auth.authenticate(new, BODY)
