"""The compiled SigV4 fast path (``_sigv4c.c``) is built where it can be, and decides exactly as
the Python fast path on requests mutated byte by byte."""

from __future__ import annotations

import random
import shutil
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.api.aws import sigv4
from moorage.api.aws.sigv4 import SignedRequest
from moorage.errors import AuthError
from tests.unit.api.test_sigv4_fast import CASES, _signed, _verifier

NATIVE = sigv4._native


def test_the_compiled_check_is_built_where_a_compiler_is() -> None:
    if shutil.which(sysconfig.get_config_var("CC").split()[0]) is None:
        pytest.skip("no C compiler here")
    if not any(Path(d, "openssl", "sha.h").exists() for d in ("/usr/include", "/usr/local/include")):
        pytest.skip("no OpenSSL headers here")
    assert NATIVE is not None, "pip install -e . should have built moorage/api/aws/_sigv4c.c"


def _mutations(rng: random.Random, asgi: list[tuple[bytes, bytes]], path: bytes,
               body: bytes) -> Iterator[tuple[str, bytes, list[tuple[bytes, bytes]], bytes]]:
    """A byte changed, added or removed somewhere in the request, many times over."""
    alphabet = b" \t,;/=:.-_~%0aAzZ\x00\x7f\xff"
    for _ in range(400):
        method, p, hdrs, b = "POST", path, list(asgi), body
        where = rng.randrange(4)
        if where == 0:
            i = rng.randrange(len(hdrs))
            name, value = hdrs[i]
            j = rng.randrange(len(value) + 1)
            op = rng.randrange(3)
            c = alphabet[rng.randrange(len(alphabet)):][:1]
            value = (value[:j] + c + value[j + 1:] if op == 0 else value[:j] + c + value[j:] if op == 1
                     else value[:j] + value[j + 1:])
            hdrs[i] = (name, value)
        elif where == 1:
            j = rng.randrange(len(p))
            p = p[:j] + alphabet[rng.randrange(len(alphabet)):][:1] + p[j:]
        elif where == 2:
            b = body + b"x" if rng.random() < 0.5 else body[:-1]
        else:
            method = rng.choice(["PUT", "post", "POSTX", "P"])
        yield method, p, hdrs, b


@pytest.mark.skipif(NATIVE is None, reason="the compiled check was not built")
@pytest.mark.parametrize("path, body, headers", CASES)
def test_compiled_and_python_checks_agree_on_mutated_requests(path: str, body: bytes,
                                                              headers: dict[str, str]) -> None:
    asgi, now = _signed(path, body, headers)
    v = _verifier(now)
    rng = random.Random(f"{path}{len(body)}")
    accepted = 0
    for method, p, hdrs, b in _mutations(rng, asgi, path.encode(), body):
        native = v.verify_fast(method, p, b"", hdrs, b)
        python = v._verify_fast_python(method, p, b"", hdrs, b)
        assert native == python, (method, p, hdrs, b)
        if native is not None:  # what the fast path accepts, the general path accepts too
            accepted += 1
            v.verify(SignedRequest(method, p.decode("latin-1"), "", hdrs, body=b))
        else:
            try:
                v.verify(SignedRequest(method, p.decode("latin-1"), "", hdrs, body=b))
            except AuthError:
                pass
    assert 0 < accepted < 400  # both branches were reached (e.g. added spaces keep a request valid)
