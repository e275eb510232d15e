"""Asynchronous inference: the durable queue's throughput against direct invocation, and the
server's memory while a 1 GB payload streams through.

One run, on one server (``moorage server --no-auth`` pinned to core 1, wrk on core 0, as in
benchmarks/realtime.py), with the yardstick's LogisticRegression (1-row CSV):

  (a) limit     the yardstick's bare Starlette app: predict inline, no queue, no persistence;
  (b) direct    InvokeEndpoint on a real-time endpoint;
  (c) queued    InvokeEndpointAsync on an async endpoint (inline body, results to a local
                directory): wrk submits for the measured seconds; the clock stops when the last
                accepted request has its output written. Its rate is completed requests per
                second through the whole path: SQLite insert before the 202, the worker, the
                instance, the write-once output, the final SQLite update.

Rounds interleave (a), (b), (c); reported are medians and the per-round ratio direct / queued
(the issue's target: the queue costs at most 2x direct invocation per request).

Then the memory check: a streaming handler (input_fn takes a file object, output_fn yields
chunks) on an async endpoint; one InputLocation of --big-mb MiB (default 1024) is processed
while the server process's RSS is sampled every 10 ms. Reported: RSS before, peak, growth
(target < 100 MB) and the instance's throughput.

  .venv/bin/python benchmarks/async_throughput.py [--rounds 3] [--duration 10] [--big-mb 1024]

No peer has a local asynchronous mode to compare with (SageMaker's is a cloud service; KServe
and Ray Serve have none); the limit is the bare-Python direct path.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Server, free_port, wrk_run  # noqa: E402

STREAMING = '''
from typing import IO

def model_fn(model_dir):
    return None

def input_fn(body: IO[bytes], content_type):
    return body

def predict_fn(stream, model):
    def chunks():
        while True:
            chunk = stream.read(1 << 20)
            if not chunk:
                return
            yield chunk[:16]  # a small digest of each MiB
    return chunks()

def output_fn(chunks, accept):
    return chunks, "application/octet-stream"
'''


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def call(url: str, method: str, path: str, doc: dict[str, Any] | None = None) -> Any:
    data = json.dumps(doc).encode() if doc is not None else None
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"{}")


def deploy(url: str, name: str, image: str, model_dir: Path, output: Path | None, per_instance: int = 64) -> None:
    call(url, "POST", "/api/models", {"ModelName": name, "PrimaryContainer": {
        "Image": image, "ModelDataUrl": str(model_dir)}})
    config: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": [
        {"VariantName": "v", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]}
    if output is not None:
        config["AsyncInferenceConfig"] = {"OutputConfig": {"S3OutputPath": str(output)},
                                          "ClientConfig": {"MaxConcurrentInvocationsPerInstance": per_instance}}
    call(url, "POST", "/api/endpoint-configs", config)
    call(url, "POST", "/api/endpoints", {"EndpointName": name, "EndpointConfigName": name})
    while (status := call(url, "GET", f"/api/endpoints/{name}")["EndpointStatus"]) != "InService":
        if status == "Failed":
            raise RuntimeError(call(url, "GET", f"/api/endpoints/{name}").get("FailureReason"))
        time.sleep(0.1)


def finished(db: Path, endpoint: str) -> tuple[int, int]:
    """(requests accepted, requests finished) for an endpoint, read from the server's store."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        total, done = conn.execute(
            "SELECT COUNT(*), SUM(status != 'Pending') FROM async_requests WHERE endpoint = ?",
            (endpoint,)).fetchone()
    return int(total), int(done or 0)


def queued_round(srv: Server, db: Path, body: Path, headers: Path, duration: int, out: Path) -> dict[str, Any]:
    """One measured run of the queued path; afterwards every accepted request must have its
    one output. The file system starts each round clean (``sync``): every request writes a
    file, and on this VM the kernel's cost per new file grows several-fold with the dirty
    pages that earlier rounds left (20-40 µs clean, up to 190 µs with a GB dirty)."""
    os.sync()
    before, _ = finished(db, "queued")
    ticks0 = srv.cpu_ticks()
    t0 = time.monotonic()
    res = wrk_run(srv.url + "/endpoints/queued/async-invocations", body, 32, duration, headers, srv)
    submitted = time.monotonic()
    while True:
        total, done = finished(db, "queued")
        if done >= total:
            break
        time.sleep(0.01)
    t1 = time.monotonic()
    ticks1 = srv.cpu_ticks()
    n = total - before
    cpu = sum(t - ticks0.get(pid, t) for pid, t in ticks1.items()) / os.sysconf("SC_CLK_TCK")
    written = len(os.listdir(out)) if out.exists() else 0
    if written != total:
        raise RuntimeError(f"{total} requests accepted, {written} outputs written")
    return {"accepted": n, "accept_rps": res["rps"], "errors": res["errors"],
            "drain_s": round(t1 - submitted, 3), "rps": n / (t1 - t0),
            "cpu_us_per_req": round(cpu / max(n, 1) * 1e6, 1)}


