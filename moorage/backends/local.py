"""Local backend: each instance is a child OS process of the server.

Built-in runtimes speak frames over a Unix socket (backends/frames.py); a bring-your-own
server speaks SageMaker's HTTP container contract (GET /ping, POST /invocations) on the port
given in SAGEMAKER_BIND_TO_PORT. A profile limits the process's threads (OMP/MKL/OpenBLAS
variables), CPU affinity and address space. Children die with the server (PR_SET_PDEATHSIG),
so a crashed server never leaves orphans holding ports or sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import AsyncIterator, BinaryIO, Callable, Iterator

import httpx

from moorage.backends.base import FileRange, InstanceGone, InstanceSpec, Reply, write_reply
from moorage.backends.frames import FrameConnection
from moorage.backends.zygote import ForkedProcess, Zygotes
from moorage.runtime import protocol as p

_PR_SET_PDEATHSIG = 1
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def _preexec(cpus: set[int] | None, mem_bytes: int | None) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
        os.setpgid(0, 0)  # a terminal's Ctrl-C goes to the server, which stops us in order
        if cpus:
            os.sched_setaffinity(0, cpus)
        if mem_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    return setup


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Process:
    """Spawning, exit status and stop, shared by both instance kinds."""

    instance_id: str
    _proc: subprocess.Popen[bytes] | ForkedProcess

    def exited(self) -> int | None:
        return self._proc.poll()

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def _terminate(self, grace: float) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            deadline = asyncio.get_running_loop().time() + grace
            while self._proc.poll() is None and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            if self._proc.poll() is None:
                self._proc.kill()
                await asyncio.sleep(0)
                self._proc.wait()


class FrameInstance(_Process):
    """An instance running moorage.runtime, reached by frames over a Unix socket."""

    def __init__(self, instance_id: str, proc: subprocess.Popen[bytes] | ForkedProcess,
                 socket_path: Path) -> None:
        self.instance_id = instance_id
        self._proc = proc
        self._socket = socket_path
        self._conn: FrameConnection | None = None

    async def _connection(self) -> FrameConnection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = await FrameConnection.open(str(self._socket))
            except OSError as exc:
                raise InstanceGone(f"cannot connect to instance {self.instance_id}: {exc}") from exc
        return self._conn

    async def invoke(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                     body: bytes, timeout: float) -> Reply:
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connection()
        r = await conn.call(p.KIND_INVOKE, content_type, accept, custom_attributes, body, timeout)
        return Reply(r.status, r.content_type, r.custom_attributes, r.body)

    async def invoke_file(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                          src: str, dst: str, timeout: float) -> Reply:
        conn = await self._connection()
        r = await conn.call(p.KIND_INVOKE_FILE, content_type, accept, custom_attributes,
                            f"{src}\0{dst}".encode(), timeout)
        return Reply(r.status, r.content_type, r.custom_attributes, r.body)

    async def invoke_to(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                        body: bytes, target: p.Publish, timeout: float) -> Reply:
        """The instance writes the result itself: no copy back to a server thread to write."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connection()
        r = await conn.call(p.KIND_INVOKE_TO, content_type, accept, custom_attributes, target.encode(body), timeout)
        return Reply(r.status, r.content_type, r.custom_attributes, r.body)

    async def invoke_range(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                           body: FileRange, timeout: float) -> Reply:
        conn = await self._connection()
        r = await conn.call(p.KIND_INVOKE_RANGE, content_type, accept, custom_attributes, body.encode(), timeout)
        return Reply(r.status, r.content_type, r.custom_attributes, r.body)

    async def ping(self, timeout: float) -> bool:
        if self.exited() is not None or not self._socket.exists():
            return False
        try:
            conn = await self._connection()
            r = await conn.call(p.KIND_PING, b"", b"", b"", b"", timeout)
        except (InstanceGone, asyncio.TimeoutError):
            return False
        return r.status == 200

    async def stop(self, grace: float) -> None:
        await self._terminate(grace)
        if self._conn is not None:
            self._conn.close()
        self._socket.unlink(missing_ok=True)


class HttpInstance(_Process):
    """A bring-your-own server speaking the SageMaker container contract over HTTP."""

    def __init__(self, instance_id: str, proc: subprocess.Popen[bytes], port: int) -> None:
        self.instance_id = instance_id
        self._proc = proc
        self.port = port
        self._client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         limits=httpx.Limits(max_keepalive_connections=64))

    async def invoke(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                     body: bytes, timeout: float) -> Reply:
        with self._errors():
            r = await self._client.post("/invocations", content=body, timeout=timeout,
                                        headers=_headers(content_type, accept, custom_attributes))
        return Reply(r.status_code, r.headers.get("content-type", "").encode(),
                     r.headers.get("x-amzn-sagemaker-custom-attributes", "").encode(), r.content)

    async def invoke_to(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                        body: bytes, target: p.Publish, timeout: float) -> Reply:
        return await write_reply(await self.invoke(content_type, accept, custom_attributes, body, timeout), target)

    async def invoke_range(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                           body: FileRange, timeout: float) -> Reply:
        data = await asyncio.to_thread(body.read)
        return await self.invoke(content_type, accept, custom_attributes, data, timeout)

    async def invoke_file(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                          src: str, dst: str, timeout: float) -> Reply:
        """The body streams from ``src`` and the response into ``dst``, chunk by chunk."""
        headers = _headers(content_type, accept, custom_attributes)
        headers["Content-Length"] = str(os.path.getsize(src))
        loop = asyncio.get_running_loop()
        with self._errors(), open(src, "rb") as body, open(dst, "wb") as out:
            async with asyncio.timeout(timeout):
                async with self._client.stream("POST", "/invocations", content=_chunks(body),
                                               headers=headers, timeout=timeout) as r:
                    if r.status_code >= 400:
                        error = (await r.aread())[:4096]
                    else:
                        error = b""
                        async for chunk in r.aiter_raw(CHUNK):
                            await loop.run_in_executor(None, out.write, chunk)
        return Reply(r.status_code, r.headers.get("content-type", "").encode(),
                     r.headers.get("x-amzn-sagemaker-custom-attributes", "").encode(), error)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise asyncio.TimeoutError() from exc
        except httpx.TransportError as exc:
            raise InstanceGone(f"instance {self.instance_id}: {exc}") from exc

    async def ping(self, timeout: float) -> bool:
        if self.exited() is not None:
            return False
        try:
            r = await self._client.get("/ping", timeout=timeout)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def stop(self, grace: float) -> None:
        await self._terminate(grace)
        await self._client.aclose()


