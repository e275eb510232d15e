"""A warm parent that forks model instances: serverless cold starts without import time.

``python -m moorage.runtime.zygote --kind sklearn --socket PATH`` imports the runtime and its
framework once (about 2 s), then waits on a Unix socket. Each request is one JSON line
``{"model_dir", "socket", "log", "env", "mem_bytes", "cpus"}``; the zygote forks, answers
``{"pid": N}``, and the child applies its limits, loads only the model and serves frames on
``socket`` like ``python -m moorage.runtime`` would. Children are reaped automatically
(SIGCHLD ignored) and die with the zygote, which dies with the server (PR_SET_PDEATHSIG).

Thread pools are sized 1 before numpy is imported: a forked child cannot resize OpenBLAS.
pyarrow (the CSV parser for large bodies) is imported warm too, with its jemalloc background
thread off, so that the zygote forks with one thread; a child sizes pyarrow's pool to its
profile's vCPUs.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import socket
import sys
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_FRAMEWORKS = {"sklearn": ("sklearn.linear_model", "sklearn.ensemble", "joblib"),
               "xgboost": ("xgboost",), "python": ("joblib",)}


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _size_arrow_pool(threads: str | None) -> None:
    """pyarrow parses large CSV bodies on up to the profile's vCPUs (OMP_NUM_THREADS). BLAS keeps
    the one thread it was loaded with: predicting on spare threads that spin-wait between calls
    slowed a 2-instance batch transform on 2 cores by half (docs/benchmarks.md)."""
    if threads and threads.isdigit() and "pyarrow" in sys.modules:
        sys.modules["pyarrow"].set_cpu_count(int(threads))


def _child(kind: str, req: dict[str, Any]) -> None:
    """In the forked child: limits, environment, model, serve. Never returns."""
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _die_with_parent()
        os.setpgid(0, 0)
        log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        if req.get("cpus"):
            os.sched_setaffinity(0, set(req["cpus"]))
        if req.get("mem_bytes"):
            resource.setrlimit(resource.RLIMIT_AS, (req["mem_bytes"], req["mem_bytes"]))
        os.environ.update(req.get("env") or {})
        _size_arrow_pool(os.environ.get("OMP_NUM_THREADS"))
        os.chdir(req["model_dir"])
        from moorage.runtime.__main__ import serve_model
        serve_model(kind, Path(req["model_dir"]), req["socket"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="moorage.runtime.zygote")
    ap.add_argument("--kind", required=True, choices=sorted(_FRAMEWORKS))
    ap.add_argument("--socket", required=True)
    args = ap.parse_args(argv)

    for module in ("numpy", *_FRAMEWORKS[args.kind], "pyarrow.csv", "uvloop", "moorage.runtime.handler",
                   "moorage.runtime.server", "moorage.runtime.codecs"):
        __import__(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps children: no zombies
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket)
    listener.listen(64)
    while True:
        conn, _ = listener.accept()
        with conn, conn.makefile("rwb") as stream:
            line = stream.readline()
            if not line:
                continue
            req = json.loads(line)
            pid = os.fork()
            if pid == 0:
                listener.close()
                _child(args.kind, req)
            stream.write(json.dumps({"pid": pid}).encode() + b"\n")
            stream.flush()


if __name__ == "__main__":
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["JE_ARROW_MALLOC_CONF"] = "background_thread:false"
    main()
