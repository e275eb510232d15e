"""A scripted backend for unit tests: instances that answer, fail, hang or die on command."""

from __future__ import annotations

import asyncio

from moorage.backends.base import FileRange, InstanceGone, InstanceSpec, Publish, Reply, write_reply


class FakeInstance:
    def __init__(self, spec: InstanceSpec) -> None:
        self.instance_id = spec.instance_id
        self.spec = spec
        self.ready = True
        self.exit_code: int | None = None
        self.delay = 0.0
        self.calls = 0
        self.stopped = False

    async def invoke(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                     body: bytes, timeout: float) -> Reply:
        self.calls += 1
        if self.delay:
            await asyncio.wait_for(asyncio.sleep(self.delay), timeout)
        if self.exit_code is not None:
            raise InstanceGone("fake instance died")
        return Reply(200, content_type, custom_attributes, body)

    async def invoke_file(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                          src: str, dst: str, timeout: float) -> Reply:
        with open(src, "rb") as f:
            reply = await self.invoke(content_type, accept, custom_attributes, f.read(), timeout)
        with open(dst, "wb") as f:
            f.write(reply.body)
        return reply._replace(body=b"")

    async def invoke_to(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                        body: bytes, target: Publish, timeout: float) -> Reply:
        return await write_reply(await self.invoke(content_type, accept, custom_attributes, body, timeout), target)

    async def invoke_range(self, content_type: bytes, accept: bytes, custom_attributes: bytes,
                           body: FileRange, timeout: float) -> Reply:
        return await self.invoke(content_type, accept, custom_attributes, body.read(), timeout)

    async def ping(self, timeout: float) -> bool:
        return self.ready and self.exit_code is None

    def exited(self) -> int | None:
        return self.exit_code

    async def stop(self, grace: float) -> None:
        self.stopped = True
        if self.exit_code is None:
            self.exit_code = -15

    def set_failed(self, code: int = 1) -> None:
        self.exit_code = code


class FakeBackend:
    """Records every instance it starts; ``fail_next`` makes the next start die at once."""

    def __init__(self) -> None:
        self.started: list[FakeInstance] = []
        self.fail_next = 0

    def prewarm(self, runtime: str) -> None:
        pass

    async def start_instance(self, spec: InstanceSpec) -> FakeInstance:
        inst = FakeInstance(spec)
        if self.fail_next:
            self.fail_next -= 1
            inst.exit_code = 1
        self.started.append(inst)
        return inst
