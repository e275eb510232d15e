"""AWS Signature Version 4 verification, framework-free so it can run on every request.

The canonical request is rebuilt exactly the way botocore builds it (``botocore/auth.py``
``SigV4Auth``/``SigV4QueryAuth``), because unmodified boto3 clients are what sign our requests:

* canonical URI: botocore signs ``quote(remove_dot_segments(url_path), safe='/~')`` where
  ``url_path`` is *already percent-encoded* (labels are encoded with ``safe='-._~'``). So the
  server must start from the path **as on the wire** (ASGI ``scope["raw_path"]``, never the decoded
  ``scope["path"]``) and encode it once more: ``/endpoints/a%2Fb`` → ``/endpoints/a%252Fb``.
* canonical query: the wire pairs, sorted by (key, value). botocore sends them RFC 3986 encoded
  already; other encodings are decoded and re-encoded, as the AWS test suite expects.
* canonical headers: only those named in SignedHeaders, lower-cased, whitespace-collapsed, repeated
  headers joined by ``,``. ``host`` is taken as received and must be signed.
* payload hash: ``x-amz-content-sha256`` if sent (and then it must match the body), else the body's
  sha256. ``UNSIGNED-PAYLOAD`` only for presigned URLs: no in-scope operation is unsigned-body.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from hashlib import sha256
from urllib.parse import quote, unquote

try:  # CPython's own SHA-256 (HACL* from 3.12): see _small_sha256
    from _sha2 import sha256 as _builtin_sha256  # type: ignore[import-not-found]
except ImportError:  # Python 3.11
    try:
        from _sha256 import sha256 as _builtin_sha256  # type: ignore[import-not-found,no-redef]
    except ImportError:  # another interpreter: OpenSSL's, slower cold but correct
        _builtin_sha256 = sha256

try:  # the hot path compiled (_sigv4c.c); built at install when a C compiler and OpenSSL are there
    from moorage.api.aws import _sigv4c as _native  # type: ignore[attr-defined]
except ImportError:
    _native = None

from moorage.errors import (
    AuthError,
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
MISMATCH_MESSAGE = ("The request signature we calculated does not match the signature you provided. "
                    "Check your AWS Secret Access Key and signing method. "
                    "Consult the service documentation for details.")
_PRESIGN_KEYS = ("X-Amz-Algorithm=", "X-Amz-Credential=", "X-Amz-Signature=")
# A path needing neither dot-segment removal nor quoting is its own canonical form (the hot path).
_SEGMENT = r"[A-Za-z0-9_~-][A-Za-z0-9_.~-]*"  # no empty, "." or ".." segment; '/' between (no backtracking)
_PLAIN_PATH = re.compile(rf"/(?:{_SEGMENT}(?:/{_SEGMENT})*/?)?\Z")
# A query whose pairs are already RFC 3986 encoded (what botocore sends) needs no re-encoding.
_CANON_QUERY = re.compile(r"(?:[A-Za-z0-9_.~=&-]|%[0-9A-F]{2})*\Z")
_KEY_CACHE_MAX = 512
_PLAIN_PATH_BYTES = re.compile(_PLAIN_PATH.pattern.encode())
_EMPTY_SHA256_BYTES = EMPTY_SHA256.encode()
#: a byte that str.split() and bytes.split() may treat differently (the general path trims on str)
_UNUSUAL_VALUE = re.compile(rb"[^\x20-\x7e\n]")
#: the Authorization header botocore writes: key id, scope (date, region, service), signed headers
_FAST_AUTH = re.compile(rb"AWS4-HMAC-SHA256 Credential=([A-Za-z0-9._-]+)/((\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request), "
                        rb"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})\Z")

Headers = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]

#: below this many bytes CPython's compact SHA-256 beats OpenSSL's (see _small_sha256)
SMALL_HASH_MAX = 1024


def _small_sha256(data: bytes) -> bytes:
    """Hex SHA-256 for the hot path's short inputs (a small body, the canonical request).

    On a core shared with a model, the router's code is cache-cold on every request, and
    OpenSSL's EVP layer touches a lot of it: a cold sha256 of a 40-byte body costs 9.2 µs
    through hashlib, 3.8 µs through CPython's own implementation (warm: 0.5 vs 0.9 µs). OpenSSL
    wins from about 1-2 KiB on (SHA extensions), so long inputs still go there.
    """
    return (_builtin_sha256(data) if len(data) <= SMALL_HASH_MAX else sha256(data)).hexdigest().encode()


class _Hmac:
    """HMAC-SHA256 with the key's inner and outer pads hashed once (RFC 2104), on CPython's
    SHA-256: a cold HMAC costs 4.7 µs this way and 14 µs through OpenSSL's copied HMAC."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = key.ljust(64, b"\0")  # SHA-256 keys are never longer than its 64-byte block here
        self._inner = _builtin_sha256(bytes(b ^ 0x36 for b in block))
        self._outer = _builtin_sha256(bytes(b ^ 0x5C for b in block))

    def hexdigest(self, msg: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest().encode()


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """One received request; ``path``/``query`` exactly as on the wire (no leading ``?``). Give ``body``
    or ``body_sha256`` (hex); both ``None`` means an empty body, so omitting it fails, never bypasses."""

    method: str
    path: str
    query: str
    headers: Headers
    body_sha256: str | None = None
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who signed. The caller decides whether region/service/token are acceptable, and may insist via
    ``signed_headers`` that routing headers (``x-amz-target``) were signed."""

    access_key_id: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    security_token: str | None = None


def _trim(value: str) -> str:
    return " ".join(value.split())


def header_map(headers: Headers) -> dict[str, str]:
    """Lower-cased name → value; repeats joined the way botocore joins ``get_all``."""
    if type(headers) is list and headers and type(headers[0][0]) is bytes:
        # ASGI: names arrive lower-cased (the ASGI spec); one comprehension unless a name repeats
        fast = {n.decode("latin-1"): v.decode("latin-1") for n, v in headers}  # type: ignore[union-attr]
        if len(fast) == len(headers):
            return fast
    out: dict[str, str] = {}
    for name, value in (headers.items() if isinstance(headers, Mapping) else headers):
        if type(name) is bytes:  # ASGI scope["headers"]
            name, value = name.decode("latin-1"), value.decode("latin-1")  # type: ignore[union-attr]
        name = name.lower()  # type: ignore[union-attr]
        if name in out:
            value = f"{_trim(out[name])},{_trim(value)}"  # type: ignore[arg-type]
        out[name] = value  # type: ignore[assignment]
    return out


def canonical_uri(path: str) -> str:
    """botocore's ``quote(normalize_url_path(path), safe='/~')`` (RFC 3986 dot segments, no ``//``)."""
    if _PLAIN_PATH.match(path):
        return path
    segments: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if segments:
                segments.pop()
        elif seg and seg != ".":
            segments.append(seg)
    trailing = "/" if path.endswith("/") and segments else ""
    return quote("/" + "/".join(segments) + trailing, safe="/~", errors="surrogateescape")


def _encode(part: str) -> str:
    return quote(unquote(part, errors="surrogateescape"), safe="-_.~", errors="surrogateescape")


def canonical_query(query: str, *, drop_signature: bool = False) -> str:
    """Sorted ``key=value`` pairs; for presigned URLs without ``X-Amz-Signature``."""
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            if not (drop_signature and key == "X-Amz-Signature"):
                pairs.append((key, value))
    if not _CANON_QUERY.match(query):
        pairs = [(_encode(k), _encode(v)) for k, v in pairs]
    pairs.sort()
    return "&".join([f"{k}={v}" for k, v in pairs])


def canonical_request(method: str, path: str, query: str, headers: Mapping[str, str], signed_headers: str,
                      payload_hash: str, *, presigned: bool = False) -> str:
    """The SigV4 canonical request; ``headers`` is a :func:`header_map` (lower-cased names)."""
    canon_headers = "".join([f"{n}:{_trim(headers.get(n, ''))}\n" for n in signed_headers.split(";")])
    return (f"{method.upper()}\n{canonical_uri(path or '/')}\n"
            f"{canonical_query(query, drop_signature=presigned)}\n"
            f"{canon_headers}\n{signed_headers}\n{payload_hash}")


def string_to_sign(stamp: str, scope: str, canonical: str) -> str:
    digest = sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{stamp}\n{scope}\n{digest}"


@lru_cache(maxsize=64)
def _parse_amz_date(stamp: str) -> float:
    """``20240101T000000Z`` → epoch seconds (cached: concurrent requests share a stamp)."""
    try:
        if not (len(stamp) == 16 and stamp.isascii() and stamp[8] == "T" and stamp[15] == "Z"
                and (stamp[:8] + stamp[9:15]).isdigit()):
            raise ValueError(stamp)
        return datetime(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]), int(stamp[11:13]),
                        int(stamp[13:15]), tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise IncompleteSignature(f"Date must be in ISO-8601 'basic format'. Got '{stamp}'.") from None


