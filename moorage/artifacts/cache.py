"""A directory cache keyed by content digest, safe across threads and processes.

An entry is populated in a temp dir inside the cache root and renamed to ``root/<digest>`` only
once complete, so the rename is the commit: a reader never sees a half-written entry, and a
crash leaves only a temp dir behind. A per-digest ``flock`` makes concurrent callers populate
once; ``flock`` locks belong to the open file, so threads of one process exclude each other too.
No marker file is written into entries, because an entry is handed to models as-is.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_DIGEST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_TMP_PREFIX = ".tmp-"  # then "<digest>@": "@" is outside _DIGEST, so globs never cross digests
_LOCK_DIR = ".locks"


class ArtifactCache:
    """Complete, immutable directories under ``root``, one per digest."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / _LOCK_DIR).mkdir(parents=True, exist_ok=True)

    def get(self, digest: str) -> Path | None:
        """The entry for ``digest`` if it is complete, else None. Never blocks."""
        entry = self._entry(digest)
        return entry if entry.is_dir() else None

    def put(self, digest: str, populate: Callable[[Path], None]) -> Path:
        """The entry for ``digest``, calling ``populate(tmp_dir)`` to fill it if it is missing.

        If ``populate`` raises, nothing is cached and the exception propagates.
        """
        entry = self._entry(digest)
        if entry.is_dir():
            return entry
        with self._locked(digest):
            if entry.is_dir():  # another caller filled it while we waited
                return entry
            self._remove_leftovers(digest)
            tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{digest}@", dir=self.root))
            try:
                populate(tmp)
                tmp.chmod(0o755)  # mkdtemp makes it 0o700
                os.rename(tmp, entry)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return entry

    def _entry(self, digest: str) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a cache digest: {digest!r}")
        return self.root / digest

    @contextmanager
    def _locked(self, digest: str) -> Iterator[None]:
        """Hold an exclusive lock for ``digest``. Lock files are kept: unlinking one races."""
        lock_path = self.root / _LOCK_DIR / f"{digest}.lock"
        with open(lock_path, "a+b") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def _remove_leftovers(self, digest: str) -> None:
        """Drop temp dirs of crashed populates of ``digest``; the lock shows nobody owns them."""
        for stale in self.root.glob(f"{_TMP_PREFIX}{digest}@*"):
            shutil.rmtree(stale, ignore_errors=True)
