"""The contract between an instance process and the model it serves.

Each model instance is its own OS process running ``moorage.runtime``. The server half
(``server.py``) speaks frames to the router; this half turns request bytes into response bytes.
Both meet at :class:`ModelRuntime`.

``invoke`` is synchronous on purpose: the instance calls it inline on its single event loop, and an
``await`` per request would cost microseconds on the hot path for nothing (one worker per process).

This module must stay cheap to import: the instance imports it before it knows which framework it
serves, so numpy, scikit-learn and xgboost are imported only inside :func:`load_runtime`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Protocol

KINDS = ("sklearn", "xgboost", "python")


class InvocationFailed(Exception):
    """The request was bad for this model; the instance answers `status` (a 4xx) with `message`.

    Anything else raised by ``invoke`` means the model itself failed (the instance answers 500).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


class ModelLoadError(Exception):
    """The model could not be loaded; the message names the file and hook at fault.

    Raised by :func:`load_runtime`; the instance reports it and exits instead of serving.
    """


class ModelRuntime(Protocol):
    def load(self, model_dir: Path, env: Mapping[str, str]) -> None:
        """Load the model from ``model_dir`` (the unpacked model.tar.gz) with the container env."""
        ...

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        """Returns (response body, response content type).

        Raises InvocationFailed for a bad request (400 malformed body, 415 unsupported content
        type, 406 unsupported accept); any other exception means the model failed (the instance
        answers 500 with the error text).
        """
        ...

    def invoke_file(self, src: str, dst: str, content_type: str | None, accept: str | None) -> str:
        """Like ``invoke``, with the request body in the file ``src`` and the response body
        written to the file ``dst``; returns the response content type. A handler whose input_fn
        takes a file object reads the body as a stream, and an output_fn may return an iterable
        of chunks, so neither needs the whole payload in memory."""
        ...


def load_runtime(kind: str, model_dir: Path, env: Mapping[str, str]) -> ModelRuntime:
    """Build and load the runtime for ``kind`` ("sklearn", "xgboost" or "python").

    Framework kinds run the SageMaker handler convention exactly like SageMaker's framework
    containers: a user module (``code/inference.py`` or ``SAGEMAKER_PROGRAM``) overrides the
    framework's default hooks one by one. Kind "python" has only codec defaults and needs the
    user module's ``model_fn``.
    """
    if kind not in KINDS:
        raise ModelLoadError(f"Unknown runtime kind {kind!r}; expected one of {', '.join(KINDS)}")
    # Imported here, not at module level, so that importing moorage.runtime stays fast.
    from moorage.runtime.handler import HandlerRuntime

    runtime = HandlerRuntime(kind)
    runtime.load(Path(model_dir), env)
    return runtime


class RequestContext:
    """What a handler hook that takes a trailing ``context`` argument receives.

    ``custom_attributes`` is the request's X-Amzn-SageMaker-Custom-Attributes; a hook may set
    ``response_custom_attributes`` to answer with that header. An instance runs one request
    at a time, so the server reuses one object (``CONTEXT``) and resets it per request.
    """

    __slots__ = ("custom_attributes", "response_custom_attributes")

    def __init__(self) -> None:
        self.custom_attributes = ""
        self.response_custom_attributes: str | None = None


CONTEXT = RequestContext()
