"""The blob store: content addressed, streamed, capped, nothing partial left behind."""

from __future__ import annotations

import hashlib

import pytest

from ocrfleet.blobs import LocalBlobStore
from ocrfleet.errors import DocumentTooLarge, InvalidDocument


def test_put_is_content_addressed_and_deduplicated(tmp_path):
    store = LocalBlobStore(tmp_path)
    a = store.put_bytes(b"%PDF-1.7 hello")
    b = store.put_chunks([b"%PDF-1.7 ", b"hello"], max_bytes=100)
    assert a == b and a.ref == "sha256:" + hashlib.sha256(b"%PDF-1.7 hello").hexdigest()
    assert store.read(a.ref) == b"%PDF-1.7 hello"


def test_oversized_stream_is_refused_and_leaves_nothing(tmp_path):
    store = LocalBlobStore(tmp_path)
    with pytest.raises(DocumentTooLarge, match="larger than the 10-byte limit"):
        store.put_chunks([b"x" * 6, b"x" * 6], max_bytes=10)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_malformed_or_missing_references_say_what_is_wrong(tmp_path):
    store = LocalBlobStore(tmp_path)
    with pytest.raises(InvalidDocument, match="malformed blob reference"):
        store.read("sha256:../../etc/passwd")
    with pytest.raises(InvalidDocument, match="missing from the store"):
        store.read("sha256:" + "0" * 64)
