#!/usr/bin/env python3
"""Real-time InvokeEndpoint benchmark: Moorage against the yardstick's bare-Starlette limit.

One command, one run, targets measured interleaved round by round:

  (a) limit  the yardstick's Starlette app (uvicorn, uvloop, httptools; predict inline on the
             event loop), i.e. the minimal Python HTTP path for the same request;
  (b) moorage  ``python -m moorage server --no-auth``: router process + one instance process
             per endpoint, the endpoints created through the native REST API;
  (c) auth   a second Moorage server with SigV4 auth on (admin key from the environment),
             driven by a SigV4-signed wrk client (the signed request is replayed).

Method (as the yardstick, /work/shared/bench/results.md): every server pinned to core 1 with
``taskset -c 1`` (Moorage's instance processes are its children and inherit the pinning; checked
with ``taskset -p``), wrk pinned to core 0 with one thread, closed loop with keep-alive at 1 and
32 connections. Payloads: LogisticRegression 1-row CSV and RandomForest 100-row CSV. Each
measurement is preceded by a warm-up run at the same concurrency. Per round the server order
rotates; the servers of one cell (payload, concurrency) are measured back to back, so ratios are
paired per round. Reported: medians over rounds, and medians of per-round ratios.

Every server's answers are checked against the yardstick's expected.json before measuring.
Latency percentiles are wrk's (wrk 4.x corrects them for coordinated omission).

  .venv/bin/python benchmarks/realtime.py                 # 3 rounds x 10 s (about 10 min)
  .venv/bin/python benchmarks/realtime.py --quick         # 1 round x 3 s smoke run
  .venv/bin/python benchmarks/realtime.py --targets limit,moorage --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402  (the shared pieces)
    AUTH_KEY,
    AUTH_SECRET,
    CLIENT_CPU,
    REPO,
    SERVER_CPU,
    SHARED_BENCH,
    Client,
    Server,
    ServerExited,
    affinity,
    check_answers,
    deploy,
    free_port,
    log,
    wait_idle,
    wrk_run,
)

#: (key, label, model/endpoint name, payload file, rows)
PAYLOADS = [("lr1", "LR 1 row", "lr", "rows_1.csv", 1),
            ("rf100", "RF 100 rows", "rf", "rows_100.csv", 100)]
TARGET_LABELS = {"limit": "starlette (csv) = LIMIT", "moorage": "moorage (auth off)",
                 "auth": "moorage auth on (SigV4)"}


# ------------------------------------------------------------------------------ the run

class Run:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.bench = Path(args.bench_dir)
        self.tmp = Path(tempfile.mkdtemp(prefix="mrb-", dir="/tmp"))  # short: socket paths
        self.servers: dict[str, Server] = {}
        self.notes: list[str] = []
        self.pinning: dict[str, Any] = {}
        self.checks: dict[str, list[str]] = {}
        self.rows: list[dict[str, Any]] = []
        self.loadavg_samples: list[tuple[float, float]] = []
        self.py = str(Path(args.python).absolute())
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
        self.base_env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                             PYTHONUNBUFFERED="1")
        self.logdir = Path(args.out).parent / "logs"
        self.src = REPO
        self.code: dict[str, Any] = {}

    # -- setup -----------------------------------------------------------------------------
    def ensure_bench(self) -> None:
        if not (self.bench / "models" / "lr.joblib").is_file():
            if not self.bench.exists():
                log(f"copying {SHARED_BENCH} to {self.bench}")
                shutil.copytree(SHARED_BENCH, self.bench)
                for p in [self.bench, *self.bench.rglob("*")]:
                    p.chmod(p.stat().st_mode | 0o200)
            log("training the yardstick models (make_model.py, deterministic)")
            subprocess.run([self.py, "make_model.py"], cwd=self.bench, check=True, timeout=600,
                           stdout=subprocess.DEVNULL)
        self.expected = json.loads((self.bench / "payloads" / "expected.json").read_text())

    def snapshot(self) -> None:
        """Copy the moorage package once, so every process of this run (servers, and instances
        started later) runs the same code even if the working tree changes meanwhile."""
        import hashlib
        src = self.tmp / "src"
        shutil.copytree(REPO / "moorage", src / "moorage",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        h = hashlib.sha256()
        for f in sorted((src / "moorage").rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes())
        self.src = src
        self.base_env["PYTHONPATH"] = os.pathsep.join(
            [str(src)] + [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x])
        p = subprocess.run([self.py, "-c", "import moorage; print(moorage.__file__)"], cwd=src,
                           env=self.base_env, capture_output=True, text=True, timeout=60)
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        self.code = {"git_head": git("rev-parse", "HEAD"),
                     "uncommitted": git("status", "--porcelain", "--untracked-files=no",
                                        "--", "moorage").splitlines(),
                     "snapshot_sha256": h.hexdigest(), "imported_from": p.stdout.strip()}
        if not self.code["imported_from"].startswith(str(src)):
            raise RuntimeError(f"snapshot not used: moorage imported from {self.code['imported_from']}")
        log(f"code snapshot: {self.code}")

    def start_limit(self) -> None:
        s = Server("limit", [self.py, "-m", "uvicorn", "starlette_app:app", "--app-dir",
                             str(self.bench / "servers"), "--host", "127.0.0.1", "--port", "0",
                             "--workers", "1", "--loop", "uvloop", "--http", "httptools",
                             "--no-access-log", "--log-level", "warning"],
                   dict(self.base_env, BENCH_MODELS_DIR=str(self.bench / "models")),
                   self.bench, self.tmp / "limit.log")
        s.port = free_port()
        s.cmd[s.cmd.index("--port") + 1] = str(s.port)
        self.servers["limit"] = s
        s.start()
        s.wait_ping(90)
        self.checks["limit"] = check_answers(Client(s.url), {
            "lr": "/endpoints/lr/invocations", "rf": "/endpoints/rf/invocations"},
            self.bench, self.expected)
        self.pinning["limit"] = {"server": affinity(s.proc.pid)}  # type: ignore[union-attr]
        log(f"limit ready on {s.url}: {self.pinning['limit']['server']}")

    def _moorage(self, key: str, auth: bool) -> Server:
        data = self.tmp / key
        data.mkdir()
        env = dict(self.base_env)
        cmd = [self.py, "-m", "moorage", "server", "--port", "0", "--data-dir", str(data),
               "--log-level", "warning"]
        if auth:
            env.update(MOORAGE_ADMIN_ACCESS_KEY_ID=AUTH_KEY, MOORAGE_ADMIN_SECRET_ACCESS_KEY=AUTH_SECRET)
        else:
            cmd.append("--no-auth")
        s = Server(key, cmd, env, self.src, self.tmp / f"{key}.log")
        s.port = free_port()
        s.cmd[s.cmd.index("--port") + 1] = str(s.port)
        self.servers[key] = s
        s.start()
        try:
            s.wait_ping(90)
        except ServerExited as exc:
            if "--no-auth" in s.cmd and "no such option" in exc.tail.lower():
                self.notes.append("`moorage server` has no `--no-auth` flag yet (auth not "
                                  "implemented): the auth-off server was started without it.")
                log("server refused --no-auth; restarting without it")
                s.cmd.remove("--no-auth")
                s.start()
                s.wait_ping(90)
            else:
                raise
        return s

    def _deploy_all(self, key: str, s: Server, signed: bool) -> Client:
        client = Client(s.url, signed=signed)
        for m in ("lr", "rf"):
            d = self.tmp / f"{key}-artifacts" / m
            d.mkdir(parents=True)
            shutil.copy(self.bench / "models" / f"{m}.joblib", d / "model.joblib")
            t0 = time.monotonic()
            deploy(client, m, d, self.a.deploy_timeout)
            log(f"{key}: endpoint {m} InService after {time.monotonic() - t0:.1f} s")
        self.checks[key] = check_answers(client, {"lr": "/endpoints/lr/invocations",
                                                  "rf": "/endpoints/rf/invocations"},
                                         self.bench, self.expected)
        pins: dict[str, Any] = {"server": affinity(s.proc.pid)}  # type: ignore[union-attr]
        for m in ("lr", "rf"):
            inst = client.json("GET", f"/api/endpoints/{m}/instances").get("Instances", [])
            pins[m] = [affinity(int(i["Pid"])) for i in inst if i.get("Pid")]
            if not pins[m]:
                raise RuntimeError(f"{key}: endpoint {m} lists no instance pid: {inst}")
        for what, val in pins.items():
            for line in (val if isinstance(val, list) else [val]):
                if not line.rstrip().endswith(": 2"):
                    raise RuntimeError(f"{key}: {what} is not pinned to core {SERVER_CPU}: {line}")
        self.pinning[key] = pins
        return client

    def start_moorage(self) -> None:
        s = self._moorage("moorage", auth=False)
        self._deploy_all("moorage", s, signed=False)
        log(f"moorage ready on {s.url}: {self.pinning['moorage']}")

    def start_auth(self) -> bool:
        """The auth-on server; False (with a note) when auth is not in force yet."""
        try:
            s = self._moorage("auth", auth=True)
        except ServerExited as exc:
            self.notes.append(f"auth-on server did not start (rc={exc.rc}); (c) skipped: "
                              f"{exc.tail[-300:]!r}")
            return False
        plain = Client(s.url)
        status, _ = plain.request("GET", "/api/endpoints")
        if status == 200:
            self.notes.append("auth not in force yet: the server started with an admin key and "
                              "without --no-auth answered an unsigned GET /api/endpoints with "
                              "200, so (c) was skipped.")
            log("auth not in force (unsigned request answered 200): skipping (c)")
            s.stop()
            del self.servers["auth"]
            return False
        log(f"auth server refuses unsigned control requests (HTTP {status}); deploying signed")
        try:
            self._deploy_all("auth", s, signed=True)
        except Exception as exc:  # report (a) and (b) anyway
            self.notes.append(f"auth-on server: signed deployment or checks failed, (c) skipped: "
                              f"{exc}")
            log(f"auth setup failed, skipping (c): {exc}")
            s.stop()
            del self.servers["auth"]
            return False
        status, _ = plain.request("POST", "/endpoints/lr/invocations",
                                  (self.bench / "payloads" / "rows_1.csv").read_bytes(), "text/csv")
        if status == 200:
            self.notes.append("auth server answered an unsigned invocation with 200: auth is "
                              "not enforced on InvokeEndpoint, so (c) was skipped.")
            s.stop()
            del self.servers["auth"]
            return False
        self.checks["auth_unsigned_invoke_status"] = [str(status)]
        log(f"auth ready on {s.url}: unsigned invoke -> HTTP {status}; {self.pinning['auth']}")
        return True

    def sign_to_file(self, s: Server, path: str, body_file: Path) -> Path:
        url = s.url + path
        headers = Client(s.url).sign("POST", url, body_file.read_bytes(), "text/csv")
        keep = {k.lower(): v for k, v in headers.items()}
        lines = [f"Host: 127.0.0.1:{s.port}"]  # what botocore signed (urlsplit(url).netloc)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256",
                     "X-Amz-Security-Token", "Content-Type"):
            if name.lower() in keep:
                lines.append(f"{name}: {keep[name.lower()]}")
        out = self.tmp / "auth-headers.txt"
        out.write_text("\n".join(lines) + "\n")
        return out

    # -- measuring -------------------------------------------------------------------------
    def measure(self) -> None:
        keys = [k for k in ("limit", "moorage", "auth") if k in self.servers]
        conns = self.a.connections
        total = self.a.rounds * len(PAYLOADS) * len(conns) * len(keys)
        n = 0
        for rnd in range(self.a.rounds):
            order = keys[rnd % len(keys):] + keys[:rnd % len(keys)]
            for pkey, plabel, model, pfile, _ in PAYLOADS:
                body = self.bench / "payloads" / pfile
                for c in conns:
                    for key in order:
                        s = self.servers[key]
                        url = f"{s.url}/endpoints/{model}/invocations"
                        hfile = self.sign_to_file(s, f"/endpoints/{model}/invocations", body) \
                            if key == "auth" else None
                        waited, busy = wait_idle(self.a.idle_wait)
                        if busy >= 0.15:
                            log(f"machine still busy after {waited:.0f} s ({busy:.0%} of a core): "
                                "measuring anyway")
                        if self.a.warmup > 0:
                            w = wrk_run(url, body, c, self.a.warmup, hfile)
                            if w["requests"] and w["err_status"] == w["requests"]:
                                raise RuntimeError(f"{key} {pkey} c={c}: every warm-up request "
                                                   "failed (HTTP >= 400)")
                        r = wrk_run(url, body, c, self.a.duration, hfile, server=s)
                        r.update(target=key, payload=pkey, round=rnd, url=url,
                                 idle_wait_s=waited, busy_before=busy)
                        self.rows.append(r)
                        self.loadavg_samples.append((time.time(), r["loadavg_1m"]))
                        n += 1
                        log(f"[{n}/{total}] round {rnd + 1} {key:8} {plabel:12} c={c:<3} "
                            f"{r['rps']:9.1f} req/s  p50 {r['lat_p50_us'] / 1000:7.3f} ms  "
                            f"p99 {r['lat_p99_us'] / 1000:8.3f} ms  err {r['errors']}  "
                            f"load {r['loadavg_1m']:.2f}  core{SERVER_CPU} busy "
                            f"{r['server_core_busy']:.0%} (server tree {r['server_tree_cpu']:.0%})"
                            + (f"  waited {waited:.0f} s for idle" if waited >= 1 else ""))

    # -- results ---------------------------------------------------------------------------
    def cell(self, key: str, pkey: str, c: int) -> list[dict[str, Any]]:
        return sorted((r for r in self.rows if r["target"] == key and r["payload"] == pkey
                       and r["connections"] == c), key=lambda r: r["round"])

    def paired(self, key: str, base: str, pkey: str, c: int, field: str) -> float | None:
        a = {r["round"]: r for r in self.cell(key, pkey, c)}
        b = {r["round"]: r for r in self.cell(base, pkey, c)}
        vals = [a[i][field] / b[i][field] for i in a if i in b and b[i][field]]
        return statistics.median(vals) if vals else None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("limit", "moorage", "auth"):
            for pkey, *_ in PAYLOADS:
                for c in self.a.connections:
                    rs = self.cell(key, pkey, c)
                    if not rs:
                        continue
                    d = {"n": len(rs),
                         "p50_ms": statistics.median(r["lat_p50_us"] for r in rs) / 1000,
                         "p99_ms": statistics.median(r["lat_p99_us"] for r in rs) / 1000,
                         "rps": statistics.median(r["rps"] for r in rs),
                         "errors": sum(r["errors"] for r in rs),
                         "rps_rounds": [round(r["rps"], 1) for r in rs],
                         "p50_ms_rounds": [r["lat_p50_us"] / 1000 for r in rs],
                         "loadavg_rounds": [r["loadavg_1m"] for r in rs],
                         "server_core_busy_rounds": [r["server_core_busy"] for r in rs],
                         "server_tree_cpu_rounds": [r["server_tree_cpu"] for r in rs],
                         "core1_other_rounds": [r["core1_other"] for r in rs],
                         "cpu_us_per_req": statistics.median(r["cpu_us_per_req"] for r in rs),
                         "front_cpu_us_per_req": statistics.median(r["front_cpu_us_per_req"] for r in rs),
                         "children_cpu_us_per_req": statistics.median(
                             r["children_cpu_us_per_req"] for r in rs)}
                    for base in ("limit",) + (("moorage",) if key == "auth" else ()):
                        if key == base:
                            continue
                        d[f"vs_{base}"] = {f: self.paired(key, base, pkey, c, src) for f, src in
                                           (("rps", "rps"), ("p50", "lat_p50_us"),
                                            ("p99", "lat_p99_us"))}
                    out[f"{key}/{pkey}/c{c}"] = d
        return out

    def verdicts(self, summ: dict[str, Any]) -> list[dict[str, Any]]:
        def get(k: str, *path: str) -> Any:
            v: Any = summ.get(k)
            for p in path:
                v = None if v is None else v.get(p)
            return v

        checks = [
            ("LR 1 row, c=32: moorage req/s >= 0.60x limit", get("moorage/lr1/c32", "vs_limit", "rps"), ">=", 0.60),
            ("LR 1 row, c=1: moorage p50 <= 0.45 ms", get("moorage/lr1/c1", "p50_ms"), "<=", 0.45),
            ("RF 100 rows, c=32: moorage req/s >= 0.95x limit", get("moorage/rf100/c32", "vs_limit", "rps"), ">=", 0.95),
            ("RF 100 rows, c=1: moorage req/s >= 0.95x limit", get("moorage/rf100/c1", "vs_limit", "rps"), ">=", 0.95),
        ]
        for pkey, plabel, *_ in PAYLOADS:
            for c in self.a.connections:
                checks.append((f"{plabel}, c={c}: auth-on req/s >= 0.90x auth-off",
                               get(f"auth/{pkey}/c{c}", "vs_moorage", "rps"), ">=", 0.90))
        out = []
        for name, val, op, lim in checks:
            if val is None:
                verdict = "SKIPPED"
            else:
                verdict = "PASS" if (val >= lim if op == ">=" else val <= lim) else "MISS"
            out.append({"target": name, "value": val, "op": op, "limit": lim, "verdict": verdict})
        return out

    def markdown(self, summ: dict[str, Any], verdicts: list[dict[str, Any]]) -> str:
        def f(v: Any, nd: int = 2) -> str:
            if v is None:
                return "—"
            if isinstance(v, float) and abs(v) >= 1000:
                return f"{v:,.0f}"
            return f"{v:.{nd}f}"

        L = ["| target | payload | c=1 p50 ms | c=1 p99 ms | c=1 req/s | c=32 p50 ms | c=32 p99 ms "
             "| c=32 req/s | × limit c=1 p50 | × limit c=1 req/s | × limit c=32 req/s "
             "| × limit c=32 p99 | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for key in ("limit", "moorage", "auth"):
            for pkey, plabel, *_ in PAYLOADS:
                a, b = summ.get(f"{key}/{pkey}/c1"), summ.get(f"{key}/{pkey}/c32")
                if not a and not b:
                    continue
                a, b = a or {}, b or {}
                va, vb = a.get("vs_limit") or {}, b.get("vs_limit") or {}
                one = key == "limit"
                L.append(f"| {TARGET_LABELS[key]} | {plabel} | {f(a.get('p50_ms'))} | "
                         f"{f(a.get('p99_ms'))} | {f(a.get('rps'), 0)} | {f(b.get('p50_ms'))} | "
                         f"{f(b.get('p99_ms'))} | {f(b.get('rps'), 0)} | "
                         f"{'1.00' if one else f(va.get('p50'))} | {'1.00' if one else f(va.get('rps'))} | "
                         f"{'1.00' if one else f(vb.get('rps'))} | {'1.00' if one else f(vb.get('p99'))} | "
                         f"{a.get('errors', 0) + b.get('errors', 0)} |")
        if any(k.startswith("auth/") for k in summ):
            L += ["", "| auth on ÷ auth off (paired) | c=1 req/s | c=1 p50 | c=32 req/s | c=32 p99 |",
                  "|---|---:|---:|---:|---:|"]
            for pkey, plabel, *_ in PAYLOADS:
                a = (summ.get(f"auth/{pkey}/c1") or {}).get("vs_moorage") or {}
                b = (summ.get(f"auth/{pkey}/c32") or {}).get("vs_moorage") or {}
                L.append(f"| {plabel} | {f(a.get('rps'))} | {f(a.get('p50'))} | {f(b.get('rps'))} "
                         f"| {f(b.get('p99'))} |")
        L += ["", "| target | payload | CPU µs/request c=1: total (HTTP process + instance) "
                  "| CPU µs/request c=32: total (HTTP process + instance) |", "|---|---|---:|---:|"]
        for key in ("limit", "moorage", "auth"):
            for pkey, plabel, *_ in PAYLOADS:
                cs = [summ.get(f"{key}/{pkey}/c{c}") for c in (1, 32)]
                if not all(cs):
                    continue
                L.append(f"| {TARGET_LABELS[key]} | {plabel} | " + " | ".join(
                    f"{c['cpu_us_per_req']:,.0f} ({c['front_cpu_us_per_req']:,.0f} + "
                    f"{c['children_cpu_us_per_req']:,.0f})" for c in cs) + " |")
        L += ["", "| target | value | verdict |", "|---|---:|---|"]
        for v in verdicts:
            L.append(f"| {v['target']} | {f(v['value'], 3)} | **{v['verdict']}** |")
        L += ["", "| target | payload | c=32 req/s per round | c=1 p50 ms per round | "
                  "load avg (1 min) at start | core 1: busy / server tree / other jobs (c=32) |",
              "|---|---|---|---|---|---|"]
        for key in ("limit", "moorage", "auth"):
            for pkey, plabel, *_ in PAYLOADS:
                a, b = summ.get(f"{key}/{pkey}/c1"), summ.get(f"{key}/{pkey}/c32")
                if not a or not b:
                    continue
                loads = a["loadavg_rounds"] + b["loadavg_rounds"]
                busy = " · ".join(f"{x:.0%}/{y:.0%}/{z:.0%}" for x, y, z in
                                  zip(b["server_core_busy_rounds"], b["server_tree_cpu_rounds"],
                                      b["core1_other_rounds"]))
                L.append(f"| {TARGET_LABELS[key]} | {plabel} | "
                         f"{' / '.join(f'{x:,.0f}' for x in b['rps_rounds'])} | "
                         f"{' / '.join(f'{x:.3f}' for x in a['p50_ms_rounds'])} | "
                         f"{min(loads):.2f}–{max(loads):.2f} | {busy} |")
        return "\n".join(L)

    def versions(self) -> dict[str, Any]:
        code = ("import json,sys,uvicorn,starlette,sklearn,numpy,uvloop,httptools,botocore,joblib,"
                "moorage;print(json.dumps({'python':sys.version.split()[0],'uvicorn':uvicorn.__version__,"
                "'starlette':starlette.__version__,'scikit-learn':sklearn.__version__,"
                "'numpy':numpy.__version__,'uvloop':uvloop.__version__,'httptools':httptools.__version__,"
                "'botocore':botocore.__version__,'joblib':joblib.__version__,'moorage':moorage.__version__}))")
        p = subprocess.run([self.py, "-c", code], capture_output=True, text=True, timeout=60,
                           cwd=self.src, env=self.base_env)
        v = json.loads(p.stdout) if p.returncode == 0 else {"error": p.stderr[-300:]}
        w = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
        v["wrk"] = (w.stdout or w.stderr).splitlines()[0].split(" Copyright")[0]
        g = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        d = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10)
        v["git"] = g.stdout.strip() + (" (uncommitted changes)" if d.stdout.strip() else "")
        v["kernel"] = platform.release()
        try:
            v["cpu"] = next(line.split(":", 1)[1].strip() for line in
                            Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
        except StopIteration:
            pass
        v["cores"] = os.cpu_count()
        return v

    def collect_logs(self) -> None:
        try:
            self.logdir.mkdir(parents=True, exist_ok=True)
            for p in self.tmp.glob("*.log"):
                shutil.copy(p, self.logdir / p.name)
            for p in self.tmp.glob("*/logs"):
                shutil.copytree(p, self.logdir / f"{p.parent.name}-instances", dirs_exist_ok=True)
        except OSError:
            pass

    def cleanup(self) -> None:
        for s in list(self.servers.values()):
            try:
                s.stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping {s.name}: {exc!r}")
        self.collect_logs()
        if not self.a.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, 3 s, 1 s warm-up")
    ap.add_argument("--targets", default="limit,moorage,auth",
                    help="comma list of limit, moorage, auth")
    ap.add_argument("--bench-dir", default="/tmp/bench",
                    help="writable yardstick copy with trained models (created if missing)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for all servers")
    ap.add_argument("--deploy-timeout", type=float, default=180)
    ap.add_argument("--idle-wait", type=float, default=30,
                    help="before each measurement, wait up to this many seconds for both cores "
                         "to be idle (other jobs); 0 to not wait")
    ap.add_argument("--out", default="/tmp/moorage-bench/realtime.json")
    ap.add_argument("--keep-tmp", action="store_true", help="keep data dirs (for debugging)")
    ap.add_argument("--no-snapshot", action="store_true",
                    help="run the working tree's moorage directly instead of a copy taken at start")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.duration, a.warmup = 1, 3, 1
        a.idle_wait = min(a.idle_wait, 5)
    targets = {t.strip() for t in a.targets.split(",") if t.strip()}
    if "limit" not in targets:
        ap.error("--targets must include limit (every ratio is paired against it)")
    if subprocess.run(["taskset", "-c", "0", "true"], capture_output=True, timeout=5).returncode:
        sys.exit("taskset does not work here; the method needs pinning")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    run = Run(a)
    started = time.time()
    try:
        run.ensure_bench()
        if not a.no_snapshot:
            run.snapshot()
        versions = run.versions()
        log(f"versions: {versions}")
        run.start_limit()
        if "moorage" in targets:
            run.start_moorage()
        if "auth" in targets:
            if "moorage" not in targets:
                ap.error("auth is reported against moorage: include both")
            run.start_auth()
        log(f"measuring: {a.rounds} round(s), {a.warmup} s warm-up + {a.duration} s per run")
        run.measure()
    except KeyboardInterrupt:
        log("interrupted: stopping servers")
        run.cleanup()
        return 130
    except BaseException:
        run.cleanup()
        raise
    run.cleanup()
    summ = run.summary()
    verdicts = run.verdicts(summ)
    md = run.markdown(summ, verdicts)
    loads = [x[1] for x in run.loadavg_samples]
    result = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "wall_seconds": round(time.time() - started, 1),
        "config": {"duration": a.duration, "warmup": a.warmup, "rounds": a.rounds,
                   "connections": a.connections, "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU,
                   "wrk": "1 thread, --timeout 5s, keep-alive, closed loop", "bench_dir": str(run.bench)},
        "versions": versions, "code": run.code, "pinning": run.pinning, "checks": run.checks, "notes": run.notes,
        "loadavg_1m": {"min": min(loads, default=None), "max": max(loads, default=None),
                       "median": statistics.median(loads) if loads else None},
        "summary": summ, "verdicts": verdicts, "runs": run.rows, "markdown": md,
    }
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(md)
    for n in run.notes:
        print(f"\nNote: {n}")
    print(f"\nload average (1 min) during the run: {result['loadavg_1m']['min']:.2f}–"
          f"{result['loadavg_1m']['max']:.2f} (median {result['loadavg_1m']['median']:.2f}); "
          f"JSON: {a.out}")
    for v in verdicts:
        print(f"{v['verdict']:7} {v['target']}"
              + ("" if v["value"] is None else f"  (measured {v['value']:.3f})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
