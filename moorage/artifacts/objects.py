"""Async inference payloads and results by URL: a local path, ``file://`` or ``s3://``.

Inputs are read where they are (local) or streamed to a staging file in chunks (S3), so a
payload is never held in memory. Results are published **write-once**: a result object that
already exists is never overwritten, so a request run again after a crash cannot write its
output twice. Locally that is a hard link from a finished temporary file (atomic, fails if the
name exists); on S3 an existence check plus a conditional put (``If-None-Match: *``).
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from moorage.errors import ValidationException

#: S3 multipart part size: bounds the server memory a large upload takes
PART_BYTES = 8 * 1024 * 1024


def is_s3(url: str) -> bool:
    return url[:5].lower() == "s3://"


def local_path(url: str) -> Path:
    """The local file a path or ``file://`` URL names."""
    if "://" not in url:
        return Path(url)
    parts = urlsplit(url)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost") or not parts.path:
        raise ValidationException(f"{url} is not an s3:// URL, a file:// URL or a local path.")
    return Path(unquote(parts.path))


def check_location(url: str, what: str) -> None:
    """A usable output location: s3://bucket[/prefix], file:///abs or an absolute path."""
    if is_s3(url):
        if not url[5:].split("/", 1)[0]:
            raise ValidationException(f"{what} {url} names no S3 bucket.")
        return
    if not local_path(url).is_absolute():
        raise ValidationException(f"{what} {url} must be an s3:// URL, a file:// URL or an absolute path.")


def join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *(n.strip("/") for n in names if n)])


@functools.cache
def _s3() -> Any:
    """One S3 client for the process: creating one costs tens of milliseconds, and every
    request here needs a few calls. No listings cache, so ``exists`` always asks S3."""
    import s3fs
    return s3fs.S3FileSystem(use_listings_cache=False)


def exists(url: str) -> bool:
    if is_s3(url):
        return bool(_s3().exists(url))
    return local_path(url).is_file()


def stage_input(url: str, staging: Path) -> tuple[Path, bool]:
    """A local file with the input's bytes, and whether it is a staging copy to delete after."""
    if not is_s3(url):
        return local_path(url), False
    staging.mkdir(parents=True, exist_ok=True)
    dest = staging / f"in-{uuid.uuid4().hex}"
    _s3().get_file(url, str(dest), max_concurrency=1)
    return dest, True


def result_file(url: str, staging: Path) -> Path:
    """Where an instance should write a result bound for ``url``: beside the destination
    when it is local (so publishing is a link), else in the staging directory."""
    where = staging if is_s3(url) else local_path(url).parent
    where.mkdir(parents=True, exist_ok=True)
    return where / f".moorage-{uuid.uuid4().hex}.part"


def publish(src: Path, url: str) -> bool:
    """Move the finished file ``src`` to ``url`` unless something is already there.
    Returns whether this call wrote it; ``src`` is gone afterwards either way."""
    try:
        if is_s3(url):
            fs = _s3()
            if fs.exists(url):
                return False
            try:
                fs.put_file(str(src), url, chunksize=PART_BYTES, max_concurrency=1, mode="create")
            except FileExistsError:
                return False
            return True
        dest = local_path(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.parent != dest.parent:  # another file system, perhaps: copy beside it first
            near = dest.parent / f".moorage-{uuid.uuid4().hex}.part"
            shutil.copyfile(src, near)
            src.unlink()
            src = near
        try:
            os.link(src, dest)
        except FileExistsError:
            return False
        return True
    finally:
        src.unlink(missing_ok=True)


def publish_bytes(data: bytes, url: str, staging: Path) -> bool:
    """``publish`` for a result already in memory (small: an inline request's)."""
    if is_s3(url):
        tmp = result_file(url, staging)
        tmp.write_bytes(data)
        return publish(tmp, url)
    # the hot path of a busy async endpoint: plain os calls, no pathlib
    dest = url if "://" not in url else str(local_path(url))
    folder = os.path.dirname(dest)
    if folder not in _FOLDERS:
        os.makedirs(folder, exist_ok=True)
        _FOLDERS.add(folder)
    tmp = f"{folder}/.moorage-{_TOKEN}-{next(_COUNTER)}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        os.link(tmp, dest)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


#: folders known to exist (results go to few folders, many times)
_FOLDERS: set[str] = set()
#: unique temporary names without a random draw per file
_TOKEN = uuid.uuid4().hex[:12]
_COUNTER = itertools.count()