def _fmt(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class Verifier:
    """Checks header and presigned-query signatures against ``lookup_secret(access_key_id)``.
    ``mismatch_error``: raised for a wrong signature (a REST layer may pass ``SignatureDoesNotMatch``)."""

    def __init__(self, lookup_secret: Callable[[str], str | None], *, clock: Callable[[], float],
                 max_skew_seconds: float = 900.0,
                 mismatch_error: type[AuthError] = InvalidSignature) -> None:
        self._lookup = lookup_secret
        self._clock = clock
        self._skew = max_skew_seconds
        self._mismatch = mismatch_error
        #: (secret, date, region, service) → signing key; the HMAC chain costs four HMACs
        self._keys: dict[tuple[str, str, str, str], bytes] = {}
        #: (secret, credential scope as sent) → an HMAC keyed with the signing key
        self._macs: dict[tuple[str, bytes], _Hmac] = {}
        #: credential as sent (``key/date/region/service/aws4_request``) → signing key, for the
        #: compiled path; the owner of the keys calls :meth:`forget_keys` when one changes
        self._signing_keys: dict[bytes, bytes] = {}

    def forget_keys(self) -> None:
        """Drop signing keys cached by credential (a key was revoked or its secret replaced)."""
        self._signing_keys.clear()

    def signing_key(self, secret: str, date: str, region: str, service: str) -> bytes:
        cache_key = (secret, date, region, service)
        key = self._keys.get(cache_key)
        if key is None:
            key = ("AWS4" + secret).encode()
            for part in (date, region, service, "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            if len(self._keys) >= _KEY_CACHE_MAX:
                self._keys.clear()
            self._keys[cache_key] = key
        return key

    def _learn(self, credential: bytes) -> bool:
        """Caches the signing key for a credential the compiled check has not seen; False for
        an unknown key id."""
        key_id, date, region, service, _ = credential.decode("latin-1").split("/")
        secret = self._lookup(key_id)
        if secret is None:
            return False
        if len(self._signing_keys) >= _KEY_CACHE_MAX:
            self._signing_keys.clear()
        self._signing_keys[credential] = self.signing_key(secret, date, region, service)
        return True

    def verify_fast(self, method: str, raw_path: bytes, query: bytes,
                    headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[str, str] | None:
        """The hot path for what boto3 sends most: a header-signed request with no query string,
        a plain path and no repeated headers, checked on bytes without building any objects.

        Returns (access key id, SignedHeaders) when the signature is valid. Returns None for
        anything else — another request shape, a date outside the skew window, an unknown key,
        a signature that does not match — and the caller then runs :meth:`verify`, which
        decides and words the error. So this only ever accepts. The compiled module
        (``_sigv4c.c``), when built, runs the same check.
        """
        if _native is not None:
            now = self._clock()
            found = _native.verify(method, raw_path, query, headers, body, now, self._skew, self._signing_keys)
            if type(found) is bytes:  # the first request signed with this credential
                if not self._learn(found):
                    return None
                found = _native.verify(method, raw_path, query, headers, body, now, self._skew,
                                       self._signing_keys)
            return found  # type: ignore[no-any-return]
        return self._verify_fast_python(method, raw_path, query, headers, body)

    def _verify_fast_python(self, method: str, raw_path: bytes, query: bytes,
                            headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[str, str] | None:
        if query or not method.isupper() or not _PLAIN_PATH_BYTES.match(raw_path):
            return None
        hdrs = dict(headers)
        auth = hdrs.get(b"authorization")
        stamp = hdrs.get(b"x-amz-date")
        if auth is None or stamp is None or len(hdrs) != len(headers):
            return None
        m = _FAST_AUTH.match(auth)
        if m is None or m[3] != stamp[:8]:
            return None
        access_key, scope, date, region, service, signed, signature = m.groups()
        names = signed.split(b";")
        if b"host" not in names:
            return None
        try:
            canon = b"".join([b"%s:%s\n" % (name, hdrs[name]) for name in names])
        except KeyError:
            return None
        if _UNUSUAL_VALUE.search(canon):  # tabs, controls, non-ASCII: the general path decides
            return None
        if b"  " in canon or b": " in canon or b" \n" in canon:  # values to trim, as botocore does
            canon = b"".join([b"%s:%s\n" % (name, b" ".join(hdrs[name].split())) for name in names])
        payload = _small_sha256(body) if body else _EMPTY_SHA256_BYTES
        claimed = hdrs.get(b"x-amz-content-sha256")
        if claimed is not None and claimed.lower() != payload:
            return None
        try:
            signed_at = _parse_amz_date(stamp.decode("latin-1"))
        except IncompleteSignature:
            return None
        if not -self._skew <= self._clock() - signed_at <= self._skew:
            return None
        key_id = access_key.decode("latin-1")
        secret = self._lookup(key_id)
        if secret is None:
            return None
        mac = self._macs.get((secret, scope))
        if mac is None:
            if len(self._macs) >= _KEY_CACHE_MAX:
                self._macs.clear()
            key = self.signing_key(secret, date.decode(), region.decode(), service.decode())
            mac = self._macs[(secret, scope)] = _Hmac(key)
        creq = b"%s\n%s\n\n%s\n%s\n%s" % (method.encode("latin-1"), raw_path, canon, signed, claimed or payload)
        sts = b"AWS4-HMAC-SHA256\n%s\n%s\n%s" % (stamp, scope, _small_sha256(creq))
        if not hmac.compare_digest(mac.hexdigest(sts), signature):
            return None
        return key_id, signed.decode("latin-1")

    def verify(self, req: SignedRequest) -> Principal:
        """The signer, or an AuthError. Checks run cheapest first; the secret is looked up last."""
        headers = header_map(req.headers)
        query = req.query
        presigned = bool(query) and any(k in query for k in _PRESIGN_KEYS)
        if presigned:
            if "authorization" in headers:
                raise IncompleteSignature("Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                                          "parameter or the Authorization header should be specified")
            fields = {k: unquote(v) for k, _, v in (p.partition("=") for p in query.split("&"))
                      if k.startswith("X-Amz-")}
            algorithm, credential, signed, signature, stamp = (
                fields.get(f"X-Amz-{k}", "")
                for k in ("Algorithm", "Credential", "SignedHeaders", "Signature", "Date"))
            if not (algorithm and credential and signed and signature and stamp):
                raise IncompleteSignature("AWS query-string parameters must include 'X-Amz-Algorithm', "
                                          "'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-SignedHeaders', "
                                          "and 'X-Amz-Date'. Re-examine the query-string parameters.")
        else:
            auth = headers.get("authorization")
            if auth is None:
                raise MissingAuthenticationToken("Missing Authentication Token")
            algorithm, _, rest = auth.strip().partition(" ")
            fields = dict(p.strip().partition("=")[::2] for p in rest.split(","))
            credential, signed, signature = (fields.get(k, "")
                                             for k in ("Credential", "SignedHeaders", "Signature"))
            if not (credential and signed and signature):
                raise IncompleteSignature("Authorization header requires 'Credential', 'SignedHeaders' and "
                                          f"'Signature' parameters. Authorization={auth}")
            stamp = headers.get("x-amz-date", "")  # the Date fallback is unsupported
            if not stamp:
                raise IncompleteSignature("Authorization header requires existence of either a 'X-Amz-Date' "
                                          f"or a 'Date' header. Authorization={auth}")
        if algorithm != ALGORITHM:
            raise IncompleteSignature(f"Unsupported AWS 'algorithm': '{algorithm}'.")
        scope = credential.split("/")
        if len(scope) != 5 or not all(scope) or scope[4] != "aws4_request":
            raise IncompleteSignature("Credential should be scoped with a valid terminator: 'aws4_request', "
                                      f"as keyid/date/region/service/aws4_request, not '{credential}'.")
        access_key, date, region, service, _ = scope
        names = signed.split(";")
        if "host" not in names:
            raise IncompleteSignature("'Host' or ':authority' must be a 'SignedHeader' "
                                      "in the AWS Authorization.")
        signed_at = _parse_amz_date(stamp)
        if date != stamp[:8]:
            raise InvalidSignature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version "
                                   f"of date from HTTP: '{date}' != '{stamp[:8]}', from '{stamp}'.")
        self._check_time(stamp, signed_at, fields.get("X-Amz-Expires", "") if presigned else None)
        secret = self._lookup(access_key)
        if secret is None:
            raise UnrecognizedClient("The security token included in the request is invalid.")

        actual = req.body_sha256 or (sha256(req.body).hexdigest() if req.body else EMPTY_SHA256)
        claimed = headers.get("x-amz-content-sha256")
        if claimed is None:  # botocore presigns non-S3 requests with the body hash; S3 style is unsigned
            candidates = [actual, UNSIGNED_PAYLOAD] if presigned else [actual]
        elif (claimed == UNSIGNED_PAYLOAD and presigned) or claimed.lower() == actual.lower():
            candidates = [claimed]
        else:
            raise self._mismatch(MISMATCH_MESSAGE)
        key = self.signing_key(secret, date, region, service)
        provided = signature.encode("utf-8", "replace")
        for payload in candidates:
            creq = canonical_request(req.method, req.path, query, headers, signed, payload,
                                     presigned=presigned)
            sts = string_to_sign(stamp, f"{date}/{region}/{service}/aws4_request", creq)
            if hmac.compare_digest(hmac.digest(key, sts.encode(), "sha256").hex().encode(), provided):
                token = (fields.get("X-Amz-Security-Token") if presigned else
                         headers.get("x-amz-security-token") if "x-amz-security-token" in names else None)
                return Principal(access_key, region, service, tuple(names), token)
        raise self._mismatch(MISMATCH_MESSAGE)

    def _check_time(self, stamp: str, signed_at: float, expires: str | None) -> None:
        """AWS's wording. Header signatures live ±skew; presigned URLs (``expires`` = raw X-Amz-Expires)
        from date - skew until date + X-Amz-Expires, at most a week."""
        now, minutes = self._clock(), f"{self._skew / 60:g} min."
        if signed_at - now > self._skew:
            raise InvalidSignature(f"Signature not yet current: {stamp} is still later than "
                                   f"{_fmt(now + self._skew)} ({_fmt(now)} + {minutes})")
        if expires is not None:
            if not (expires.isascii() and expires.isdigit()) or int(expires) > MAX_PRESIGN_EXPIRES:
                raise IncompleteSignature("X-Amz-Expires must be a non-negative integer less than a week "
                                          f"(in seconds) that is {MAX_PRESIGN_EXPIRES}")
            if now > signed_at + int(expires):
                raise InvalidSignature("Request has expired")
        elif now - signed_at > self._skew:
            raise InvalidSignature(f"Signature expired: {stamp} is now earlier than "
                                   f"{_fmt(now - self._skew)} ({_fmt(now)} - {minutes})")
