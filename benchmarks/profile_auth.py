#!/usr/bin/env python3
"""Per-request cost of SigV4 verification on the InvokeEndpoint hot path, in-process.

Builds the ASGI scope that uvicorn hands the app for the signed request benchmarks/realtime.py
replays (same headers as wrk sends), then times ``Authenticator.authenticate`` + ``authorize``
(what ``MoorageApp._guard_invoke`` runs per request) and each step inside it. Run it pinned:

  taskset -c 1 .venv/bin/python benchmarks/profile_auth.py [--body /tmp/bench/payloads/rows_1.csv] [--cold]

Prints microseconds per call (median of 7 timeit repeats) and a JSON line. The hot path is
``verify_fast``: the compiled check when it was built (else the Python fast path, also timed
alone); the general verifier's steps below it are what a request outside the fast path pays.
"""

from __future__ import annotations

import argparse
import hmac
import json
import statistics
import sys
import time
import timeit
from hashlib import sha256
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from moorage.api.auth import Authenticator, authorize  # noqa: E402
from moorage.api.aws import sigv4  # noqa: E402
from moorage.control.keys import Key  # noqa: E402


class _Keys:
    version = 0

    def __init__(self) -> None:
        self.key = Key("bench-key", "bench-secret", "admin", "*")

    def lookup(self, access_key_id: str) -> Key | None:
        return self.key if access_key_id == self.key.access_key_id else None


class _Clock:
    time = staticmethod(time.time)


def per_call_us(fn, repeats: int = 7) -> float:
    t = timeit.Timer(fn)
    n, _ = t.autorange()
    return statistics.median(x / n for x in t.repeat(repeat=repeats, number=n)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--body", default="/tmp/bench/payloads/rows_1.csv")
    ap.add_argument("--cold", action="store_true",
                    help="also time each call after an LR predict and a memory sweep (cold caches)")
    ap.add_argument("--model", default="/tmp/bench/models/lr.joblib")
    ap.add_argument("--sweep-mib", type=int, default=4)
    a = ap.parse_args()
    body = Path(a.body).read_bytes()
    url = "http://127.0.0.1:8080/endpoints/lr/invocations"
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "text/csv"})
    SigV4Auth(Credentials("bench-key", "bench-secret"), "sagemaker", "us-east-1").add_auth(req)
    h = dict(req.headers.items())
    # what uvicorn/httptools put in scope["headers"] for wrk's request (wrk_post.lua order)
    headers = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"text/csv"),
               (b"authorization", h["Authorization"].encode()), (b"x-amz-date", h["X-Amz-Date"].encode()),
               (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "method": "POST", "path": "/endpoints/lr/invocations",
             "raw_path": b"/endpoints/lr/invocations", "query_string": b"", "headers": headers}
    auth = Authenticator(_Keys(), _Clock(), 900.0)  # type: ignore[arg-type]

    def full() -> None:
        authorize(auth.authenticate(scope, body), "sagemaker:InvokeEndpoint", "lr")

    full()  # must not raise: the signature is valid
    hm = sigv4.header_map(headers)
    signed = "content-type;host;x-amz-date"
    authz = hm["authorization"]
    payload_hash = sha256(body).hexdigest()
    creq = sigv4.canonical_request("POST", "/endpoints/lr/invocations", "", hm,
                                   authz.split("SignedHeaders=")[1].split(",")[0], payload_hash)
    stamp = hm["x-amz-date"]
    sts = sigv4.string_to_sign(stamp, f"{stamp[:8]}/us-east-1/sagemaker/aws4_request", creq)
    key = auth._rest.signing_key("bench-secret", stamp[:8], "us-east-1", "sagemaker")

    def parse_authz() -> None:
        algorithm, _, rest = authz.strip().partition(" ")
        dict(p.strip().partition("=")[::2] for p in rest.split(","))

    verifier = auth._rest
    now = time.time()
    steps = {
        "authenticate+authorize (total)": full,
        "verify_fast (the hot path's check)": lambda: verifier.verify_fast(
            "POST", scope["raw_path"], b"", headers, body),
        "the compiled check alone (_sigv4c.verify)": (lambda: sigv4._native.verify(
            "POST", scope["raw_path"], b"", headers, body, now, 900.0, verifier._signing_keys))
        if sigv4._native is not None else (lambda: None),
        "the Python fast path alone": lambda: verifier._verify_fast_python(
            "POST", scope["raw_path"], b"", headers, body),
        "SignedRequest(...) construction + scope decode": lambda: sigv4.SignedRequest(
            method=scope["method"], path=scope["raw_path"].decode("latin-1"),
            query=scope["query_string"].decode("latin-1"), headers=headers, body=body),
        "header_map(scope headers)": lambda: sigv4.header_map(headers),
        "parse Authorization header": parse_authz,
        "_parse_amz_date (lru_cache hit)": lambda: sigv4._parse_amz_date(stamp),
        "_check_time": lambda: auth._rest._check_time(stamp, sigv4._parse_amz_date(stamp), None),
        "sha256(body).hexdigest()": lambda: sha256(body).hexdigest(),
        "canonical_request": lambda: sigv4.canonical_request(
            "POST", "/endpoints/lr/invocations", "", hm, signed, payload_hash),
        "string_to_sign (sha256 of canonical)": lambda: sigv4.string_to_sign(
            stamp, f"{stamp[:8]}/us-east-1/sagemaker/aws4_request", creq),
        "signing_key (cache hit)": lambda: auth._rest.signing_key(
            "bench-secret", stamp[:8], "us-east-1", "sagemaker"),
        "hmac.digest + hex + compare_digest": lambda: hmac.compare_digest(
            hmac.digest(key, sts.encode(), "sha256").hex().encode(), b"x" * 64),
        "keys.lookup x2 (Authenticator + Verifier)": lambda: (auth._keys.lookup("bench-key"),
                                                              auth._keys.lookup("bench-key")),
        "Principal(...)": lambda: sigv4.Principal("bench-key", "us-east-1", "sagemaker",
                                                  tuple(signed.split(";")), None),
    }
    out = {}
    for name, fn in steps.items():
        out[name] = round(per_call_us(fn), 2)
        print(f"{out[name]:8.2f} us  {name}")
    if a.cold:
        # What the router sees at c=1: between two requests the instance process ran a predict
        # on the same core, so caches are cold. Emulate it: an LR predict plus a sweep over a
        # few MiB before every timed call.
        import joblib
        import numpy as np
        model = joblib.load(a.model)
        X = np.array(body.split(b","), dtype=np.float64).reshape(1, -1)
        junk = np.ones(a.sweep_mib * 1024 * 1024 // 8)

        def cold(fn, n=3000) -> float:
            ts = []
            for _ in range(n):
                model.predict(X)
                junk.sum()
                t0 = time.perf_counter_ns()
                fn()
                ts.append(time.perf_counter_ns() - t0)
            return statistics.median(ts) / 1000

        base = cold(lambda: None)
        for name in ("authenticate+authorize (total)", "verify_fast (the hot path's check)",
                     "the compiled check alone (_sigv4c.verify)", "the Python fast path alone",
                     "header_map(scope headers)",
                     "canonical_request", "hmac.digest + hex + compare_digest",
                     "sha256(body).hexdigest()", "Principal(...)"):
            v = round(cold(steps[name]) - base, 2)
            out["cold: " + name] = v
            print(f"{v:8.2f} us  cold caches: {name}")
    print("AUTHJSON " + json.dumps(out))


if __name__ == "__main__":
    main()
