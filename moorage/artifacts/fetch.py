"""Model data by URL -> a local directory, cached by content digest.

``url`` is a local path, a ``file://`` URL or an ``s3://`` URL naming a tar archive (unpacked
safely), a single file (cached alone under its basename) or a directory / S3 prefix
(uncompressed model data). Local directories are used in place, without copying.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from moorage.artifacts.cache import ArtifactCache
from moorage.artifacts.download import Limits, cache_file, inaccessible, source_errors
from moorage.artifacts.s3 import fetch_s3
from moorage.errors import ValidationException


def fetch_model_data(url: str, cache_root: Path, *, max_bytes: int, max_members: int) -> Path:
    """A local directory holding the model data at ``url``; cached entries are reused.

    Raises ValidationException if the data cannot be read or is unsafe or over the caps.
    """
    limits = Limits(max_bytes=max_bytes, max_members=max_members)
    cache = ArtifactCache(cache_root)
    if "://" not in url:
        return _fetch_local(url, Path(url), cache, limits)
    scheme = url.split("://", 1)[0].lower()
    if scheme == "file":
        return _fetch_local(url, _file_url_path(url), cache, limits)
    if scheme == "s3":
        return fetch_s3(url, cache, limits)
    raise ValidationException(
        f"Unsupported model data URL {url}: use s3://, file:// or a local path."
    )


def _file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path:
        raise ValidationException(f"Model data URL {url} is not an absolute local file URL.")
    return Path(unquote(parts.path))


def _fetch_local(url: str, path: Path, cache: ArtifactCache, limits: Limits) -> Path:
    with source_errors(url):
        if path.is_dir():
            return path.resolve()
        if not path.is_file():  # missing, or a FIFO/device that could block or never end
            raise inaccessible(url)
    return cache_file(url, path.name, lambda: path.open("rb"), cache, limits)


def model_data_exists(url: str) -> bool:
    """Whether ``url`` names readable model data, without downloading it (CreateModel's check).

    Unsupported schemes and malformed file URLs count as missing; fetch reports why.
    """
    try:
        if "://" not in url:
            return Path(url).exists()
        scheme = url.split("://", 1)[0].lower()
        if scheme == "file":
            return _file_url_path(url).exists()
        if scheme == "s3":
            from moorage.artifacts.s3 import filesystem
            with source_errors(url):
                return bool(filesystem().exists(url))
    except ValidationException:
        return False
    return False
