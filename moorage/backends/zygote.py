"""Server side of warm starts: one zygote process per runtime kind (moorage/runtime/zygote.py),
asked over a Unix socket to fork instances that skip the import time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from moorage.backends.base import InstanceGone


class ForkedProcess:
    """Popen's poll/send_signal/kill/wait for a process that is not our child: the zygote is
    its parent and reaps it, so all we can see is whether the pid is still alive."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not _alive(self.pid):
            self.returncode = -1  # the exit code went to the zygote
        return self.returncode

    def send_signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            self.returncode = -1 if self.returncode is None else self.returncode

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float = 5.0) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.returncode


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Zygotes:
    """Starts zygotes lazily (or ahead of need with ``prewarm``) and forks through them."""

    def __init__(self, run_dir: Path, python: str, env: dict[str, str],
                 preexec: Callable[[], None]) -> None:
        self._run_dir = run_dir
        self._python = python
        self._env = env
        self._preexec = preexec
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def _socket(self, kind: str) -> Path:
        return self._run_dir / f"zygote-{kind}.sock"

    def prewarm(self, kind: str) -> None:
        proc = self._procs.get(kind)
        if proc is not None and proc.poll() is None:
            return
        sock = self._socket(kind)
        sock.unlink(missing_ok=True)
        log = open(self._run_dir / f"zygote-{kind}.log", "ab")
        with log:
            self._procs[kind] = subprocess.Popen(
                [self._python, "-m", "moorage.runtime.zygote", "--kind", kind, "--socket", str(sock)],
                env=self._env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=self._preexec, close_fds=True)

    async def fork(self, kind: str, request: dict[str, Any], timeout: float = 60.0) -> ForkedProcess:
        self.prewarm(kind)
        sock = self._socket(kind)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(sock))
                break
            except OSError as exc:
                proc = self._procs[kind]
                if proc.poll() is not None or asyncio.get_running_loop().time() > deadline:
                    raise InstanceGone(f"the {kind} zygote is not available: {exc}") from exc
                await asyncio.sleep(0.02)
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout)
        finally:
            writer.close()
        if not line:
            raise InstanceGone(f"the {kind} zygote closed the connection")
        return ForkedProcess(int(json.loads(line)["pid"]))

    def close(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
