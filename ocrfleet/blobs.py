"""The blob store: where submitted documents live until (and after) they are processed.

Content-addressed: a blob's reference is ``sha256:<hex>`` of its bytes, so the same document
uploaded twice is stored once, and the reference doubles as the cache key. Writes stream to
a temporary file and are renamed into place only when complete, under a size cap, so a huge
or interrupted upload never leaves a partial blob behind. A caller that must check the whole
document before it keeps it (the API) *stages* it first and commits or discards the stage.

Two stores share that contract (:class:`BlobStore`), picked by :func:`open_blob_store` from
one setting: a directory (:class:`LocalBlobStore`; a ReadWriteMany volume in a cluster) or an
S3-compatible bucket (:class:`S3BlobStore`, ``s3://bucket/prefix``; the pool's managed object
store by default). Both stage to a local temporary file first, so the digest is known before
anything becomes visible.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlparse

from minio.error import S3Error
from urllib3.exceptions import HTTPError

from ocrfleet.errors import (
    DependencyUnavailable,
    DocumentTooLarge,
    InvalidDocument,
    SourceNotFound,
    TemporaryError,
)

if TYPE_CHECKING:
    from ocrfleet.settings import CoreSettings

CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    ref: str
    sha256: str
    size: int


def digest_of(ref: str) -> str:
    """The hex digest of a ``sha256:<hex>`` reference; anything else is refused."""
    algo, _, digest = ref.partition(":")
    if algo != "sha256" or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise InvalidDocument(f"malformed blob reference {ref!r}; expected sha256:<64 hex digits>")
    return digest


class BlobStore(Protocol):
    """What the API, the workers and the CLI need of a blob store."""

    def exists(self, ref: str) -> bool: ...
    def read(self, ref: str) -> bytes: ...
    def stage(self, max_bytes: int | None) -> StagedBlob: ...
    def commit_file(self, path: str, digest: str) -> None: ...


class _Staging:
    """The write paths both stores share: stream into a stage (``self.stage``), then commit it."""

    def stage(self, max_bytes: int | None) -> StagedBlob:
        raise NotImplementedError

    def put_bytes(self, data: bytes) -> Blob:
        return self.put_chunks([data], max_bytes=None)

    def put_chunks(self, chunks: Iterable[bytes], *, max_bytes: int | None) -> Blob:
        """Stream ``chunks`` into the store; raises DocumentTooLarge past ``max_bytes``."""
        staged = self.stage(max_bytes)
        try:
            for chunk in chunks:
                staged.write(chunk)
            return staged.commit()
        finally:
            staged.discard()

    async def stage_async(self, chunks: AsyncIterator[bytes], *, max_bytes: int | None) -> StagedBlob:
        """Stream ``chunks`` to a temporary file and hand it back uncommitted.

        The caller checks what it must, then calls :meth:`StagedBlob.commit` (the blob becomes
        visible) or :meth:`StagedBlob.discard` (nothing is left behind). Raises, leaving
        nothing, when ``chunks`` raise or pass ``max_bytes``.
        """
        staged = self.stage(max_bytes)
        try:
            async for chunk in chunks:
                staged.write(chunk)
        except BaseException:
            staged.discard()
            raise
        return staged


class LocalBlobStore(_Staging):
    """Blobs in a directory (a ReadWriteMany volume in a cluster, a local folder here)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, ref: str) -> Path:
        digest = digest_of(ref)
        return self.root / digest[:2] / digest

    def exists(self, ref: str) -> bool:
        return self.path(ref).is_file()

    def read(self, ref: str) -> bytes:
        try:
            return self.path(ref).read_bytes()
        except FileNotFoundError:
            raise InvalidDocument(f"blob {ref} is missing from the store") from None

    def stage(self, max_bytes: int | None) -> StagedBlob:
        return StagedBlob(self, self.root, max_bytes)

    def commit_file(self, path: str, digest: str) -> None:
        target = self.root / digest[:2] / digest
        target.parent.mkdir(exist_ok=True)
        os.replace(path, target)


