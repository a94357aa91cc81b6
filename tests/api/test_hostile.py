"""Hostile input through HTTP: each is a clear 4xx problem, memory stays bounded, nothing is kept."""

from __future__ import annotations

import time

import pytest

from tests.api.conftest import MAX_UPLOAD, PeakRss, assert_problem
from tests.api.documents import jpeg, pdf, png, png_bomb

MiB = 1024 * 1024


def post_file(api, key, data: bytes, name: str):
    return api.http.post("/v1/documents", headers=api.auth(key), files={"file": (name, data, "application/pdf")})


@pytest.mark.parametrize(("name", "make", "status", "code"), [
    ("empty.pdf", lambda: b"", 422, "empty_document"),
    ("text.pdf", lambda: b"just some text, not a document at all", 415, "unsupported_type"),
    ("exe.png", lambda: b"MZ\x90\x00" + b"\x00" * 200, 415, "unsupported_type"),
    ("cut.jpg", lambda: jpeg()[:200], 422, "truncated_document"),
    ("cut.png", lambda: png()[:60], 422, "truncated_document"),
    ("header.png", lambda: png()[:20], 422, "truncated_document"),
    ("cut.pdf", lambda: pdf(3)[:-40], 422, "truncated_document"),
    ("bomb.png", lambda: png_bomb(30_000), 413, "document_too_large"),
    ("pages.pdf", lambda: pdf(10_000), 413, "document_too_large"),
    ("liar.pdf", lambda: pdf(1).replace(b"/Count 1", b"/Count 10000"), 413, "document_too_large"),
])
def test_hostile_document_is_refused_and_nothing_kept(api, name, make, status, code):
    key = api.tenant("acme")
    body = assert_problem(post_file(api, key, make(), name), status, code)
    assert name in body["detail"] or status == 415 or code == "empty_document"
    api.assert_nothing_stored()


def _multipart_stream(boundary: str, total: int, chunk: int = MiB):
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.pdf\"\r\n"
           "Content-Type: application/pdf\r\n\r\n").encode() + b"%PDF-1.7\n"
    block = b"0" * chunk
    sent = 0
    while sent < total:
        yield block
        sent += len(block)
    yield f"\r\n--{boundary}--\r\n".encode()


def test_200mb_upload_streamed_without_length_is_cut_off_at_the_cap(api):
    key = api.tenant("acme")
    boundary = "ocrfleetboundary"
    headers = api.auth(key) | {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    with PeakRss(api.server) as rss:
        r = api.http.post("/v1/documents", content=_multipart_stream(boundary, 200 * MiB), headers=headers)
    body = assert_problem(r, 413, "document_too_large")
    assert f"{MAX_UPLOAD:,}" in body["detail"]
    assert rss.growth < 40 * MiB, f"server memory grew by {rss.growth / MiB:.0f} MiB"
    api.assert_nothing_stored()


def test_200mb_upload_with_declared_length_is_refused_before_reading(api):
    key = api.tenant("acme")
    boundary = "ocrfleetboundary"
    total = 200 * MiB
    length = sum(len(c) for c in _multipart_stream(boundary, 0)) + total
    headers = api.auth(key) | {"Content-Type": f"multipart/form-data; boundary={boundary}",
                               "Content-Length": str(length)}
    started = time.monotonic()
    with PeakRss(api.server) as rss:
        r = api.http.post("/v1/documents", content=_multipart_stream(boundary, total), headers=headers)
    assert_problem(r, 413, "document_too_large")
    assert rss.growth < 40 * MiB, f"server memory grew by {rss.growth / MiB:.0f} MiB"
    assert time.monotonic() - started < 30
    api.assert_nothing_stored()


def test_memory_stays_bounded_over_many_refusals(api):
    key = api.tenant("acme")
    bomb = png_bomb(30_000)
    many_pages = pdf(10_000)
    before = api.server.rss()
    for _ in range(5):
        assert post_file(api, key, bomb, "bomb.png").status_code == 413
        assert post_file(api, key, many_pages, "pages.pdf").status_code == 413
        assert post_file(api, key, b"\x00" * (MAX_UPLOAD + MiB), "big.bin").status_code in (413, 415)
    assert api.server.rss() - before < 40 * MiB
    api.assert_nothing_stored()


def test_malformed_requests_are_problems(api):
    key = api.tenant("acme")
    assert_problem(api.http.post("/v1/documents", content=b"raw", headers=api.auth(key) | {
        "Content-Type": "application/octet-stream"}), 415, "unsupported_media_type")
    assert_problem(api.http.post("/v1/documents", content=b"--x\r\ngarbage", headers=api.auth(key) | {
        "Content-Type": "multipart/form-data; boundary=x"}), 400, "malformed_multipart")
    assert_problem(api.http.post("/v1/documents", data={"document_type": "auto"}, files={"other": ("", b"")},
                                 headers=api.auth(key)), 422)
    assert_problem(api.http.post("/v1/documents/check-cache", json={"sha256": "xyz"}, headers=api.auth(key)),
                   422, "invalid_request")
    assert_problem(api.http.post("/v1/documents/check-cache", content=b"{", headers=api.auth(key) | {
        "Content-Type": "application/json"}), 422, "invalid_request")
    api.assert_nothing_stored()
