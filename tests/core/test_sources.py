"""Job sources as a worker reads them: allowlisted URLs, a confined volume, the pool's bucket.

Each attack a job author could try (a URL off the list, a redirect off it, a huge body, a
path out of the volume, a symlink out of it) fails with an error that says so; a transient
failure is temporary (the worker retries), a missing document permanent.
"""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ocrfleet import sources
from ocrfleet.errors import DocumentTooLarge, SourceNotFound, SourceRefused, TemporaryError
from ocrfleet.sources import SourceAccess

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100


class _Site(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        routes = {
            "/docs/a.png": (200, {}, PNG),
            "/docs/big.png": (200, {}, b"y" * 5000),
            "/docs/moved": (302, {"Location": "/docs/a.png"}, b""),
            "/docs/escape": (302, {"Location": "/private/secret.png"}, b""),
            "/docs/away": (301, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
            "/docs/busy": (503, {}, b""),
            "/docs/forbidden": (403, {}, b""),
            "/private/secret.png": (200, {}, b"secret"),
        }
        status, headers, body = routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def access(site: str, **kw) -> SourceAccess:
    return SourceAccess(max_bytes=1000, url_allowlist=(f"{site}/docs/",), timeout_s=5, **kw)


def test_allowlisted_urls_are_fetched_and_redirects_followed_only_while_on_the_list(site):
    assert sources.fetch(f"{site}/docs/a.png", access(site)) == PNG
    assert sources.fetch(f"{site}/docs/moved", access(site)) == PNG
    with pytest.raises(SourceRefused, match="not under the pool's allowed URL prefixes"):
        sources.fetch(f"{site}/docs/escape", access(site))
    with pytest.raises(SourceRefused, match="169.254.169.254"):  # never contacted: refused before the request
        sources.fetch(f"{site}/docs/away", access(site))
    for url in (f"{site}/private/secret.png", f"{site}/docs/../private/secret.png",
                f"{site}/docs/%2e%2e/private/secret.png", "http://user:pw@127.0.0.1/docs/a.png",
                "file:///etc/passwd"):
        with pytest.raises(SourceRefused):
            sources.fetch(url, access(site))
    with pytest.raises(SourceRefused, match="none are allowed"):
        sources.fetch(f"{site}/docs/a.png", SourceAccess(max_bytes=1000))


def test_url_answers_map_to_permanent_or_temporary_errors(site):
    with pytest.raises(DocumentTooLarge, match="over the 1,000-byte limit"):
        sources.fetch(f"{site}/docs/big.png", access(site))
    with pytest.raises(SourceNotFound, match="404"):
        sources.fetch(f"{site}/docs/nothing.png", access(site))
    with pytest.raises(SourceRefused, match="403"):
        sources.fetch(f"{site}/docs/forbidden", access(site))
    with pytest.raises(TemporaryError, match="503"):
        sources.fetch(f"{site}/docs/busy", access(site))
    from ocrfleet_dev.localproc import free_port

    closed = f"http://127.0.0.1:{free_port()}/docs/"
    with pytest.raises(TemporaryError, match="cannot fetch"):
        sources.fetch(f"{closed}a.png", SourceAccess(max_bytes=1000, url_allowlist=(closed,), timeout_s=2))


def test_volume_paths_stay_below_the_mount(tmp_path):
    volume, outside = tmp_path / "volume", tmp_path / "outside"
    (volume / "inbox" / "2025-01").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.pdf").write_bytes(b"%PDF-secret")
    (volume / "inbox" / "2025-01" / "a.pdf").write_bytes(b"%PDF-a")
    (volume / "inbox" / "2025-01" / "b.png").write_bytes(PNG)
    (volume / "inbox" / "2025-01" / "leak.pdf").symlink_to(outside / "secret.pdf")
    (volume / "inbox" / "out").symlink_to(outside)
    a = SourceAccess(max_bytes=1000, volume_root=volume)

    assert sources.list_volume(a, "inbox/2025-01", "*.pdf") == ["volume:inbox/2025-01/a.pdf"]
    assert sources.fetch("volume:inbox/2025-01/a.pdf", a) == b"%PDF-a"
    for path in ("/etc/passwd", "../outside/secret.pdf", "inbox/../../outside/secret.pdf",
                 "inbox/2025-01/leak.pdf", "inbox/out/secret.pdf"):
        with pytest.raises(SourceRefused):
            sources.fetch(f"volume:{path}", a)
    with pytest.raises(SourceRefused, match="leads outside the volume"):
        sources.list_volume(a, "inbox/out")
    with pytest.raises(SourceNotFound, match="not a directory"):
        sources.list_volume(a, "inbox/2099")
    with pytest.raises(SourceNotFound, match="no such file"):
        sources.fetch("volume:inbox/2025-01/gone.pdf", a)
    with pytest.raises(SourceRefused, match="no documents volume"):
        sources.fetch("volume:inbox/2025-01/a.pdf", SourceAccess(max_bytes=1000))


def test_s3_sources_are_listed_and_read_in_the_pools_store(s3_blobs):
    s3_blobs.put_object("inbox", "2025-01/a.png", PNG)
    s3_blobs.put_object("inbox", "2025-01/sub/b.pdf", b"%PDF-b")
    s3_blobs.put_object("inbox", "2025-02/c.png", PNG)
    a = SourceAccess(max_bytes=1000, objects=s3_blobs)
    assert sources.list_source({"s3": {"bucket": "inbox", "prefix": "2025-01/"}}, a) == [
        "s3://inbox/2025-01/a.png", "s3://inbox/2025-01/sub/b.pdf"]
    assert sources.fetch("s3://inbox/2025-01/sub/b.pdf", a) == b"%PDF-b"
    with pytest.raises(SourceNotFound, match="no such object"):
        sources.fetch("s3://inbox/2025-01/none.png", a)
    s3_blobs.put_object("inbox", "huge.png", b"z" * 2000)
    with pytest.raises(DocumentTooLarge, match="over the 1,000-byte limit"):
        sources.fetch("s3://inbox/huge.png", a)
    with pytest.raises(SourceRefused, match="no object store"):
        sources.fetch("s3://inbox/2025-01/a.png", SourceAccess(max_bytes=1000))


def test_the_allowlist_compares_scheme_host_port_and_path_segments_exactly():
    allow = ("http://127.0.0.1:2808/", "https://docs.example.com/inbox/")
    assert sources.allowed("http://127.0.0.1:2808/a.png", allow)
    assert sources.allowed("https://DOCS.example.com:443/inbox/2025/a.png", allow)
    for url in ("http://127.0.0.1:28081/a.png",  # a string prefix of the port
                "http://127.0.0.1/a.png", "https://127.0.0.1:2808/a.png",
                "https://docs.example.com/inbox-private/a.png",  # a string prefix of the segment
                "https://docs.example.com.evil.net/inbox/a.png",
                "http://docs.example.com/inbox/a.png", "https://docs.example.com@127.0.0.1/inbox/a.png"):
        assert not sources.allowed(url, allow), url


def test_a_fifo_or_device_on_the_volume_is_refused_without_hanging(tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    os.mkfifo(volume / "pipe.pdf")  # opening it to read would block forever
    (volume / "zero.pdf").symlink_to("/dev/zero")  # leaves the volume: refused before it is opened
    a = SourceAccess(max_bytes=1000, volume_root=volume)
    started = time.monotonic()
    with pytest.raises(SourceRefused, match="not a regular file"):
        sources.fetch("volume:pipe.pdf", a)
    with pytest.raises(SourceRefused, match="outside the volume"):
        sources.fetch("volume:zero.pdf", a)
    assert time.monotonic() - started < 5
    assert sources.list_volume(a, ".") == [] or "volume:pipe.pdf" not in sources.list_volume(a, ".")
