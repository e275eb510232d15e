"""What the benchmarks share: starting servers pinned to a core and stopping them (with every
child), a signing urllib client, wrk runs with a JSON summary, and CPU accounting from /proc.
Used by realtime.py, async_throughput.py, batch_transform.py and profile_router.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LUA = HERE / "wrk_post.lua"
SHARED_BENCH = Path("/work/shared/bench")
SERVER_CPU = "1"
CLIENT_CPU = "0"
AUTH_KEY, AUTH_SECRET, REGION = "bench-key", "bench-secret", "us-east-1"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ processes

def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, start time, utime+stime ticks) of a live pid, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12])


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                children.setdefault(st[0], []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def affinity(pid: int) -> str:
    """``taskset -p`` of a pid, e.g. "pid 12's current affinity mask: 2"."""
    p = subprocess.run(["taskset", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    return (p.stdout or p.stderr).strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server process started by us (in its own session), pinned to SERVER_CPU."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path):
        self.name, self.cmd, self.env, self.cwd, self.log_path = name, cmd, env, cwd, log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.known: dict[int, int] = {}  # pid -> start time, of every descendant seen

    def start(self) -> None:
        with open(self.log_path, "ab") as logf:
            logf.write(f"\n==== {time.ctime()} {' '.join(self.cmd)}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *self.cmd], cwd=self.cwd,
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ping(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerExited(self.name, self.proc.returncode, self.log_tail())
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError as e:
                if e.code in (401, 403):  # auth on: the server is up
                    return
                last = f"HTTP {e.code}"
            except OSError as e:
                last = repr(e)
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer /ping within {timeout:.0f} s ({last}); "
                           f"log: {self.log_tail()}")

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def tree(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in pids:
            st = _stat(pid)
            if st:
                self.known.setdefault(pid, st[1])
        return pids

    def cpu_ticks(self) -> dict[int, int]:
        """utime+stime ticks per pid of the server's process tree (root first)."""
        return {p: (_stat(p) or (0, 0, 0))[2] for p in self.tree()}

    def stop(self) -> None:
        if self.proc is None:
            return
        self.tree()
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)  # graceful: stops its instances in order
                self.proc.wait(timeout=40)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        # Instance processes die with the server (PR_SET_PDEATHSIG); make sure, by pid and
        # start time (never by name), that nothing we started outlives the run.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            alive = [p for p, t in self.known.items() if (_stat(p) or (0, -1, 0))[1] == t]
            if not alive:
                break
            time.sleep(0.2)
        for pid, t in self.known.items():
            if (_stat(pid) or (0, -1, 0))[1] == t:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc = None


class ServerExited(RuntimeError):
    def __init__(self, name: str, rc: int | None, tail: str):
        super().__init__(f"{name} exited rc={rc}: {tail}")
        self.rc, self.tail = rc, tail


# ------------------------------------------------------------------------------ HTTP client

