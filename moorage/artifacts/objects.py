"""Async inference payloads and results by URL: a local path, ``file://`` or ``s3://``.

Inputs are read where they are (local) or streamed to a staging file in chunks (S3), so a
payload is never held in memory. Results are published **write-once**: a result object that
already exists is never overwritten, so a request run again after a crash cannot write its
output twice. Locally that is a hard link from a finished temporary file (atomic, fails if the
name exists) — for a result in memory, an unnamed O_TMPFILE in the destination folder, so
nothing is created or removed in staging; on S3 an existence check plus a conditional put
(``If-None-Match: *``).
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import unquote, urlsplit

from moorage.errors import ValidationException

T = TypeVar("T")

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
def s3() -> Any:
    """One S3 client for the process: creating one costs tens of milliseconds, and every
    request here needs a few calls. No listings cache, so ``exists`` always asks S3."""
    import s3fs
    return s3fs.S3FileSystem(use_listings_cache=False)


def size(url: str) -> int:
    """The object's size in bytes, or -1 when it cannot be read (the job says so when it tries)."""
    try:
        return int(s3().size(url)) if is_s3(url) else local_path(url).stat().st_size
    except (OSError, ValueError):
        return -1


def exists(url: str) -> bool:
    if is_s3(url):
        return bool(s3().exists(url))
    return local_path(url).is_file()


def stage_input(url: str, staging: Path) -> tuple[Path, bool]:
    """A local file with the input's bytes, and whether it is a staging copy to delete after."""
    if not is_s3(url):
        return local_path(url), False
    staging.mkdir(parents=True, exist_ok=True)
    dest = staging / f"in-{uuid.uuid4().hex}"
    s3().get_file(url, str(dest), max_concurrency=1)
    return dest, True


def result_file(staging: Path) -> Path:
    """A new file name in ``staging`` for a result being written. Results are written there and
    only then published; a crash leaves them in staging, which ``clear_staging`` empties at the
    next start, so nothing half-written ever sits beside the results."""
    _made(str(staging))
    return staging / f"result-{_TOKEN}-{next(_COUNTER)}.part"


def _made(folder: str) -> None:
    """Make ``folder`` the first time this process writes in it."""
    if folder not in _FOLDERS:
        os.makedirs(folder, exist_ok=True)
        _FOLDERS.add(folder)


def _in_folder(folder: str, create: Callable[[], T]) -> T:
    """``create()`` a name in ``folder``; the folder is made the first time, and again if it
    was removed while the server runs."""
    _made(folder)
    try:
        return create()
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        return create()


def clear_staging(staging: Path) -> None:
    """Remove what a previous run left in ``staging`` (call before any work starts)."""
    if staging.is_dir():
        for leftover in staging.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)


def publish(src: Path | str, url: str) -> bool:
    """Move the finished file ``src`` to ``url`` unless something is already there.
    Returns whether this call wrote it; ``src`` is gone afterwards either way."""
    try:
        if is_s3(url):
            fs = s3()
            if fs.exists(url):
                return False
            try:
                fs.put_file(str(src), url, chunksize=PART_BYTES, max_concurrency=1, mode="create")
            except FileExistsError:
                return False
            return True
        dest = url if "://" not in url else str(local_path(url))
        try:
            _in_folder(os.path.dirname(dest), lambda: os.link(src, dest))
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            return _publish_across(src, dest)
        return True
    finally:
        try:
            os.unlink(src)
        except FileNotFoundError:
            pass


def _publish_across(src: Path | str, dest: str) -> bool:
    """Staging is on another file system: copy beside the destination, then link into place."""
    near = f"{os.path.dirname(dest)}/.moorage-{_TOKEN}-{next(_COUNTER)}.part"
    try:
        shutil.copyfile(src, near)
        os.link(near, dest)
    except FileExistsError:
        return False
    finally:
        if os.path.exists(near):
            os.unlink(near)
    return True


def publish_bytes(data: bytes, url: str, staging: Path | str) -> bool:
    """``publish`` for a result already in memory (small: an inline request's). Plain os
    calls, no pathlib: this is the hot path of a busy async endpoint."""
    if not is_s3(url):
        published = _publish_unnamed(data, url if "://" not in url else str(local_path(url)))
        if published is not None:
            return published
    tmp = f"{staging}/result-{_TOKEN}-{next(_COUNTER)}.part"
    fd = _in_folder(str(staging), lambda: os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    return publish(tmp, url)


def _publish_unnamed(data: bytes, dest: str) -> bool | None:
    """Write ``data`` to an unnamed file in ``dest``'s folder and link it in as ``dest``: one
    inode and one name per result (a staging file costs two more names, created and removed,
    and on a disk-bound host the journal is what limits a busy queue). A crash before the link
    leaves nothing behind. None when the file system has no O_TMPFILE (the caller stages)."""
    folder = os.path.dirname(dest)
    proc_fds = _proc_fds()
    if proc_fds is None or folder in _NO_TMPFILE:
        return None
    try:
        fd = _in_folder(folder, lambda: os.open(folder, os.O_WRONLY | os.O_TMPFILE, 0o644))
    except (AttributeError, OSError) as exc:  # no O_TMPFILE here (the platform or the file system)
        if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        _NO_TMPFILE.add(folder)
        return None
    try:
        _write_all(fd, data)
        os.link(str(fd), dest, src_dir_fd=proc_fds, follow_symlinks=True)  # linkat(AT_SYMLINK_FOLLOW)
        return True
    except FileExistsError:
        return False
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _proc_fds() -> int | None:
    """This process's /proc/self/fd, opened once (a forked child opens its own: the one it
    inherits lists its parent's descriptors)."""
    if not _PROC_FDS:
        try:
            _PROC_FDS.append(os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY))
        except OSError:  # no /proc: results are staged instead
            _PROC_FDS.append(None)
    return _PROC_FDS[0]


def _forget_proc_fds() -> None:
    if _PROC_FDS and _PROC_FDS[0] is not None:
        os.close(_PROC_FDS[0])
    _PROC_FDS.clear()


#: [the descriptor of /proc/self/fd] once opened (kept per process without asking for its pid)
_PROC_FDS: list[int | None] = []
os.register_at_fork(after_in_child=_forget_proc_fds)


#: folders known to exist (results go to few folders, many times)
_FOLDERS: set[str] = set()
#: folders on a file system without O_TMPFILE
_NO_TMPFILE: set[str] = set()
#: unique temporary names without a random draw per file
_TOKEN = uuid.uuid4().hex[:12]
_COUNTER = itertools.count()