#: where a run notes when it removed its outputs (see settle())
CLEANED = Path("/tmp/moorage-bench/async-cleaned-at")
#: seconds ext4 without a journal avoids reusing a deleted inode whose table block is dirty
RECENTLY_DELETED = 305


def settle() -> None:
    """Wait until a previous run's outputs were removed more than RECENTLY_DELETED seconds ago.

    On ext4 without a journal (this VM's disk), a new inode is never one deleted in the last
    5 s, or 300 s while its inode-table block is dirty (``recently_deleted`` in ialloc.c); the
    allocator steps over each such inode, one buffer-cache lookup apiece, and creating a file
    then dirties the next block. Right after a run removed its 300,000 outputs, the next run's
    files cost 100-300 µs each instead of 20-30, and the queue measured 3.4 x instead of 2.0 x.
    """
    try:
        wait = float(CLEANED.read_text()) + RECENTLY_DELETED - time.time()
    except (OSError, ValueError):
        return
    if wait > 0:
        log(f"waiting {wait:.0f} s: the previous run removed its outputs {RECENTLY_DELETED - wait:.0f} s ago")
        time.sleep(wait)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def big_payload(srv: Server, work: Path, mib: int, s3: Any = None) -> dict[str, Any]:
    """One InputLocation of ``mib`` MiB through the streaming handler; with ``s3`` (a boto3
    client of the test S3 server) the input is an s3:// object the server stages first."""
    src = work / "big.bin"
    block = os.urandom(1 << 20)
    with src.open("wb") as f:
        for _ in range(mib):
            f.write(block)
    location = str(src)
    if s3 is not None:
        s3.create_bucket(Bucket="bench-big")
        s3.upload_file(str(src), "bench-big", "big.bin")
        location = "s3://bench-big/big.bin"
        src.unlink()
    assert srv.proc is not None
    pid = srv.proc.pid
    base = peak = rss(pid)
    samples = [base]
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            v = rss(pid)
            samples.append(v)
            peak = max(peak, v)
            time.sleep(0.01)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.monotonic()
    iid = "big-s3" if s3 is not None else "big"
    req = urllib.request.Request(srv.url + "/endpoints/big/async-invocations", data=b"", method="POST",
                                 headers={"X-Amzn-SageMaker-InputLocation": location,
                                          "X-Amzn-SageMaker-Inference-Id": iid})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 202
    while call(srv.url, "GET", f"/api/endpoints/big/async-invocations/{iid}")["Status"] in ("Pending", "InProgress"):
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    stop.set()
    t.join()
    state = call(srv.url, "GET", f"/api/endpoints/big/async-invocations/{iid}")
    out = work / "big-out" / f"{iid}.out"
    src.unlink(missing_ok=True)
    return {"input": location, "payload_mib": mib, "status": state["Status"], "seconds": round(elapsed, 2),
            "mib_per_s": round(mib / elapsed, 1), "rss_before_mib": round(base / 2**20, 1),
            "rss_peak_mib": round(peak / 2**20, 1), "rss_growth_mib": round((peak - base) / 2**20, 1),
            "samples": len(samples), "output_bytes": out.stat().st_size if out.exists() else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--big-mb", type=int, default=1024)
    ap.add_argument("--s3-mb", type=int, default=0,
                    help="also stream an s3:// input of this size (from moto's server; 0 = skip)")
    ap.add_argument("--bench-dir", default="/tmp/bench", help="yardstick copy with models/ and payloads/")
    ap.add_argument("--out", default="/tmp/moorage-bench/async_throughput.json")
    a = ap.parse_args()
    settle()
    bench = Path(a.bench_dir)
    work = Path(tempfile.mkdtemp(prefix="moorage-async-"))
    (work / "lr").mkdir()
    shutil.copy(bench / "models" / "lr.joblib", work / "lr" / "model.joblib")
    (work / "stream" / "code").mkdir(parents=True)
    (work / "stream" / "code" / "inference.py").write_text(STREAMING)
    body = bench / "payloads" / "rows_1.csv"
    headers = work / "async-headers"
    headers.write_text("X-Amzn-SageMaker-Content-Type: text/csv\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    moorage = Server("moorage", [sys.executable, "-m", "moorage", "server", "--no-auth", "--port", "0",
                                 "--data-dir", str(work / "data"), "--log-level", "warning"],
                     env, work, work / "moorage.log")
    moorage.port = free_port()
    moorage.cmd[moorage.cmd.index("0")] = str(moorage.port)
    limit = Server("limit", [sys.executable, "-m", "uvicorn", "starlette_app:app", "--app-dir",
                             str(bench / "servers"), "--port", "0", "--loop", "uvloop", "--http", "httptools",
                             "--log-level", "warning"],
                   {**env, "BENCH_MODELS_DIR": str(bench / "models")}, work, work / "limit.log")
    limit.port = free_port()
    limit.cmd[limit.cmd.index("0")] = str(limit.port)
    results: dict[str, Any] = {"rounds": [], "big": None}
    s3_server = None
    if a.s3_mb:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.s3server import run_s3_server
        s3_server = run_s3_server()
        s3 = s3_server.__enter__()
        moorage.env = {**moorage.env, **s3.env}
    try:
        for s in (moorage, limit):
            s.start()
            s.wait_ping(120)
        deploy(moorage.url, "direct", "moorage/sklearn", work / "lr", None)
        deploy(moorage.url, "queued", "moorage/sklearn", work / "lr", work / "out")
        deploy(moorage.url, "big", "moorage/python", work / "stream", work / "big-out")
        db = work / "data" / "moorage.db"
        wrk_run(moorage.url + "/endpoints/direct/invocations", body, 32, 3, None, moorage)  # warm-up
        queued_round(moorage, db, body, headers, 3, work / "out")
        for i in range(a.rounds):
            lim = wrk_run(limit.url + "/endpoints/lr/invocations", body, 32, a.duration, None, limit)
            direct = wrk_run(moorage.url + "/endpoints/direct/invocations", body, 32, a.duration, None, moorage)
            queued = queued_round(moorage, db, body, headers, a.duration, work / "out")
            row = {"limit_rps": lim["rps"], "direct_rps": direct["rps"], "queued_rps": queued["rps"],
                   "queued": queued, "direct_over_queued": direct["rps"] / queued["rps"],
                   "direct_cpu_us": direct["cpu_us_per_req"], "queued_cpu_us": queued["cpu_us_per_req"],
                   "cpu_queued_over_direct": queued["cpu_us_per_req"] / direct["cpu_us_per_req"]}
            results["rounds"].append(row)
            log(f"round {i + 1}: limit {lim['rps']:,.0f} req/s · direct {direct['rps']:,.0f} · queued "
                f"{queued['rps']:,.0f} (accepted {queued['accept_rps']:,.0f}/s, drained in "
                f"{queued['drain_s']} s, {queued['errors']} errors) · direct/queued "
                f"{row['direct_over_queued']:.2f}; server CPU per request direct {row['direct_cpu_us']} µs, "
                f"queued {row['queued_cpu_us']} µs ({row['cpu_queued_over_direct']:.2f}x)")
        results["big"] = big_payload(moorage, work, a.big_mb)
        log(f"big payload: {results['big']}")
        if s3_server is not None:
            results["big_s3"] = big_payload(moorage, work, a.s3_mb, s3.client())
            log(f"big payload from S3: {results['big_s3']}")
    finally:
        for s in (moorage, limit):
            s.stop()
        if s3_server is not None:
            s3_server.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)  # each round leaves tens of thousands of outputs
        CLEANED.parent.mkdir(parents=True, exist_ok=True)
        CLEANED.write_text(str(time.time()))
    med = {k: statistics.median(r[k] for r in results["rounds"])
           for k in ("limit_rps", "direct_rps", "queued_rps", "direct_over_queued", "direct_cpu_us",
                     "queued_cpu_us", "cpu_queued_over_direct")}
    results["median"] = med
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    big = results["big"]
    print(f"\n| target | req/s (median of {a.rounds}) | vs limit |\n|---|---|---|")
    for name, key in (("limit (bare Starlette, inline predict)", "limit_rps"),
                      ("Moorage InvokeEndpoint (direct)", "direct_rps"),
                      ("Moorage InvokeEndpointAsync (queued, end to end)", "queued_rps")):
        print(f"| {name} | {med[key]:,.0f} | {med[key] / med['limit_rps']:.2f}x |")
    print(f"\nqueue cost per request: direct/queued = {med['direct_over_queued']:.2f}x "
          f"({'PASS' if med['direct_over_queued'] <= 2 else 'MISS'}, target <= 2x); server CPU per request "
          f"(HTTP process + instance, user + system): direct {med['direct_cpu_us']:.0f} µs, queued "
          f"{med['queued_cpu_us']:.0f} µs = {med['cpu_queued_over_direct']:.2f}x")
    print(f"{big['payload_mib']} MiB payload: {big['status']} in {big['seconds']} s ({big['mib_per_s']} MiB/s); "
          f"server RSS {big['rss_before_mib']} -> peak {big['rss_peak_mib']} MiB, growth "
          f"{big['rss_growth_mib']} MiB ({'PASS' if big['rss_growth_mib'] < 100 else 'MISS'}, target < 100 MB)")
    if "big_s3" in results:
        b = results["big_s3"]
        print(f"{b['payload_mib']} MiB from s3://: {b['status']} in {b['seconds']} s; server RSS growth "
              f"{b['rss_growth_mib']} MiB ({'PASS' if b['rss_growth_mib'] < 100 else 'MISS'})")
    print(f"JSON: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
