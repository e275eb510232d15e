"""Authentication (SigV4) and authorization (roles) in front of every route.

Admin keys may call everything. Invoke keys may call only the runtime operations, and only
on endpoints whose names match their glob. A rejected request changes nothing: the check
runs before any handler.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from moorage.api.aws.sigv4 import SignedRequest, Verifier
from moorage.clock import Clock
from moorage.control.keys import Key, KeyService
from moorage.errors import (AccessDenied, InvalidSignature, SignatureDoesNotMatch,
                            UnrecognizedClient)


class Authenticator:
    def __init__(self, keys: KeyService, clock: Clock, max_skew_seconds: float) -> None:
        self._keys = keys
        self._keys_version = keys.version

        def secret(access_key_id: str) -> str | None:
            key = keys.lookup(access_key_id)
            return key.secret if key else None

        # JSON-protocol services answer InvalidSignatureException, REST ones SignatureDoesNotMatch
        self._json = Verifier(secret, clock=clock.time, max_skew_seconds=max_skew_seconds,
                              mismatch_error=InvalidSignature)
        self._rest = Verifier(secret, clock=clock.time, max_skew_seconds=max_skew_seconds,
                              mismatch_error=SignatureDoesNotMatch)

    def authenticate(self, scope: dict[str, Any], body: bytes, *, json_protocol: bool = False) -> Key:
        if self._keys_version != self._keys.version:  # a key changed: no signing key outlives it
            self._keys_version = self._keys.version
            self._json.forget_keys()
            self._rest.forget_keys()
        verifier = self._json if json_protocol else self._rest
        fast = verifier.verify_fast(scope["method"], scope["raw_path"], scope["query_string"],
                                    scope["headers"], body)
        if fast is not None:
            access_key_id, signed = fast
            if json_protocol and "x-amz-target" not in signed.split(";"):
                raise InvalidSignature("The X-Amz-Target header must be signed.")
            key = self._keys.lookup(access_key_id)
            if key is not None:
                return key
        req = SignedRequest(method=scope["method"], path=scope["raw_path"].decode("latin-1"),
                            query=scope["query_string"].decode("latin-1"), headers=scope["headers"],
                            body=body)
        principal = verifier.verify(req)
        if json_protocol and "x-amz-target" not in principal.signed_headers:
            raise InvalidSignature("The X-Amz-Target header must be signed.")
        key = self._keys.lookup(principal.access_key_id)
        if key is None:  # revoked between lookup and now
            raise UnrecognizedClient("The security token included in the request is invalid.")
        return key


#: what an invoke key may do, on the endpoints its glob matches
INVOKE_ACTIONS = frozenset({"sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointAsync"})


def authorize(key: Key, action: str, endpoint: str | None = None) -> None:
    """Raise AccessDenied unless ``key`` may perform ``action`` (on ``endpoint``)."""
    if key.role == "admin":
        return
    if action in INVOKE_ACTIONS and endpoint is not None and fnmatchcase(endpoint, key.endpoints):
        return
    target = f" on endpoint {endpoint}" if endpoint else ""
    raise AccessDenied(f"User: {key.access_key_id} is not authorized to perform: {action}{target}.")
