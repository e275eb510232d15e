"""ArtifactCache: entries appear whole or not at all, populated once under concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from moorage.artifacts.cache import ArtifactCache

REPO = Path(__file__).resolve().parents[3]


def test_put_then_get(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    assert cache.get("abc") is None
    entry = cache.put("abc", lambda d: (d / "f").write_text("data"))
    assert entry == tmp_path / "cache" / "abc"
    assert cache.get("abc") == entry
    assert (entry / "f").read_text() == "data"


def test_failed_populate_leaves_nothing(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)

    def boom(d: Path) -> None:
        (d / "half").write_text("half")
        raise RuntimeError("populate failed")

    with pytest.raises(RuntimeError):
        cache.put("abc", boom)
    assert cache.get("abc") is None
    assert [p.name for p in tmp_path.iterdir()] == [".locks"]


def test_incomplete_entry_is_never_returned(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    started, release = threading.Event(), threading.Event()

    def slow(d: Path) -> None:
        (d / "part1").write_text("1")
        started.set()
        release.wait(5)
        (d / "part2").write_text("2")

    worker = threading.Thread(target=cache.put, args=("abc", slow))
    worker.start()
    assert started.wait(5)
    assert cache.get("abc") is None
    release.set()
    worker.join(5)
    entry = cache.get("abc")
    assert entry is not None
    assert sorted(p.name for p in entry.iterdir()) == ["part1", "part2"]


def test_leftover_of_a_crashed_populate_is_cleaned(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    (tmp_path / ".tmp-abc@crashed").mkdir()
    (tmp_path / ".tmp-abcd@other").mkdir()
    cache.put("abc", lambda d: None)
    assert not (tmp_path / ".tmp-abc@crashed").exists()
    assert (tmp_path / ".tmp-abcd@other").exists()


@pytest.mark.parametrize("digest", ["", "../x", "a/b", ".hidden", "x" * 300])
def test_rejects_unsafe_digests(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ValueError):
        ArtifactCache(tmp_path).get(digest)


def test_threads_populate_once(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    calls: list[int] = []

    def populate(d: Path) -> None:
        calls.append(1)
        time.sleep(0.2)
        (d / "f").write_text("x")

    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(cache.put("k", populate)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    assert len(set(results)) == 1 and len(results) == 8


_CHILD = """
import sys, time
from pathlib import Path
from moorage.artifacts.cache import ArtifactCache
root, log = Path(sys.argv[1]), Path(sys.argv[2])
def populate(d):
    with log.open("a") as f:
        f.write("populated\\n")
    time.sleep(0.5)
    (d / "f").write_text("x")
print(ArtifactCache(root).put("k", populate))
"""


def test_processes_populate_once(tmp_path: Path) -> None:
    log = tmp_path / "log"
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path / "cache"), str(log)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert outputs == {str(tmp_path / "cache" / "k")}
    assert log.read_text() == "populated\n"
