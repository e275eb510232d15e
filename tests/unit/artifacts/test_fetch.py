"""fetch_model_data against local paths, file:// URLs and a real (moto) S3 server."""

from __future__ import annotations

import io
import stat
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.artifacts import download
from moorage.artifacts.fetch import fetch_model_data
from moorage.errors import ValidationException
from tests.s3server import S3Server

BIG = 10**9
MODEL_FILES = {"model.txt": b"weights", "code/inference.py": b"def model_fn(d): pass\n"}


def tar_bytes(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def fetch(url: str, cache: Path, **caps: int) -> Path:
    return fetch_model_data(url, cache, max_bytes=caps.get("max_bytes", BIG),
                            max_members=caps.get("max_members", 1000))


@pytest.fixture
def extractions(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every archive extraction fetch_model_data performs."""
    calls: list[Path] = []
    real = download.safe_extract

    def spy(tar_path: Path, dest: Path, **kw: int) -> None:
        calls.append(dest)
        real(tar_path, dest, **kw)

    monkeypatch.setattr(download, "safe_extract", spy)
    return calls


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def leftovers(cache: Path) -> list[str]:
    return [p.name for p in cache.iterdir() if p.name.startswith((".tmp-", ".download-"))]


# --- local -------------------------------------------------------------------------------


def test_local_tar_gz_is_extracted_once(tmp_path: Path, cache: Path,
                                        extractions: list[Path]) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tar_bytes(MODEL_FILES))
    first = fetch(str(archive), cache)
    assert tree(first) == MODEL_FILES
    assert fetch(str(archive), cache) == first
    assert fetch(archive.as_uri(), cache) == first  # file:// URL, same content, same entry
    assert len(extractions) == 1
    assert leftovers(cache) == []


def test_same_content_elsewhere_shares_the_entry(tmp_path: Path, cache: Path,
                                                 extractions: list[Path]) -> None:
    (tmp_path / "a.tar").write_bytes(tar_bytes(MODEL_FILES, mode="w"))
    (tmp_path / "copy-without-suffix").write_bytes(tar_bytes(MODEL_FILES, mode="w"))
    first = fetch(str(tmp_path / "a.tar"), cache)
    assert fetch(str(tmp_path / "copy-without-suffix"), cache) == first
    assert len(extractions) == 1


def test_concurrent_fetches_extract_once(tmp_path: Path, cache: Path,
                                         extractions: list[Path]) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tar_bytes(MODEL_FILES))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(fetch(str(archive), cache)))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 6 and len(set(results)) == 1
    assert len(extractions) == 1


def test_local_directory_is_used_in_place(tmp_path: Path, cache: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.txt").write_bytes(b"w")
    monkeypatch.chdir(tmp_path)
    assert fetch("model", cache) == model_dir.resolve()
    assert fetch(model_dir.as_uri(), cache) == model_dir.resolve()
    assert not cache.exists() or [p.name for p in cache.iterdir()] == [".locks"]


def test_single_file_is_cached_under_its_basename(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "xgboost-model"
    model.write_bytes(b"not an archive" * 100)
    entry = fetch(str(model), cache)
    assert tree(entry) == {"xgboost-model": model.read_bytes()}
    assert stat.S_IMODE((entry / "xgboost-model").stat().st_mode) == 0o644
    assert fetch(f"file://{model}", cache) == entry
    other = tmp_path / "other-name"
    other.write_bytes(model.read_bytes())
    assert tree(fetch(str(other), cache)) == {"other-name": model.read_bytes()}
    assert leftovers(cache) == []


def test_tar_suffix_on_a_non_tar_is_rejected(tmp_path: Path, cache: Path) -> None:
    bogus = tmp_path / "model.tar.gz"
    bogus.write_bytes(b"plain text")
    with pytest.raises(ValidationException, match="not a valid tar archive"):
        fetch(str(bogus), cache)
    assert leftovers(cache) == []


@pytest.mark.parametrize("url", ["/nonexistent/model.tar.gz", "file:///nonexistent/model.tar.gz"])
def test_missing_local_path(cache: Path, url: str) -> None:
    with pytest.raises(ValidationException) as caught:
        fetch(url, cache)
    assert str(caught.value) == f"Could not access model data at {url}."


@pytest.mark.parametrize("url", ["https://example.com/model.tar.gz", "file://otherhost/x"])
def test_unsupported_urls(cache: Path, url: str) -> None:
    with pytest.raises(ValidationException, match="Unsupported|not an absolute local"):
        fetch(url, cache)


def test_download_size_cap(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"x" * 1000)
    with pytest.raises(ValidationException, match="larger than 999 bytes"):
        fetch(str(model), cache, max_bytes=999)
    assert leftovers(cache) == []


def test_archive_caps_apply(tmp_path: Path, cache: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tar_bytes(MODEL_FILES))
    with pytest.raises(ValidationException, match="more than 1 entries"):
        fetch(str(archive), cache, max_members=1)
    assert leftovers(cache) == []


# --- S3 ----------------------------------------------------------------------------------


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[tuple[str, Any]]:
    name = f"models-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    yield name, client


def test_s3_tar_gz(bucket: tuple[str, Any], cache: Path, extractions: list[Path]) -> None:
    name, client = bucket
    client.put_object(Bucket=name, Key="jobs/1/output/model.tar.gz", Body=tar_bytes(MODEL_FILES))
    url = f"s3://{name}/jobs/1/output/model.tar.gz"
    entry = fetch(url, cache)
    assert tree(entry) == MODEL_FILES
    assert fetch(url, cache) == entry
    assert len(extractions) == 1
    assert leftovers(cache) == []


def test_s3_single_file(bucket: tuple[str, Any], cache: Path) -> None:
    name, client = bucket
    client.put_object(Bucket=name, Key="m/model.joblib", Body=b"\x80\x04joblib-ish")
    entry = fetch(f"s3://{name}/m/model.joblib", cache)
    assert tree(entry) == {"model.joblib": b"\x80\x04joblib-ish"}


def test_s3_prefix(bucket: tuple[str, Any], cache: Path) -> None:
    name, client = bucket
    for key, data in MODEL_FILES.items():
        client.put_object(Bucket=name, Key=f"uncompressed/{key}", Body=data)
    client.put_object(Bucket=name, Key="uncompressed/code/", Body=b"")  # a "folder" marker
    client.put_object(Bucket=name, Key="uncompressed-not-this/x", Body=b"other")
    entry = fetch(f"s3://{name}/uncompressed", cache)
    assert tree(entry) == MODEL_FILES
    assert fetch(f"s3://{name}/uncompressed/", cache) == entry
    client.put_object(Bucket=name, Key="uncompressed/model.txt", Body=b"retrained")
    changed = fetch(f"s3://{name}/uncompressed/", cache)
    assert changed != entry and tree(changed)["model.txt"] == b"retrained"


def test_s3_prefix_caps(bucket: tuple[str, Any], cache: Path) -> None:
    name, client = bucket
    for key, data in MODEL_FILES.items():
        client.put_object(Bucket=name, Key=f"p/{key}", Body=data)
    with pytest.raises(ValidationException, match="more than 1 objects"):
        fetch(f"s3://{name}/p", cache, max_members=1)
    with pytest.raises(ValidationException, match="larger than 10 bytes"):
        fetch(f"s3://{name}/p", cache, max_bytes=10)


@pytest.mark.parametrize("key", ["missing.tar.gz", "missing/prefix/"])
def test_s3_missing_key(bucket: tuple[str, Any], cache: Path, key: str) -> None:
    url = f"s3://{bucket[0]}/{key}"
    with pytest.raises(ValidationException) as caught:
        fetch(url, cache)
    assert str(caught.value) == f"Could not access model data at {url}."
    assert caught.value.__cause__ is not None or key.endswith("/")


def test_s3_missing_bucket(s3_server: S3Server, cache: Path) -> None:
    url = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/model.tar.gz"
    with pytest.raises(ValidationException, match="Could not access model data at s3://"):
        fetch(url, cache)


def test_s3_prefix_with_escaping_key_is_rejected(bucket: tuple[str, Any], cache: Path) -> None:
    name, client = bucket
    client.put_object(Bucket=name, Key="p/ok.txt", Body=b"ok")
    client.put_object(Bucket=name, Key="p/sub/../../evil", Body=b"evil")
    assert "p/sub/../../evil" in [o["Key"] for o in client.list_objects_v2(Bucket=name)["Contents"]]
    with pytest.raises(ValidationException, match="unsafe name"):
        fetch(f"s3://{name}/p", cache)
    assert not (cache.parent / "evil").exists()
