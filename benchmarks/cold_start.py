"""Serverless cold start: p50/p99 over N scale-from-zero cycles.

Starts ``moorage server`` with MOORAGE_SERVERLESS_IDLE_SECONDS small, deploys the yardstick's
LogisticRegression as a serverless endpoint, and for each cycle waits until the variant has
scaled to zero, then times one invocation at the client (request sent → response read, so it
includes the HTTP round trip) and reads the server's own setup time (x-moorage-cold-start-ms:
instance fork + model load + first ping). Warm invocations are timed too, for contrast.

  .venv/bin/python benchmarks/cold_start.py [--cycles 30] [--bench-dir /tmp/bench]

Peers, for context (issue #4): SageMaker serverless cold starts take seconds; KServe on Knative
7–30 s; Ray Serve scale-from-zero 30–60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from botocore.credentials import Credentials

from moorage.cli.signing import SigV4

KEY, SECRET = "bench-key", "bench-secret"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--bench-dir", default="/tmp/bench", help="yardstick copy with models/ and payloads/")
    ap.add_argument("--out", default="/tmp/moorage-bench/cold_start.json")
    a = ap.parse_args()
    bench = Path(a.bench_dir)
    work = Path(tempfile.mkdtemp(prefix="moorage-cold-"))
    (work / "lr").mkdir()
    shutil.copy(bench / "models" / "lr.joblib", work / "lr" / "model.joblib")
    body = (bench / "payloads" / "rows_1.csv").read_bytes()
    port = _port()
    env = {**os.environ, "MOORAGE_ADMIN_ACCESS_KEY_ID": KEY, "MOORAGE_ADMIN_SECRET_ACCESS_KEY": SECRET,
           "MOORAGE_SERVERLESS_IDLE_SECONDS": "0.3", "MOORAGE_HEALTH_CHECK_INTERVAL_SECONDS": "0.2"}
    server = subprocess.Popen([sys.executable, "-m", "moorage", "server", "--port", str(port),
                               "--data-dir", str(work / "data"), "--log-level", "warning"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, auth=SigV4(Credentials(KEY, SECRET)))
    try:
        for _ in range(300):
            try:
                http.get("/ping")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        http.post("/api/models", json={"ModelName": "lr", "PrimaryContainer": {
            "Image": "moorage/sklearn", "ModelDataUrl": str(work / "lr")}}).raise_for_status()
        http.post("/api/endpoint-configs", json={"EndpointConfigName": "lr", "ProductionVariants": [
            {"VariantName": "v", "ModelName": "lr",
             "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}]}).raise_for_status()
        http.post("/api/endpoints", json={"EndpointName": "lr", "EndpointConfigName": "lr"}).raise_for_status()
        while http.get("/api/endpoints/lr").json()["EndpointStatus"] != "InService":
            time.sleep(0.1)
        time.sleep(3)  # the zygote imports its framework once, ahead of the first request
        client_ms, server_ms, warm_ms = [], [], []
        headers = {"Content-Type": "text/csv"}
        for _ in range(a.cycles):
            deadline = time.monotonic() + 30
            while http.get("/api/endpoints/lr/instances").json()["Instances"]:
                if time.monotonic() > deadline:
                    raise SystemExit("the variant did not scale to zero")
                time.sleep(0.05)
            t0 = time.perf_counter()
            r = http.post("/endpoints/lr/invocations", content=body, headers=headers)
            client_ms.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            server_ms.append(float(r.headers["x-moorage-cold-start-ms"]))
            t0 = time.perf_counter()
            http.post("/endpoints/lr/invocations", content=body, headers=headers).raise_for_status()
            warm_ms.append((time.perf_counter() - t0) * 1000)
        result = {"cycles": a.cycles, "client_ms": client_ms, "server_setup_ms": server_ms, "warm_ms": warm_ms,
                  "summary": {name: {"p50": _pct(v, 0.5), "p99": _pct(v, 0.99), "mean": statistics.mean(v)}
                              for name, v in (("cold, client-measured", client_ms),
                                              ("instance setup (server)", server_ms),
                                              ("warm, client-measured", warm_ms))}}
    finally:
        http.close()
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(f"| measure ({a.cycles} scale-from-zero cycles) | p50 ms | p99 ms | mean ms |\n|---|---:|---:|---:|")
    for name, s in result["summary"].items():
        print(f"| {name} | {s['p50']:.1f} | {s['p99']:.1f} | {s['mean']:.1f} |")
    p50 = result["summary"]["cold, client-measured"]["p50"]
    print(f"{'PASS' if p50 <= 300 else 'MISS'}    cold start p50 <= 300 ms (measured {p50:.1f} ms)")


if __name__ == "__main__":
    main()
