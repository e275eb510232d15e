#!/usr/bin/env python3
"""Where the HTTP (router) process of Moorage spends its time per request, auth off vs on.

Starts the same two Moorage servers as benchmarks/realtime.py (pinned to core 1, endpoints lr
and rf, a snapshot of the code), drives ``lr`` with the 1-row CSV payload through wrk (core 0)
and samples the router process with py-spy (``pip install py-spy`` into the venv) while wrk
runs. Prints, per server and concurrency: CPU µs per request of the router and of the
instance, and the functions holding the largest share of the router's samples, converted to
µs per request (share × router CPU µs/request).

  .venv/bin/python benchmarks/profile_router.py [--seconds 8] [--connections 1 32] [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import realtime as rt  # noqa: E402


def collapse(path: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """(inclusive samples per function, self samples per function, total samples)."""
    incl: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        total += count
        for f in set(frames):
            incl[f] += count
        if frames:
            self_[frames[-1]] += count
    return incl, self_, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--payload", default="rows_1.csv")
    ap.add_argument("--model", default="lr")
    ap.add_argument("--out-dir", default="/tmp/moorage-bench/profile")
    a = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        sys.exit("py-spy not found: .venv/bin/pip install py-spy")
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    args = argparse.Namespace(bench_dir="/tmp/bench", python=sys.executable, out=str(out_dir / "x.json"),
                              deploy_timeout=180, keep_tmp=False, rounds=1, duration=a.seconds,
                              warmup=1, connections=a.connections, idle_wait=10)
    run = rt.Run(args)
    try:
        run.ensure_bench()
        run.snapshot()
        run.start_moorage()
        if not run.start_auth():
            print("auth not available:", run.notes)
        body = run.bench / "payloads" / a.payload
        for c in a.connections:
            for key in [k for k in ("moorage", "auth") if k in run.servers]:
                s = run.servers[key]
                url = f"{s.url}/endpoints/{a.model}/invocations"
                path = f"/endpoints/{a.model}/invocations"
                hfile = run.sign_to_file(s, path, body) if key == "auth" else None
                harness.wait_idle(10)
                harness.wrk_run(url, body, c, 1, hfile)  # warm-up
                raw = out_dir / f"{key}-c{c}.txt"
                assert s.proc is not None
                spy_p = subprocess.Popen(
                    ["taskset", "-c", harness.CLIENT_CPU, spy, "record", "--pid", str(s.proc.pid),
                     "--rate", str(a.rate), "--duration", str(a.seconds + 1), "--nonblocking",
                     "--format", "raw", "--output", str(raw)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                try:
                    r = harness.wrk_run(url, body, c, a.seconds, hfile, server=s)
                finally:
                    try:
                        spy_p.wait(timeout=a.seconds + 30)
                    except subprocess.TimeoutExpired:
                        spy_p.kill()
                        spy_p.wait(timeout=10)
                print(f"\n## {key}  c={c}: {r['rps']:,.0f} req/s, p50 {r['lat_p50_us'] / 1000:.3f} ms; "
                      f"CPU µs/request: router {r['front_cpu_us_per_req']}, instance "
                      f"{r['children_cpu_us_per_req']}, errors {r['errors']}")
                if not raw.exists():
                    print("  (py-spy wrote nothing)")
                    continue
                incl, self_, total = collapse(raw)
                us = r["front_cpu_us_per_req"]
                print(f"  py-spy samples with a Python stack: {total}")
                print("  inclusive  self   µs/req(incl)  function")
                for f, n in incl.most_common(a.top):
                    print(f"  {n / total:8.1%} {self_[f] / total:6.1%}  {n / total * us:9.1f}     {f}")
    finally:
        run.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
