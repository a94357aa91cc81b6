"""The blob store: where submitted documents live until (and after) they are processed.

Content-addressed: a blob's reference is ``sha256:<hex>`` of its bytes, so the same document
uploaded twice is stored once, and the reference doubles as the cache key. Writes stream to
a temporary file and are renamed into place only when complete, under a size cap, so a huge
or interrupted upload never leaves a partial blob behind. A caller that must check the whole
document before it keeps it (the API) *stages* it first and commits or discards the stage.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from ocrfleet.errors import DocumentTooLarge, InvalidDocument

CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    ref: str
    sha256: str
    size: int


class LocalBlobStore:
    """Blobs in a directory (a PVC in a cluster, a local folder here)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, ref: str) -> Path:
        algo, _, digest = ref.partition(":")
        if algo != "sha256" or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise InvalidDocument(f"malformed blob reference {ref!r}; expected sha256:<64 hex digits>")
        return self.root / digest[:2] / digest

    def exists(self, ref: str) -> bool:
        return self.path(ref).is_file()

    def read(self, ref: str) -> bytes:
        try:
            return self.path(ref).read_bytes()
        except FileNotFoundError:
            raise InvalidDocument(f"blob {ref} is missing from the store") from None

    def put_bytes(self, data: bytes) -> Blob:
        return self.put_chunks([data], max_bytes=None)

    def put_chunks(self, chunks: Iterable[bytes], *, max_bytes: int | None) -> Blob:
        """Stream ``chunks`` into the store; raises DocumentTooLarge past ``max_bytes``."""
        writer = StagedBlob(self.root, max_bytes)
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()
        finally:
            writer.discard()

    async def put_async(self, chunks: AsyncIterator[bytes], *, max_bytes: int | None) -> Blob:
        writer = StagedBlob(self.root, max_bytes)
        try:
            async for chunk in chunks:
                writer.write(chunk)
            return writer.commit()
        finally:
            writer.discard()

    async def stage_async(self, chunks: AsyncIterator[bytes], *, max_bytes: int | None) -> StagedBlob:
        """Stream ``chunks`` to a temporary file and hand it back uncommitted.

        The caller checks what it must, then calls :meth:`StagedBlob.commit` (the blob becomes
        visible) or :meth:`StagedBlob.discard` (nothing is left behind). Raises, leaving
        nothing, when ``chunks`` raise or pass ``max_bytes``.
        """
        staged = StagedBlob(self.root, max_bytes)
        try:
            async for chunk in chunks:
                staged.write(chunk)
        except BaseException:
            staged.discard()
            raise
        return staged


class StagedBlob:
    """A blob being written: a temporary file, its running digest and size."""

    def __init__(self, root: Path, max_bytes: int | None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.digest = hashlib.sha256()
        self.size = 0
        fd, self.tmp = tempfile.mkstemp(dir=root, prefix=".upload-")
        self.file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise DocumentTooLarge(f"document is larger than the {self.max_bytes}-byte limit")
        self.digest.update(chunk)
        self.file.write(chunk)

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()

    def commit(self) -> Blob:
        self.file.close()
        digest = self.digest.hexdigest()
        target = self.root / digest[:2] / digest
        target.parent.mkdir(exist_ok=True)
        os.replace(self.tmp, target)
        self.tmp = ""
        return Blob(ref=f"sha256:{digest}", sha256=digest, size=self.size)

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        if self.tmp:
            Path(self.tmp).unlink(missing_ok=True)
