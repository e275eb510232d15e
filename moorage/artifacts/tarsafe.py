"""Unpack a model archive without trusting it.

Archives come from users. A hostile one can escape the destination (absolute names, ``..``,
links), plant device nodes, FIFOs or setuid binaries, or unpack into far more bytes than it
weighs. ``tarfile.extractall``'s filters differ between Python versions, so every member is
vetted before anything is written, and files are written here with sanitised modes.
"""

from __future__ import annotations

import lzma
import os
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from moorage.errors import ValidationException

CHUNK_BYTES = 1024 * 1024
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)
_CONFLICT = (FileExistsError, NotADirectoryError, IsADirectoryError)


def safe_relative_path(name: str) -> PurePosixPath | None:
    """``name`` as a path relative to a destination, or None if it could leave it."""
    if not name or "\0" in name or name.startswith("/"):
        return None
    path = PurePosixPath(name)
    if ".." in path.parts:
        return None
    return path


def safe_extract(tar_path: Path, dest: Path, *, max_bytes: int, max_members: int) -> None:
    """Unpack ``tar_path`` (plain or compressed tar) into the existing directory ``dest``.

    Raises ValidationException, naming the member, for anything unsafe, oversized or corrupt.
    """
    dest = dest.resolve()
    with _reading():
        tar = tarfile.open(tar_path, mode="r:*")
    with tar:
        with _reading():
            members = _vet_members(tar, max_bytes=max_bytes, max_members=max_members)
        budget = _Budget(max_bytes)
        for member, rel in members:
            target = dest.joinpath(*rel.parts)
            try:
                if member.isdir():
                    _make_dir(target, dest)
                else:
                    _write_file(tar, member, target, dest, budget)
            except _CONFLICT as exc:
                raise ValidationException(
                    f'Model archive member "{member.name}" conflicts with another entry.'
                ) from exc


@contextmanager
def _reading() -> Iterator[None]:
    """Turn a failure to decode the archive into one ValidationException.

    Only wraps reads of the archive, so a full disk while writing is not blamed on the user.
    """
    try:
        yield
    except _CORRUPT as exc:
        raise ValidationException(f"Model data is not a valid tar archive: {exc}") from exc


@dataclass
class _Budget:
    """Bytes actually written so far, against the cap (headers can lie about sizes)."""

    max_bytes: int
    used: int = 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.max_bytes:
            raise _too_large(self.max_bytes)


def _vet_members(tar: tarfile.TarFile, *, max_bytes: int,
                 max_members: int) -> list[tuple[tarfile.TarInfo, PurePosixPath]]:
    """Check every header before writing anything: count, names, types and declared sizes."""
    vetted: list[tuple[tarfile.TarInfo, PurePosixPath]] = []
    count = declared = 0
    for member in tar:  # iterating stops early on a huge archive, unlike getmembers()
        count += 1
        if count > max_members:
            raise ValidationException(f"Model archive has more than {max_members} entries.")
        rel = safe_relative_path(member.name)
        if rel is None:
            raise ValidationException(
                f'Model archive member "{member.name}" escapes the extraction directory.'
            )
        _check_type(member)
        if member.isreg():
            declared += member.size
            if declared > max_bytes:
                raise _too_large(max_bytes)
        if not rel.parts:  # "." or "./": the destination itself
            if member.isdir():
                continue
            raise ValidationException(f'Model archive member "{member.name}" has no file name.')
        vetted.append((member, rel))
    return vetted


def _check_type(member: tarfile.TarInfo) -> None:
    if member.isreg() or member.isdir():
        return
    if member.issym():
        kind = "a symbolic link"
    elif member.islnk():
        kind = "a hard link"
    elif member.ischr() or member.isblk():
        kind = "a device file"
    elif member.isfifo():
        kind = "a FIFO"
    else:
        kind = f"of unsupported type {member.type!r}"
    raise ValidationException(
        f'Model archive member "{member.name}" is {kind}; '
        "only regular files and directories are allowed."
    )


def _too_large(max_bytes: int) -> ValidationException:
    return ValidationException(f"Model archive unpacks to more than {max_bytes} bytes.")


def _ensure_inside(path: Path, dest: Path) -> None:
    """Belt and braces: names are vetted lexically, but dest must hold no symlink either."""
    if not path.resolve().is_relative_to(dest):
        raise ValidationException(f"Model archive entry {path.name} escapes the destination.")


def _make_dir(target: Path, dest: Path) -> None:
    target.mkdir(mode=0o755, parents=True, exist_ok=True)
    _ensure_inside(target, dest)
    target.chmod(0o755)


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, dest: Path,
                budget: _Budget) -> None:
    """Write one regular member with a sanitised mode, counting real bytes against the cap."""
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    _ensure_inside(target.parent, dest)
    with _reading():
        source = tar.extractfile(member)
    if source is None:  # cannot happen for a regular member; keeps the type checker honest
        raise ValidationException(f'Model archive member "{member.name}" has no data.')
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with source, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
        while True:
            with _reading():
                chunk = source.read(CHUNK_BYTES)
            if not chunk:
                break
            budget.take(len(chunk))
            out.write(chunk)
    target.chmod(0o755 if member.mode & 0o111 else 0o644)  # never setuid, setgid or sticky
