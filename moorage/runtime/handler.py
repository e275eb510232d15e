"""The SageMaker inference-toolkit handler convention, run in-process.

A model directory may carry a user module (``code/inference.py``, or the file named by env
``SAGEMAKER_PROGRAM``, in ``code/`` or at the model dir root) defining any of::

    model_fn(model_dir)                       -> model
    input_fn(body, content_type)              -> data
    predict_fn(data, model)                   -> prediction
    output_fn(prediction, accept)             -> body | (body, content_type)
    transform_fn(model, body, content_type, accept)   (alone: replaces the three above)
    pre_model_fn(model_dir), model_warmup_fn(model_dir, model)   (newer toolkits)

each optionally taking a trailing ``context`` argument (a :class:`RequestContext`: the request's
custom attributes in, the response's out). An ``input_fn`` whose body parameter is annotated as a
file (``IO[bytes]``, ``BinaryIO``, ``io.BufferedIOBase`` ...) receives the body as a binary file
object, read from disk for asynchronous requests; an ``output_fn`` may return an iterable of
bytes chunks. Together they let a handler process payloads larger than memory. Hooks the module lacks come
from the framework's defaults (:class:`DefaultHooks`), exactly as SageMaker's framework containers
do, so one :class:`HandlerRuntime` serves both "plain framework model" and "script mode".

Everything that can be decided once is decided in :meth:`HandlerRuntime.load` (which hooks,
whether they take ``context``, whether bodies are decoded to str), so :meth:`invoke` is a few
attribute lookups around the hooks themselves.
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping

from moorage.runtime import codecs
from moorage.runtime.base import CONTEXT, InvocationFailed, ModelLoadError

DEFAULT_PROGRAM = "inference.py"
_HOOK_ARGS = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4,
              "pre_model_fn": 1, "model_warmup_fn": 2}


@dataclass(frozen=True)
class DefaultHooks:
    """A framework's defaults: what its SageMaker container does for each hook the user omits.

    ``input_fn`` receives the raw bytes (defaults never need str); ``output_fn`` receives a media
    type already resolved by :func:`codecs.resolve_accept`. ``model_fn`` None means "required".
    """

    model_fn: Callable[[str], Any] | None
    predict_fn: Callable[[Any, Any], Any]
    input_fn: Callable[[bytes, str | None], Any] = codecs.decode
    output_fn: Callable[[Any, str], bytes] = codecs.encode


def python_predict(data: Any, model: Any) -> Any:
    """Default predict_fn of kind "python": ``model.predict(data)``, else ``model(data)``."""
    predict = getattr(model, "predict", None)
    if predict is not None:
        return predict(data)
    if callable(model):
        return model(data)
    raise TypeError(f"the model ({type(model).__name__}) has no predict method and is not callable; "
                    "define predict_fn in the user module")


def framework_defaults(kind: str, env: Mapping[str, str], user_hooks: frozenset[str]) -> DefaultHooks:
    if kind == "sklearn":
        from moorage.runtime.frameworks import sklearn
        return sklearn.defaults(env, user_hooks)
    if kind == "xgboost":
        from moorage.runtime.frameworks import xgboost
        return xgboost.defaults(env, user_hooks)
    return DefaultHooks(model_fn=None, predict_fn=python_predict)


class HandlerRuntime:
    """A :class:`~moorage.runtime.base.ModelRuntime` for kinds sklearn, xgboost and python."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.model: Any = None
        self.user_module: Path | None = None
        self._default_accept: str | None = None
        self._codec_output = True
        self._transform: Callable[..., Any] | None = None
        self._input: Callable[[bytes, str | None], Any] = codecs.decode
        self._predict: Callable[[Any, Any], Any] = python_predict
        self._output: Callable[[Any, str], Any] = codecs.encode
        #: the user's input_fn when it reads a file object rather than bytes
        self._stream_input: Callable[[Any, str | None], Any] | None = None
        self._batchable = False

    def load(self, model_dir: Path, env: Mapping[str, str]) -> None:
        model_dir = Path(model_dir)
        path = find_user_module(model_dir, env)
        where = f"{self.kind} default hooks"
        user: dict[str, Callable[..., Any]] = {}
        if path is not None:
            self.user_module = path
            where = _relative(path, model_dir)
            user = _user_hooks(import_user_module(path, where), where)
        defaults = framework_defaults(self.kind, env, frozenset(user))

        model_fn = user.get("model_fn") or defaults.model_fn
        if model_fn is None:
            program = env.get("SAGEMAKER_PROGRAM") or DEFAULT_PROGRAM
            if path is None:
                raise ModelLoadError(f"Kind 'python' needs a user module: {model_dir}/code/{program} "
                                     "defining model_fn(model_dir) (SAGEMAKER_PROGRAM names another file)")
            raise ModelLoadError(f"{where}: model_fn is missing; kind 'python' has no default model "
                                 "loader, so define model_fn(model_dir)")

        self._default_accept = env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or None
        self._codec_output = not user.keys() & {"output_fn", "transform_fn"}
        if self._codec_output and self._default_accept and not codecs.is_supported_accept(self._default_accept):
            raise ModelLoadError(f"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT={self._default_accept!r} is not "
                                 f"supported; use one of {', '.join(codecs.SUPPORTED)}")
        hook = {name: _adapt(fn, name, where) for name, fn in user.items()}
        self._transform = hook.get("transform_fn")
        self._input = _text_input(hook["input_fn"]) if "input_fn" in hook else defaults.input_fn
        if "input_fn" in hook and _reads_file(user["input_fn"]):
            stream = self._stream_input = hook["input_fn"]
            self._input = lambda body, content_type: stream(io.BytesIO(body), content_type)
        self._predict = hook.get("predict_fn") or defaults.predict_fn
        self._output = hook.get("output_fn") or defaults.output_fn
        # Stacking requests into one predict is exact only for row-wise framework predictors
        # with every hook at its default; a user hook or the python kind may look across rows.
        self._batchable = self.kind in ("sklearn", "xgboost") and not user

        model_where = where if "model_fn" in user else f"{self.kind} default hooks"
        if "pre_model_fn" in hook:
            _run_load_hook(hook["pre_model_fn"], "pre_model_fn", where, str(model_dir))
        self.model = _run_load_hook(hook.get("model_fn") or model_fn, "model_fn", model_where, str(model_dir))
        if "model_warmup_fn" in hook:
            _run_load_hook(hook["model_warmup_fn"], "model_warmup_fn", where, str(model_dir), self.model)

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        if self._codec_output:  # the hot path: default encoders, accept checked before any work
            out = codecs.resolve_accept(accept, content_type, self._default_accept)
            return self._output(self._predict(self._input(body, content_type), self.model), out), out
        accept = self._accept(accept, content_type)
        if self._transform is not None:
            result = self._transform(self.model, _text_body(body, content_type), content_type, accept)
            chunks, ctype = _response(result, accept, "transform_fn")
        else:
            prediction = self._predict(self._input(body, content_type), self.model)
            chunks, ctype = _response(self._output(prediction, accept), accept, "output_fn")
        return chunks if type(chunks) is bytes else b"".join(chunks), ctype

    def _accept(self, accept: str | None, content_type: str | None) -> str:
        if not accept or accept == "*/*":
            return self._default_accept or codecs.media_type(content_type) or codecs.JSON
        return accept

    def invoke_file(self, src: str, dst: str, content_type: str | None, accept: str | None) -> str:
        # the input stays open until the output is written: chunks may be read lazily from it
        with open(src, "rb") as f, open(dst, "wb") as out:
            if self._stream_input is None:
                body, ctype = self.invoke(f.read(), content_type, accept)
                chunks: bytes | Iterable[bytes] = body
            else:
                if self._codec_output:
                    ctype = codecs.resolve_accept(accept, content_type, self._default_accept)
                else:
                    ctype = self._accept(accept, content_type)
                prediction = self._predict(self._stream_input(f, content_type), self.model)
                chunks, ctype = _response(self._output(prediction, ctype), ctype, "output_fn")
            for chunk in (chunks,) if type(chunks) is bytes else chunks:
                out.write(chunk)
        return ctype


    def invoke_batch(self, items: list[tuple[bytes, str | None, str | None]]) -> list[Any]:
        """Answer several requests that arrived together, with one predict where possible.

        Returns, per item, ``(body, content_type)`` or the exception that item raised, so one
        bad request never fails the others. Requests whose decoded rows have the same width are
        stacked; if the stacked predict fails, each request is retried alone.
        """
        if not self._batchable or len(items) == 1:
            return [_attempt(self.invoke, *item) for item in items]
        results: list[Any] = [None] * len(items)
        groups: dict[int, list[tuple[int, Any, str]]] = {}
        for i, (body, ctype, accept) in enumerate(items):
            try:
                out = codecs.resolve_accept(accept, ctype, self._default_accept)
                X = self._input(body, ctype)
            except Exception as exc:
                results[i] = exc
                continue
            width = X.shape[1] if getattr(X, "ndim", 0) == 2 else -1 - i  # odd shapes go alone
            groups.setdefault(width, []).append((i, X, out))
        for members in groups.values():
            self._predict_group(members, results)
        return results

    def _predict_group(self, members: list[tuple[int, Any, str]], results: list[Any]) -> None:
        if len(members) > 1:
            import numpy as np
            stacked = np.concatenate([X for _, X, _ in members])
            try:
                preds = self._predict(stacked, self.model)
            except Exception:
                preds = None
            if preds is not None and len(preds) == len(stacked):
                start = 0
                for i, X, out in members:
                    part = preds[start:start + len(X)]
                    start += len(X)
                    results[i] = _attempt(lambda p=part, o=out: (self._output(p, o), o))
                return
        for i, X, out in members:  # alone: the same calls invoke() makes
            results[i] = _attempt(lambda x=X, o=out: (self._output(self._predict(x, self.model), o), o))


