"""Write-once publishing of results to local locations."""

import os
import shutil
from pathlib import Path

import pytest

from moorage.artifacts import objects


@pytest.fixture(params=["tmpfile", "staged"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a result is written: an unnamed file linked in, or (a file system without
    O_TMPFILE) a staging file linked in."""
    if request.param == "staged":
        monkeypatch.delattr(os, "O_TMPFILE")
        monkeypatch.setattr(objects, "_NO_TMPFILE", set())
    return request.param


def _staged(staging: Path) -> list[Path]:
    return list(staging.iterdir()) if staging.exists() else []


def test_a_result_is_published_once_and_leaves_nothing_behind(tmp_path: Path, mode: str) -> None:
    staging, out = tmp_path / "staging", tmp_path / "out"
    assert objects.publish_bytes(b"first", f"{out}/a.out", staging)
    assert not objects.publish_bytes(b"second", f"{out}/a.out", staging)  # never overwritten
    assert (out / "a.out").read_bytes() == b"first"
    assert sorted(p.name for p in out.iterdir()) == ["a.out"]
    assert _staged(staging) == []
    big = os.urandom(3 << 20)
    assert objects.publish_bytes(big, f"file://{out}/big.out", staging)
    assert (out / "big.out").read_bytes() == big


def test_folders_removed_while_the_server_runs_are_made_again(tmp_path: Path, mode: str) -> None:
    staging, out = tmp_path / "staging", tmp_path / "out"
    assert objects.publish_bytes(b"1", f"{out}/a.out", staging)
    shutil.rmtree(out)
    shutil.rmtree(staging, ignore_errors=True)
    assert objects.publish_bytes(b"2", f"{out}/b.out", staging)
    assert (out / "b.out").read_bytes() == b"2"
    assert objects.publish_bytes(b"3", f"file://{out}/sub/c.out", staging)
    assert (out / "sub" / "c.out").read_bytes() == b"3"
