"""Streaming a source into the cache: hashed on the way, never held in memory.

Shared by local and S3 sources. Errors of the source (fsspec, botocore, the OS) are translated
here, once, into SageMaker's "Could not access model data" ValidationException.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from botocore.exceptions import BotoCoreError, ClientError

from moorage.artifacts.cache import ArtifactCache
from moorage.artifacts.tarsafe import safe_extract
from moorage.errors import ValidationException

CHUNK_BYTES = 8 * 1024 * 1024
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_SOURCE_ERRORS = (OSError, BotoCoreError, ClientError)

Opener = Callable[[], IO[bytes]]


@dataclass(frozen=True)
class Limits:
    """Caps on what one model's data may unpack to."""

    max_bytes: int
    max_members: int


def inaccessible(url: str) -> ValidationException:
    return ValidationException(f"Could not access model data at {url}.")


@contextmanager
def source_errors(url: str) -> Iterator[None]:
    """Wrap calls on the source only, so a full local disk is not blamed on the URL."""
    try:
        yield
    except _SOURCE_ERRORS as exc:
        raise inaccessible(url) from exc


def stream_into(url: str, open_source: Opener, out: IO[bytes], max_bytes: int) -> str:
    """Copy the source into ``out`` in chunks, refusing more than ``max_bytes``; return sha256."""
    digest = hashlib.sha256()
    size = 0
    with source_errors(url):
        source = open_source()
    with source:
        while True:
            with source_errors(url):
                chunk = source.read(CHUNK_BYTES)
            if not chunk:
                return digest.hexdigest()
            size += len(chunk)
            if size > max_bytes:
                raise ValidationException(f"Model data at {url} is larger than {max_bytes} bytes.")
            digest.update(chunk)
            out.write(chunk)


def cache_file(url: str, name: str, open_source: Opener, cache: ArtifactCache,
               limits: Limits) -> Path:
    """Cache one file: unpacked if it is a tar archive, else alone under its basename.

    The download itself is capped at max_bytes too, so a source cannot fill the disk.
    """
    if name in ("", ".", "..") or "/" in name:
        raise ValidationException(f"Model data at {url} has no usable file name.")
    sha, path = _download(url, open_source, cache.root, limits.max_bytes)
    try:
        if name.endswith(TAR_SUFFIXES) or tarfile.is_tarfile(path):
            return cache.put(f"tar-{sha}", lambda entry: safe_extract(
                path, entry, max_bytes=limits.max_bytes, max_members=limits.max_members))
        return cache.put(_file_digest(name, sha), lambda entry: _move(path, entry / name))
    finally:
        path.unlink(missing_ok=True)


def _download(url: str, open_source: Opener, root: Path, max_bytes: int) -> tuple[str, Path]:
    """Stream the source into a temp file inside the cache root (same filesystem: cheap rename)."""
    fd, name = tempfile.mkstemp(prefix=".download-", dir=root)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            sha = stream_into(url, open_source, out, max_bytes)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return sha, path


def _move(download: Path, target: Path) -> None:
    download.chmod(0o644)  # mkstemp made it 0o600
    os.rename(download, target)


def _file_digest(name: str, sha: str) -> str:
    """A lone file's entry depends on its name too: same bytes under two names are two entries."""
    return "file-" + hashlib.sha256(f"{name}\0{sha}".encode()).hexdigest()
