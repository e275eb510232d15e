"""``s3://`` model data through s3fs: one object (archive or file) or a whole prefix.

Endpoint, credentials and region come from botocore's own environment handling
(AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, profiles), so Moorage never reads them itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import s3fs

from moorage.artifacts.cache import ArtifactCache
from moorage.artifacts.download import (
    CHUNK_BYTES, Limits, cache_file, inaccessible, source_errors, stream_into,
)
from moorage.artifacts.tarsafe import safe_relative_path
from moorage.errors import ValidationException

_CONFLICT = (FileExistsError, NotADirectoryError, IsADirectoryError)


@dataclass(frozen=True)
class _Object:
    key: str
    rel: PurePosixPath
    etag: str
    size: int


def fetch_s3(url: str, cache: ArtifactCache, limits: Limits) -> Path:
    """An object is cached as a file or unpacked archive; a prefix (or "…/") as a tree."""
    path = url[len("s3://"):]
    if not path.split("/", 1)[0]:
        raise ValidationException(f"Model data URL {url} names no S3 bucket.")
    fs = filesystem()
    if not path.endswith("/"):
        with source_errors(url):
            info = fs.info(path)
        if info["type"] != "directory":
            return cache_file(url, PurePosixPath(path).name, lambda: _open(fs, path),
                              cache, limits)
    return _fetch_prefix(url, fs, path.rstrip("/"), cache, limits)


def filesystem() -> s3fs.S3FileSystem:
    """A fresh client per fetch: no stale listings, and a changed environment takes effect."""
    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


def _open(fs: s3fs.S3FileSystem, key: str) -> IO[bytes]:
    """Ranged reads pinned to the ETag seen at open (s3fs sends If-Match), no read-ahead."""
    handle: IO[bytes] = fs.open(key, "rb", block_size=CHUNK_BYTES, cache_type="none")
    return handle


def _fetch_prefix(url: str, fs: s3fs.S3FileSystem, prefix: str, cache: ArtifactCache,
                  limits: Limits) -> Path:
    with source_errors(url):
        listing = fs.find(prefix, detail=True)
    objects = _objects_under(url, prefix, listing, limits)
    if not objects:
        raise inaccessible(url)
    rows = [[str(o.rel), o.etag, o.size] for o in objects]
    digest = "prefix-" + hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    return cache.put(digest, lambda entry: _download_all(url, fs, objects, entry))


def _objects_under(url: str, prefix: str, listing: dict[str, dict[str, Any]],
                   limits: Limits) -> list[_Object]:
    """Vet the listing before downloading: names that stay inside, and the caps."""
    objects: list[_Object] = []
    for key, info in sorted(listing.items()):
        if key.endswith("/"):  # "folder" marker objects carry no data
            continue
        rel = safe_relative_path(key[len(prefix) + 1:]) if key.startswith(prefix + "/") else None
        if rel is None or not rel.parts:
            raise ValidationException(f'S3 object "{key}" under {url} has an unsafe name.')
        objects.append(_Object(key, rel, str(info.get("ETag", "")), int(info["size"])))
    if len(objects) > limits.max_members:
        raise ValidationException(
            f"Model data at {url} has more than {limits.max_members} objects."
        )
    if sum(o.size for o in objects) > limits.max_bytes:
        raise ValidationException(f"Model data at {url} is larger than {limits.max_bytes} bytes.")
    return objects


def _download_all(url: str, fs: s3fs.S3FileSystem, objects: list[_Object], entry: Path) -> None:
    for obj in objects:
        target = entry.joinpath(*obj.rel.parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("xb") as out:
                stream_into(url, lambda obj=obj: _open_unchanged(url, fs, obj), out, obj.size)
        except _CONFLICT as exc:
            raise ValidationException(
                f'S3 object "{obj.key}" under {url} conflicts with another object.'
            ) from exc


def _open_unchanged(url: str, fs: s3fs.S3FileSystem, obj: _Object) -> IO[bytes]:
    """Open ``obj``, refusing it if it changed since the listing the cache key was made from."""
    handle = _open(fs, obj.key)
    if handle.details.get("ETag") != obj.etag:  # type: ignore[attr-defined]
        handle.close()
        raise ValidationException(f"Model data at {url} changed while it was being downloaded.")
    return handle
