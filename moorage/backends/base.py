"""The backend seam: start an instance from a spec, then talk to it through a handle."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from moorage.resources.profiles import Profile
from moorage.runtime.protocol import NOT_STORED, FileRange, Publish


class Reply(NamedTuple):
    status: int
    content_type: bytes
    custom_attributes: bytes
    body: bytes
    #: set on a serverless invocation that had to start its instance (a cold start)
    cold_start_ms: float = 0.0


async def write_reply(reply: Reply, target: Publish) -> Reply:
    """``invoke_to`` for an instance that cannot write results itself: the reply is written
    here, on a thread."""
    if reply.status >= 400:
        return reply
    error = await asyncio.to_thread(target.write, reply.body)
    return reply if error is None else Reply(NOT_STORED, b"text/plain", b"", error)


@dataclass(frozen=True)
class InstanceSpec:
    instance_id: str
    runtime: str  # sklearn | xgboost | python | command
    model_dir: Path | None
    command: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    profile: Profile | None = None
    log_path: Path | None = None
    #: fork from a warm zygote (serverless cold starts) instead of a fresh interpreter
    warm_start: bool = False


class InstanceGone(Exception):
    """The instance's process or connection went away; requests in flight on it are lost."""


class InstanceHandle(Protocol):
    instance_id: str

    async def invoke(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                     body: bytes, timeout: float) -> Reply:
        """Send one invocation. Raises InstanceGone or asyncio.TimeoutError."""

    async def invoke_file(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                          src: str, dst: str, timeout: float) -> Reply:
        """Send one invocation whose body is the file ``src``; the response body goes to the
        file ``dst`` (the reply's body is empty, or the error text when status >= 400)."""

    async def invoke_to(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                        body: bytes, target: Publish, timeout: float) -> Reply:
        """Send one invocation and publish its result write-once at the local path ``target``
        (it is there once this returns with a status below 400; the reply has the body too).
        Status NOT_STORED: the model answered but the result could not be written."""

    async def invoke_range(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                           body: FileRange, timeout: float) -> Reply:
        """Send one invocation whose body is a range of a local file. An instance process reads
        it itself; an HTTP instance has it read and sent."""

    async def ping(self, timeout: float) -> bool:
        """True once the instance answers GET /ping (or a ping frame) with 200."""

    def exited(self) -> int | None:
        """The process's exit code, or None while it runs."""

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""


class Backend(Protocol):
    async def start_instance(self, spec: InstanceSpec) -> InstanceHandle: ...

    def prewarm(self, runtime: str) -> None:
        """Get ready for fast warm starts of ``runtime`` (a no-op where there is nothing to do)."""
