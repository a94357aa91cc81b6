"""The blob stores: content addressed, streamed, capped, nothing partial left behind.

Every contract test runs against both stores: a directory, and S3 on a real SeaweedFS.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from ocrfleet.blobs import LocalBlobStore, S3BlobStore
from ocrfleet.errors import DocumentTooLarge, InvalidDocument, TemporaryError


@pytest.fixture(params=["directory", "s3"])
def store(request, tmp_path):
    if request.param == "directory":
        return LocalBlobStore(tmp_path / "blobs")
    return request.getfixturevalue("s3_blobs")


def _leftovers(tmp_path) -> list:
    return [p for p in tmp_path.rglob("*") if p.is_file()]


def test_put_is_content_addressed_and_deduplicated(store):
    a = store.put_bytes(b"%PDF-1.7 hello")
    b = store.put_chunks([b"%PDF-1.7 ", b"hello"], max_bytes=100)
    assert a == b and a.ref == "sha256:" + hashlib.sha256(b"%PDF-1.7 hello").hexdigest()
    assert store.exists(a.ref)
    assert store.read(a.ref) == b"%PDF-1.7 hello"


def test_oversized_stream_is_refused_and_leaves_nothing(store, tmp_path):
    with pytest.raises(DocumentTooLarge, match="over the 10-byte limit"):
        store.put_chunks([b"x" * 6, b"x" * 6], max_bytes=10)
    assert _leftovers(tmp_path) == []
    assert not store.exists("sha256:" + hashlib.sha256(b"x" * 12).hexdigest())


def test_a_stage_is_invisible_until_committed_and_gone_when_discarded(store, tmp_path):
    async def chunks():
        yield b"GIF89a staged"

    ref = "sha256:" + hashlib.sha256(b"GIF89a staged").hexdigest()
    staged = asyncio.run(store.stage_async(chunks(), max_bytes=None))
    assert staged.sha256 == ref.removeprefix("sha256:") and not store.exists(ref)
    staged.discard()
    assert _leftovers(tmp_path) == [] and not store.exists(ref)
    staged = asyncio.run(store.stage_async(chunks(), max_bytes=None))
    assert staged.commit().ref == ref and store.read(ref) == b"GIF89a staged"


def test_malformed_or_missing_references_say_what_is_wrong(store):
    with pytest.raises(InvalidDocument, match="malformed blob reference"):
        store.read("sha256:../../etc/passwd")
    with pytest.raises(InvalidDocument, match="missing from the store"):
        store.read("sha256:" + "0" * 64)
    assert not store.exists("sha256:" + "0" * 64)


def test_an_unreachable_object_store_is_a_temporary_error_that_names_it(tmp_path):
    from ocrfleet_dev.localproc import free_port

    store = S3BlobStore.from_url("s3://documents/p", endpoint=f"http://127.0.0.1:{free_port()}", access_key="k",
                                 secret_key="s", staging=tmp_path, retries=0)
    with pytest.raises(TemporaryError, match="object store unavailable while storing"):
        store.put_bytes(b"%PDF-1.7 x")
    assert _leftovers(tmp_path) == [], "the stage of a failed commit is removed"


@pytest.fixture
def small_disk(tmp_path):
    """A 1.2 GB filesystem: room for four of the object store's 256 MB volumes, fewer than seven."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200m", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_an_object_store_on_a_small_disk_takes_the_first_write_of_every_bucket(small_disk):
    """The managed store's settings (one volume per bucket at a time): with SeaweedFS's default of
    seven, the first bucket took every slot and the next ones were answered 500."""
    from ocrfleet_dev.localproc import ObjectStoreServer

    from e2e.cluster import build_tools

    with ObjectStoreServer(str(build_tools() / "weed"), small_disk) as server:
        store = S3BlobStore.from_url("s3://first/blobs", endpoint=server.endpoint, access_key=server.access_key,
                                     secret_key=server.secret_key)
        for bucket in ("first", "second", "third", "fourth"):
            store.put_object(bucket, "scans/0001.png", b"\x89PNG" + bytes(1000))
            assert store.client.get_object(bucket, "scans/0001.png").read()[:4] == b"\x89PNG"