class S3BlobStore(_Staging):
    """Blobs as objects ``<prefix>/<2 hex>/<digest>`` in an S3-compatible bucket.

    The bucket is created on first use when it does not exist. An unreachable store raises
    :class:`~ocrfleet.errors.TemporaryError` (the caller retries); a missing object is an
    :class:`~ocrfleet.errors.InvalidDocument`.
    """

    def __init__(self, client, bucket: str, prefix: str = "", *, staging: str | os.PathLike | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.staging = Path(staging or tempfile.gettempdir()) / "ocrfleet-staging"
        self.staging.mkdir(parents=True, exist_ok=True)
        self._buckets_ready: set[str] = set()

    @classmethod
    def from_url(cls, url: str, *, endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1",
                 staging: str | os.PathLike | None = None, retries: int = 3) -> S3BlobStore:
        import urllib3
        from minio import Minio

        parsed, where = urlparse(url), urlparse(endpoint)
        if not parsed.netloc:
            raise ValueError(f"blob store URL {url!r} names no bucket; expected s3://bucket/prefix")
        if where.scheme not in ("http", "https") or not where.netloc:
            raise ValueError(f"S3 endpoint {endpoint!r} is not an http(s)://host:port URL")
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60), maxsize=8,
            retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)))
        client = Minio(where.netloc, access_key=access_key, secret_key=secret_key, region=region,
                       secure=where.scheme == "https", http_client=http)
        return cls(client, parsed.netloc, parsed.path, staging=staging)

    def key(self, ref: str) -> str:
        digest = digest_of(ref)
        return f"{self.prefix}/{digest[:2]}/{digest}" if self.prefix else f"{digest[:2]}/{digest}"

    def exists(self, ref: str) -> bool:
        key = self.key(ref)
        with _s3_errors(f"checking {ref}"):
            try:
                self.client.stat_object(self.bucket, key)
                return True
            except S3Error as exc:
                if exc.code in _MISSING:
                    return False
                raise

    def read(self, ref: str) -> bytes:
        return self._get(self.bucket, self.key(ref), what=ref,
                         missing=InvalidDocument(f"blob {ref} is missing from the store"))

    def _get(self, bucket: str, key: str, *, what: str, missing: Exception, max_bytes: int | None = None) -> bytes:
        """One object's bytes (at most ``max_bytes + 1`` of them); ``missing`` raised when it is not there."""
        with _s3_errors(f"reading {what}"):
            try:
                response = self.client.get_object(bucket, key)
            except S3Error as exc:
                if exc.code in _MISSING:
                    raise missing from None
                raise
            try:
                return response.read() if max_bytes is None else response.read(max_bytes + 1)
            finally:
                response.close()
                response.release_conn()

    def stage(self, max_bytes: int | None) -> StagedBlob:
        return StagedBlob(self, self.staging, max_bytes)

    # -- other objects of the store (job sources: ``s3://bucket/key``) -------------------------

    def read_object(self, bucket: str, key: str, *, max_bytes: int) -> bytes:
        """Any object of the store, up to ``max_bytes``."""
        where = f"s3://{bucket}/{key}"
        missing = SourceNotFound(f"{where}: no such object")
        with _s3_errors(f"reading {where}"):
            try:
                stat = self.client.stat_object(bucket, key)
            except S3Error as exc:
                if exc.code in _MISSING:
                    raise missing from None
                raise
        if stat.size is not None and stat.size > max_bytes:
            raise DocumentTooLarge(f"{where} is {stat.size:,} bytes, over the {max_bytes:,}-byte limit")
        return self._get(bucket, key, what=where, missing=missing, max_bytes=max_bytes)

    def list_objects(self, bucket: str, prefix: str, *, limit: int) -> list[str]:
        """Keys under ``prefix`` in key order, at most ``limit``."""
        with _s3_errors(f"listing s3://{bucket}/{prefix}"):
            try:
                keys = []
                for obj in self.client.list_objects(bucket, prefix=prefix, recursive=True):
                    if not obj.is_dir:
                        keys.append(obj.object_name)
                    if len(keys) >= limit:
                        break
                return sorted(keys)
            except S3Error as exc:
                if exc.code in _MISSING:
                    raise SourceNotFound(f"s3://{bucket}: no such bucket") from None
                raise

    def put_object(self, bucket: str, key: str, data: bytes) -> None:
        """Store ``data`` under any key (how documents get into a job's s3:// source)."""
        import io

        with _s3_errors(f"writing s3://{bucket}/{key}"):
            self._ensure_bucket(bucket)
            self.client.put_object(bucket, key, io.BytesIO(data), len(data))

    def commit_file(self, path: str, digest: str) -> None:
        ref = f"sha256:{digest}"
        with _s3_errors(f"storing {ref}"):
            self._ensure_bucket(self.bucket)
            if not self.exists(ref):  # content-addressed: an object already there is this one
                self.client.fput_object(self.bucket, self.key(ref), path)
        Path(path).unlink(missing_ok=True)

    def _ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` unless it exists (or another writer just created it)."""
        if bucket in self._buckets_ready:
            return
        if not self.client.bucket_exists(bucket):
            try:
                self.client.make_bucket(bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._buckets_ready.add(bucket)


_MISSING = ("NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound")
_TRANSIENT = ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout")


@contextlib.contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """Turns an unreachable or overloaded object store into a TemporaryError that says so."""
    try:
        yield
    except (HTTPError, OSError) as exc:
        raise DependencyUnavailable(f"object store unavailable while {what}: {exc}") from exc
    except S3Error as exc:
        if exc.code in _TRANSIENT:
            raise TemporaryError(f"object store busy while {what}: {exc}") from exc
        raise


def open_blob_store(settings: CoreSettings) -> LocalBlobStore | S3BlobStore:
    """The store ``settings.blob_root`` names: ``s3://bucket/prefix`` or a directory."""
    if settings.blob_root.startswith("s3://"):
        return S3BlobStore.from_url(settings.blob_root, endpoint=settings.s3_endpoint,
                                    access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                                    region=settings.s3_region)
    return LocalBlobStore(settings.blob_root)


class StagedBlob:
    """A blob being written: a temporary file, its running digest and size."""

    def __init__(self, store: BlobStore, directory: Path, max_bytes: int | None) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.digest = hashlib.sha256()
        self.size = 0
        fd, self.tmp = tempfile.mkstemp(dir=directory, prefix=".upload-")
        self.file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise DocumentTooLarge(f"document is over the {self.max_bytes:,}-byte limit")
        self.digest.update(chunk)
        self.file.write(chunk)

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()

    def commit(self) -> Blob:
        self.file.close()
        digest = self.digest.hexdigest()
        self.store.commit_file(self.tmp, digest)
        self.tmp = ""
        return Blob(ref=f"sha256:{digest}", sha256=digest, size=self.size)

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        if self.tmp:
            Path(self.tmp).unlink(missing_ok=True)