class Client:
    """urllib client for one server; SigV4-signs every request when ``signed``."""

    def __init__(self, base: str, signed: bool = False):
        self.base, self.signed = base, signed

    def sign(self, method: str, url: str, body: bytes, ctype: str | None) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        headers = {"Content-Type": ctype} if ctype else {}
        req = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(Credentials(AUTH_KEY, AUTH_SECRET), "sagemaker", REGION).add_auth(req)
        return dict(req.headers.items())

    def request(self, method: str, path: str, body: bytes = b"", ctype: str | None = None,
                signed: bool | None = None, timeout: float = 15) -> tuple[int, bytes]:
        url = self.base + path
        if self.signed if signed is None else signed:
            headers = self.sign(method, url, body, ctype)
        else:
            headers = {"Content-Type": ctype} if ctype else {}
        req = urllib.request.Request(url, data=body if method in ("POST", "PUT") else None,
                                     method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, method: str, path: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps(doc).encode() if doc is not None else b""
        status, out = self.request(method, path, body, "application/json" if doc is not None else None)
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> HTTP {status}: {out[:500]!r}")
        return json.loads(out) if out else {}


def deploy(client: Client, name: str, model_dir: Path, timeout: float) -> None:
    """Model, endpoint config and endpoint through the native REST API; wait for InService."""
    client.json("POST", "/api/models", {"ModelName": name, "PrimaryContainer": {
        "Image": "moorage/sklearn", "ModelDataUrl": str(model_dir)}})
    client.json("POST", "/api/endpoint-configs", {
        "EndpointConfigName": name, "ProductionVariants": [{
            "VariantName": "v1", "ModelName": name, "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1}]})
    client.json("POST", "/api/endpoints", {"EndpointName": name, "EndpointConfigName": name})
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        doc = client.json("GET", f"/api/endpoints/{name}")
        status = doc.get("EndpointStatus", "?")
        if status == "InService":
            return
        if status == "Failed":
            raise RuntimeError(f"endpoint {name} failed: {doc.get('FailureReason')}")
        time.sleep(0.3)
    raise RuntimeError(f"endpoint {name} not InService after {timeout:.0f} s (status {status})")


def check_answers(client: Client, path_of: dict[str, str], bench: Path,
                  expected: dict[str, list[int]]) -> list[str]:
    """POST every payload to every model; CSV out must be one expected prediction per line."""
    done = []
    for model, path in path_of.items():
        for n in (1, 100):
            body = (bench / "payloads" / f"rows_{n}.csv").read_bytes()
            status, out = client.request("POST", path, body, "text/csv")
            if status != 200:
                raise RuntimeError(f"{client.base}{path} rows_{n}: HTTP {status}: {out[:300]!r}")
            got = [int(float(x)) for x in out.decode().split()]
            if got != expected[f"{model}_{n}"]:
                raise RuntimeError(f"{client.base}{path} rows_{n}: wrong predictions {got[:10]}... "
                                   f"expected {expected[f'{model}_{n}'][:10]}...")
            done.append(f"{model}_{n}")
    return done


# ------------------------------------------------------------------------------ wrk

def cpu_times() -> dict[str, list[int]]:
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *vals = line.split()
            out[name] = [int(v) for v in vals]
    return out


def core_busy(t0: dict[str, list[int]], t1: dict[str, list[int]], core: str) -> float:
    a, b = t0[f"cpu{core}"], t1[f"cpu{core}"]
    total = sum(b) - sum(a)
    idle = (b[3] + b[4]) - (a[3] + a[4])
    return (total - idle) / total if total else 0.0


def wait_idle(max_wait: float, threshold: float = 0.15) -> tuple[float, float]:
    """Wait (up to ``max_wait`` s) until both cores are less than ``threshold`` busy over 0.5 s,
    so a measurement does not start while another job is running. Returns (waited s, busiest
    core share in the last sample)."""
    t0 = time.monotonic()
    while True:
        a = cpu_times()
        time.sleep(0.5)
        b = cpu_times()
        busy = max(core_busy(a, b, SERVER_CPU), core_busy(a, b, CLIENT_CPU))
        if busy < threshold or time.monotonic() - t0 >= max_wait:
            return round(time.monotonic() - t0, 1), round(busy, 3)


def wrk_run(url: str, body_file: Path, connections: int, duration: int,
            headers_file: Path | None = None, server: Server | None = None) -> dict[str, Any]:
    env = dict(os.environ, WRK_BODY_FILE=str(body_file), WRK_CONTENT_TYPE="text/csv",
               WRK_HEADERS_FILE=str(headers_file) if headers_file else "")
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
           "--timeout", "5s", "-s", str(LUA), url]
    load = os.getloadavg()[0]
    c0, s0, w0 = cpu_times(), (server.cpu_ticks() if server else {}), time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 35)
    c1, s1, w1 = cpu_times(), (server.cpu_ticks() if server else {}), time.monotonic()
    res = None
    for line in p.stdout.splitlines():
        if line.startswith("WRKJSON "):
            res = json.loads(line[len("WRKJSON "):])
    if res is None:
        raise RuntimeError(f"wrk failed rc={p.returncode}: {p.stdout[-500:]} {p.stderr[-500:]}")
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
    res["errors"] = sum(res[k] for k in ("err_connect", "err_read", "err_write", "err_status",
                                         "err_timeout"))
    hz = os.sysconf("SC_CLK_TCK")
    res.update(connections=connections, loadavg_1m=load, started_at=time.time() - (w1 - w0),
               server_core_busy=round(core_busy(c0, c1, SERVER_CPU), 3),
               client_core_busy=round(core_busy(c0, c1, CLIENT_CPU), 3))
    if server:
        delta = {pid: t - s0.get(pid, t) for pid, t in s1.items()}
        root = server.proc.pid if server.proc else 0
        tree = sum(delta.values())
        res["server_tree_cpu"] = round(tree / hz / (w1 - w0), 3)
        # CPU time on the server's core that was not the server's: another job's
        res["core1_other"] = round(max(0.0, res["server_core_busy"] - res["server_tree_cpu"]), 3)
        # CPU microseconds per request: the HTTP process, and its children (instances)
        n = max(res["requests"], 1)
        res["cpu_us_per_req"] = round(tree / hz / n * 1e6, 1)
        res["front_cpu_us_per_req"] = round(delta.get(root, 0) / hz / n * 1e6, 1)
        res["children_cpu_us_per_req"] = round((tree - delta.get(root, 0)) / hz / n * 1e6, 1)
    return res
