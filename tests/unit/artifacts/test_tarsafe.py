"""safe_extract refuses hostile archives before writing anything, and sanitises modes."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from moorage.artifacts import tarsafe
from moorage.artifacts.tarsafe import safe_extract
from moorage.errors import ValidationException

BIG = 10**9


def regular(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def directory(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info, None


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]],
             mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "work" / "dest"
    path.mkdir(parents=True)
    return path


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_extracts_files_and_dirs_with_sanitised_modes(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(tmp_path / "m.tar.gz", [
        directory("./"),
        directory("code", mode=0o700),
        regular("code/inference.py", b"print(1)", mode=0o4755),  # setuid dropped
        regular("./model.bin", b"weights", mode=0o600),
        regular("deep/nested/implied.txt", b"hi"),
    ])
    safe_extract(archive, dest, max_bytes=BIG, max_members=100)
    assert (dest / "model.bin").read_bytes() == b"weights"
    assert (dest / "deep/nested/implied.txt").read_bytes() == b"hi"
    assert stat.S_IMODE((dest / "code").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "code/inference.py").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "model.bin").stat().st_mode) == 0o644


def test_plain_uncompressed_tar(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(tmp_path / "m.tar", [regular("a.txt", b"plain")], mode="w")
    safe_extract(archive, dest, max_bytes=BIG, max_members=10)
    assert (dest / "a.txt").read_bytes() == b"plain"


@pytest.mark.parametrize(("member", "expected"), [
    (regular("/tmp/moorage-evil-absolute"), "escapes"),
    (regular("../evil"), "escapes"),
    (regular("sub/../../evil"), "escapes"),
    (special("link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
    (special("rel-link", tarfile.SYMTYPE, "../../evil"), "symbolic link"),
    (special("hard", tarfile.LNKTYPE, "ok.txt"), "hard link"),
    (special("tty", tarfile.CHRTYPE), "device file"),
    (special("disk", tarfile.BLKTYPE), "device file"),
    (special("pipe", tarfile.FIFOTYPE), "FIFO"),
    (special("odd", b"Z"), "unsupported type"),
], ids=["absolute", "dotdot", "nested-dotdot", "symlink", "rel-symlink", "hardlink", "chr",
        "blk", "fifo", "unknown-type"])
def test_rejects_hostile_member_and_writes_nothing(
        tmp_path: Path, dest: Path, member: tuple[tarfile.TarInfo, bytes | None],
        expected: str) -> None:
    # A benign member comes first: vetting must finish before anything is written.
    archive = make_tar(tmp_path / "evil.tar.gz", [regular("ok.txt"), member])
    before = snapshot(tmp_path)
    with pytest.raises(ValidationException, match=expected) as caught:
        safe_extract(archive, dest, max_bytes=BIG, max_members=100)
    assert member[0].name in str(caught.value)
    assert snapshot(tmp_path) == before
    assert not Path("/tmp/moorage-evil-absolute").exists()


def test_member_count_cap(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(tmp_path / "many.tar.gz", [regular(f"f{i}") for i in range(6)])
    with pytest.raises(ValidationException, match="more than 5 entries"):
        safe_extract(archive, dest, max_bytes=BIG, max_members=5)
    assert list(dest.iterdir()) == []
    safe_extract(archive, dest, max_bytes=BIG, max_members=6)
    assert len(list(dest.iterdir())) == 6


def test_declared_size_cap(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(tmp_path / "big.tar.gz", [regular("a", b"1" * 60), regular("b", b"2" * 60)])
    with pytest.raises(ValidationException, match="more than 100 bytes"):
        safe_extract(archive, dest, max_bytes=100, max_members=10)
    assert list(dest.iterdir()) == []
    safe_extract(archive, dest, max_bytes=120, max_members=10)


def test_bytes_are_also_counted_while_writing(
        tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If a header under-declared its size, the running count still stops the write."""
    real = tarsafe._vet_members
    monkeypatch.setattr(tarsafe, "_vet_members", lambda tar, *, max_bytes, max_members:
                        real(tar, max_bytes=BIG, max_members=max_members))
    archive = make_tar(tmp_path / "big.tar.gz", [regular("a", b"1" * 60), regular("b", b"2" * 60)])
    with pytest.raises(ValidationException, match="more than 100 bytes"):
        safe_extract(archive, dest, max_bytes=100, max_members=10)


@pytest.mark.parametrize("content", [b"", b"definitely not a tar archive" * 50,
                                     b"\x1f\x8b\x08\x00garbage-after-gzip-magic"],
                         ids=["empty", "text", "bad-gzip"])
def test_corrupt_archive(tmp_path: Path, dest: Path, content: bytes) -> None:
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(content)
    with pytest.raises(ValidationException, match="not a valid tar archive"):
        safe_extract(path, dest, max_bytes=BIG, max_members=10)


def test_truncated_archive(tmp_path: Path, dest: Path) -> None:
    good = make_tar(tmp_path / "good.tar.gz", [regular("a", os.urandom(200_000))])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[:50_000])
    with pytest.raises(ValidationException, match="not a valid tar archive"):
        safe_extract(cut, dest, max_bytes=BIG, max_members=10)


def test_file_and_directory_with_one_name_conflict(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(tmp_path / "c.tar.gz", [regular("a"), regular("a/b")])
    with pytest.raises(ValidationException, match='"a/b" conflicts'):
        safe_extract(archive, dest, max_bytes=BIG, max_members=10)


def test_symlink_already_in_dest_is_not_followed(tmp_path: Path, dest: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "sub").symlink_to(outside)
    archive = make_tar(tmp_path / "s.tar.gz", [regular("sub/planted")])
    with pytest.raises(ValidationException, match="escapes"):
        safe_extract(archive, dest, max_bytes=BIG, max_members=10)
    assert list(outside.iterdir()) == []