CHUNK = 1024 * 1024


def _headers(content_type: bytes, accept: bytes, custom_attributes: bytes) -> dict[str, str]:
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type.decode()
    if accept:
        headers["Accept"] = accept.decode()
    if custom_attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes.decode()
    return headers


async def _chunks(f: BinaryIO) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    while chunk := await loop.run_in_executor(None, f.read, CHUNK):
        yield chunk


class LocalBackend:
    """Starts instance processes on this machine.

    Args:
        run_dir: where Unix sockets live (kept short: socket paths are limited to 107 bytes).
        python: interpreter for built-in runtimes.
        base_env: the environment children inherit (the server's, minus Moorage's secrets).
    """

    def __init__(self, run_dir: Path, python: str, base_env: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.python = python or sys.executable
        self.base_env = {k: v for k, v in base_env.items() if not k.startswith("MOORAGE_")}
        run_dir.mkdir(parents=True, exist_ok=True)
        self._cpus = sorted(os.sched_getaffinity(0))
        self._next_cpu = itertools.count()
        self.zygotes = Zygotes(run_dir, self.python, self.base_env, _preexec(None, None))

    def prewarm(self, runtime: str) -> None:
        if runtime != "command":
            self.zygotes.prewarm(runtime)

    def _limits(self, spec: InstanceSpec) -> tuple[dict[str, str], set[int] | None, int | None]:
        prof = spec.profile
        if prof is None:
            return {}, None, None
        mem = int(prof.memory_gib * 1024**3) if prof.memory_gib else None
        if prof.vcpu is None:
            return {}, None, mem
        n = min(prof.vcpu, len(self._cpus))
        start = next(self._next_cpu)
        cpus = {self._cpus[(start + i) % len(self._cpus)] for i in range(n)}
        return {var: str(n) for var in _THREAD_VARS}, cpus, mem

    async def start_instance(self, spec: InstanceSpec) -> FrameInstance | HttpInstance:
        limit_env, cpus, mem = self._limits(spec)
        env = {**self.base_env, **limit_env, **spec.environment,
               "SAGEMAKER_BASE_DIR": str(spec.model_dir or ""), "MOORAGE_INSTANCE_ID": spec.instance_id}
        if spec.model_dir:
            env["SM_MODEL_DIR"] = str(spec.model_dir)
        log = open(spec.log_path, "ab") if spec.log_path else subprocess.DEVNULL
        try:
            if spec.runtime == "command":
                port = _free_port()
                env["SAGEMAKER_BIND_TO_PORT"] = str(port)
                cmd = list(spec.command)
                if spec.model_dir and (spec.model_dir / cmd[0]).is_file():
                    cmd[0] = str(spec.model_dir / cmd[0])
                proc = self._spawn(cmd, env, spec, log, cpus, mem)
                return HttpInstance(spec.instance_id, proc, port)
            sock = self.run_dir / f"{spec.instance_id}.sock"
            sock.unlink(missing_ok=True)
            if spec.warm_start:
                forked = await self.zygotes.fork(spec.runtime, {
                    "model_dir": str(spec.model_dir), "socket": str(sock),
                    "log": str(spec.log_path or os.devnull),
                    "env": {**limit_env, **spec.environment, "MOORAGE_INSTANCE_ID": spec.instance_id,
                            "SM_MODEL_DIR": str(spec.model_dir)},
                    "mem_bytes": mem, "cpus": sorted(cpus) if cpus else None})
                return FrameInstance(spec.instance_id, forked, sock)
            cmd = [self.python, "-m", "moorage.runtime", "--kind", spec.runtime,
                   "--model-dir", str(spec.model_dir), "--socket", str(sock)]
            proc = self._spawn(cmd, env, spec, log, cpus, mem)
            return FrameInstance(spec.instance_id, proc, sock)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()

    def _spawn(self, cmd: list[str], env: dict[str, str], spec: InstanceSpec, log: object,
               cpus: set[int] | None, mem: int | None) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(cmd, env=env, cwd=str(spec.model_dir or self.run_dir),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=_preexec(cpus, mem), close_fds=True)
        except OSError as exc:
            raise InstanceGone(f"could not start {cmd[0]}: {exc}") from exc
