"""The bytes-only fast path agrees with the general verifier: it accepts exactly what botocore
signs, and hands everything else (tampering, unusual shapes) back to the general path.

Every test runs twice: on the compiled check (``_sigv4c.c``) and on the Python one it replaces
where no compiler was found at install (test_sigv4_native.py compares the two directly)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from moorage.api.aws import sigv4
from moorage.api.aws.sigv4 import SignedRequest, Verifier
from moorage.errors import InvalidSignature

KEYS = {"AKIDFAST": "fast-secret", "bench-key_1": "fast-secret"}
NATIVE = sigv4._native


@pytest.fixture(autouse=True, params=["native", "python"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "native":
        if NATIVE is None:
            pytest.skip("the compiled check was not built (no C compiler or OpenSSL headers at install)")
    else:
        monkeypatch.setattr(sigv4, "_native", None)
    yield request.param


def _verifier(now: float) -> Verifier:
    return Verifier(KEYS.get, clock=lambda: now)


def _signed(path: str, body: bytes, headers: dict[str, str],
            key_id: str = "AKIDFAST") -> tuple[list[tuple[bytes, bytes]], float]:
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:8080{path}", data=body, headers=headers)
    SigV4Auth(Credentials(key_id, "fast-secret"), "sagemaker", "us-east-1").add_auth(req)
    req.headers["Host"] = "127.0.0.1:8080"
    from moorage.api.aws.sigv4 import _parse_amz_date
    stamp = req.headers["X-Amz-Date"]
    asgi = [(k.lower().encode(), v.encode() if isinstance(v, str) else v) for k, v in req.headers.items()]
    if not any(k == b"host" for k, _ in asgi):
        asgi.append((b"host", b"127.0.0.1:8080"))
    return asgi, _parse_amz_date(stamp)


CASES = [
    ("/endpoints/lr/invocations", b"1.0,2.0\n", {"Content-Type": "text/csv"}),
    ("/endpoints/lr/invocations", b"", {"Content-Type": "text/csv"}),
    ("/endpoints/my-ep/invocations", b'{"x": 1}', {"Content-Type": "application/json",
                                                  "X-Amzn-SageMaker-Custom-Attributes": "a=1  b=2"}),
    ("/", b"{}", {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.ListModels"}),
    # bodies on either side of SMALL_HASH_MAX: CPython's SHA-256 below, OpenSSL's above
    ("/endpoints/lr/invocations", b"1" * 1024, {"Content-Type": "text/csv"}),
    ("/endpoints/lr/invocations", b"1" * 1025, {"Content-Type": "text/csv"}),
]


@pytest.mark.parametrize("path, body, headers", CASES)
def test_fast_path_accepts_what_botocore_signs(path: str, body: bytes, headers: dict[str, str]) -> None:
    asgi, now = _signed(path, body, headers)
    v = _verifier(now)
    fast = v.verify_fast("POST", path.encode(), b"", asgi, body)
    assert fast is not None and fast[0] == "AKIDFAST"
    general = v.verify(SignedRequest("POST", path, "", asgi, body=body))
    assert ";".join(general.signed_headers) == fast[1]


def test_fast_path_takes_any_key_id_the_store_can_hold() -> None:
    """Keys named by MOORAGE_ADMIN_ACCESS_KEY_ID need not look like AWS's (a benchmark's
    "bench-key" once fell through to the general path on every request)."""
    asgi, now = _signed("/endpoints/lr/invocations", b"1,2\n", {"Content-Type": "text/csv"}, "bench-key_1")
    assert _verifier(now).verify_fast("POST", b"/endpoints/lr/invocations", b"", asgi, b"1,2\n") == (
        "bench-key_1", "content-type;host;x-amz-date")


def test_fast_path_refuses_tampering_and_defers_to_the_general_path() -> None:
    path, body, headers = CASES[0]
    asgi, now = _signed(path, body, headers)
    v = _verifier(now)
    assert v.verify_fast("POST", path.encode(), b"", asgi, body + b"x") is None  # body changed
    assert v.verify_fast("PUT", path.encode(), b"", asgi, body) is None  # method changed
    changed = [(k, b"text/plain") if k == b"content-type" else (k, val) for k, val in asgi]
    assert v.verify_fast("POST", path.encode(), b"", changed, body) is None  # signed header changed
    with pytest.raises(InvalidSignature):
        v.verify(SignedRequest("POST", path, "", changed, body=body))
    unknown = Verifier({}.get, clock=lambda: now)
    assert unknown.verify_fast("POST", path.encode(), b"", asgi, body) is None  # unknown key
    # shapes it does not handle go to the general path untouched
    assert v.verify_fast("POST", path.encode(), b"a=1", asgi, body) is None
    assert v.verify_fast("POST", b"/endpoints/a%20b/invocations", b"", asgi, body) is None
    assert v.verify_fast("POST", path.encode(), b"", asgi + [(b"content-type", b"x")], body) is None


def test_fast_path_accepts_only_inside_the_skew_window() -> None:
    """Outside the window the fast path declines, and the general path words the error."""
    path, body, headers = CASES[0]
    asgi, signed_at = _signed(path, body, headers)
    for offset in (-15 * 60, 0, 15 * 60):
        assert _verifier(signed_at + offset).verify_fast("POST", path.encode(), b"", asgi, body) is not None
    for offset in (-15 * 60 - 1, 15 * 60 + 1):
        late = _verifier(signed_at + offset)
        assert late.verify_fast("POST", path.encode(), b"", asgi, body) is None
        with pytest.raises(InvalidSignature, match="expired" if offset > 0 else "not yet current"):
            late.verify(SignedRequest("POST", path, "", asgi, body=body))


def test_fast_path_leaves_unusual_requests_to_the_general_path() -> None:
    """A region that is not ASCII, a lowercase method or a tab in a signed value: the fast path
    declines (returns None) instead of deciding differently from verify, or crashing."""
    asgi, now = _signed("/endpoints/lr/invocations", b"1\n", {"Content-Type": "text/csv"})
    v = _verifier(now)
    assert v.verify_fast("post", b"/endpoints/lr/invocations", b"", asgi, b"1\n") is None
    bad_region = [(k, v_.replace(b"/us-east-1/", b"/\xff\xfe/")) if k == b"authorization" else (k, v_)
                  for k, v_ in asgi]
    assert v.verify_fast("POST", b"/endpoints/lr/invocations", b"", bad_region, b"1\n") is None
    with pytest.raises(Exception) as exc:  # the general path answers with an auth error, not a crash
        v.verify(SignedRequest("POST", "/endpoints/lr/invocations", "", bad_region, body=b"1\n"))
    assert not isinstance(exc.value, UnicodeError)
    tabbed = [(k, b"text/csv\tx") if k == b"content-type" else (k, v_) for k, v_ in asgi]
    assert v.verify_fast("POST", b"/endpoints/lr/invocations", b"", tabbed, b"1\n") is None


@pytest.mark.parametrize("key", [b"", b"k", bytes(range(32)), bytes(range(64))])
def test_the_hot_path_hmac_is_rfc_2104_hmac_sha256(key: bytes) -> None:
    import hashlib
    import hmac

    from moorage.api.aws.sigv4 import _Hmac
    for msg in (b"", b"AWS4-HMAC-SHA256\n20240101T000000Z\n", bytes(range(256)) * 3):
        assert _Hmac(key).hexdigest(msg) == hmac.new(key, msg, hashlib.sha256).hexdigest().encode()