def _attempt(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def find_user_module(model_dir: Path, env: Mapping[str, str]) -> Path | None:
    """``<model_dir>/code/<program>`` or ``<model_dir>/<program>``; None if the default is absent."""
    program = env.get("SAGEMAKER_PROGRAM") or ""
    names = [program, program + ".py"] if program and not program.endswith(".py") else [program or DEFAULT_PROGRAM]
    root = model_dir.resolve()
    for name in names:
        for base in (model_dir / "code", model_dir):
            candidate = base / name
            if candidate.is_file():
                if not candidate.resolve().is_relative_to(root):
                    raise ModelLoadError(f"SAGEMAKER_PROGRAM={program!r} points outside the model directory")
                return candidate
    if program:
        raise ModelLoadError(f"SAGEMAKER_PROGRAM={program!r}: no such file in {model_dir}/code/ "
                             f"or {model_dir}/")
    return None


def import_user_module(path: Path, where: str) -> ModuleType:
    """Import the user module with its directory on sys.path, so its helper modules import too."""
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = path.stem if path.stem not in sys.modules else f"_moorage_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{where}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickles referencing the module's classes resolve by this name
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise ModelLoadError(f"{where}: importing the user module failed: "
                             f"{type(exc).__name__}: {exc}") from exc
    return module


def _user_hooks(module: ModuleType, where: str) -> dict[str, Callable[..., Any]]:
    hooks = {name: getattr(module, name) for name in _HOOK_ARGS if getattr(module, name, None) is not None}
    for name, fn in hooks.items():
        if not callable(fn):
            raise ModelLoadError(f"{where}: {name} is not a function")
    if "transform_fn" in hooks and hooks.keys() & {"input_fn", "predict_fn", "output_fn"}:
        raise ModelLoadError(f"{where}: transform_fn cannot be combined with input_fn, predict_fn or "
                             "output_fn; define transform_fn alone, or the other three")
    return hooks


def _adapt(fn: Callable[..., Any], name: str, where: str) -> Callable[..., Any]:
    """Append ``context`` when the hook takes one more argument than the convention's."""
    n = _HOOK_ARGS[name]
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins and C callables: call them plainly
        return fn
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return fn
    count = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    if count == n:
        return fn
    if count == n + 1:
        return lambda *args: fn(*args, CONTEXT)
    raise ModelLoadError(f"{where}: {name} takes {count} arguments; the convention passes {n} "
                         f"(or {n + 1} with a trailing context)")


def _run_load_hook(fn: Callable[..., Any], name: str, where: str, *args: Any) -> Any:
    try:
        return fn(*args)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{where}: {name} failed: {type(exc).__name__}: {exc}") from exc


def _text_body(body: bytes, content_type: str | None) -> bytes | str:
    """UTF-8 content types reach user hooks as str, others as bytes (the toolkit's rule)."""
    charset = codecs.text_charset(content_type)
    if charset is None:
        return body
    try:
        return body.decode(charset)
    except UnicodeDecodeError as exc:
        raise InvocationFailed(400, f"the {codecs.media_type(content_type)} body is not valid "
                                    f"{charset}: {exc}") from None
    except LookupError:
        raise InvocationFailed(415, f"charset {charset} is not supported") from None


def _text_input(fn: Callable[[Any, str | None], Any]) -> Callable[[bytes, str | None], Any]:
    def input_fn(body: bytes, content_type: str | None) -> Any:
        return fn(_text_body(body, content_type), content_type)
    return input_fn


def _response(result: Any, accept: str, hook: str) -> tuple[bytes | Iterable[bytes], str]:
    """(body, content type) from what a hook returned: bytes, str, an iterable of chunks, or
    a (body, content type) pair of those."""
    ctype = accept
    if type(result) is tuple:
        if len(result) != 2:
            raise TypeError(f"{hook} returned a tuple of {len(result)}; expected (body, content_type)")
        result, ctype = result[0], str(result[1] or accept)
    if type(result) is bytes:
        return result, ctype
    if isinstance(result, str):
        return result.encode(), ctype
    if isinstance(result, (bytearray, memoryview)):
        return bytes(result), ctype
    if hasattr(result, "__iter__") and not isinstance(result, (dict, list)):
        return _chunks(result, hook), ctype
    raise TypeError(f"{hook} returned {type(result).__name__}; expected bytes, str, an iterable of "
                    "bytes chunks or (body, content_type)")


def _chunks(result: Iterable[Any], hook: str) -> Iterable[bytes]:
    for chunk in result:
        if isinstance(chunk, str):
            yield chunk.encode()
        elif isinstance(chunk, (bytes, bytearray, memoryview)):
            yield bytes(chunk)
        else:
            raise TypeError(f"{hook} yielded {type(chunk).__name__}; expected bytes or str chunks")


_FILE_TYPES = ("IO", "BinaryIO", "IOBase", "RawIOBase", "BufferedIOBase", "BufferedReader")


def _reads_file(fn: Callable[..., Any]) -> bool:
    """Whether a user input_fn's body parameter is annotated as a file object."""
    try:
        first = next(iter(inspect.signature(fn).parameters.values()))
    except (TypeError, ValueError, StopIteration):
        return False
    note = first.annotation
    if note is inspect.Parameter.empty:
        return False
    if isinstance(note, type):
        return issubclass(note, io.IOBase)
    text = note if isinstance(note, str) else repr(note)
    return text.replace("typing.", "").replace("io.", "").split("[")[0].strip() in _FILE_TYPES


def _relative(path: Path, model_dir: Path) -> str:
    try:
        return str(path.relative_to(model_dir))
    except ValueError:
        return str(path)
