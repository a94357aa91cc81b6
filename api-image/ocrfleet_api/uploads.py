"""Receiving documents: a multipart body streamed to staged blobs under every cap.

Nothing of a request is kept unless all of it is acceptable. The body is read chunk by chunk
as it arrives (never whole into memory); each file part is sniffed by its magic bytes and
checked for pixels and PDF pages while it streams (:class:`ocrfleet.sniff.DocumentInspector`),
and written to a staged blob that is discarded on any error. A declared ``Content-Length``
over the cap is refused before one byte is read; without one, reading stops at the cap.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ocrfleet import sources
from ocrfleet.blobs import BlobStore, StagedBlob
from ocrfleet.errors import DocumentTooLarge, OcrfleetError
from ocrfleet.sniff import DocumentInfo, DocumentInspector
from ocrfleet_api.auth import check_signed_body
from ocrfleet_api.problems import Problem

MAX_FIELDS = 32


@dataclass(frozen=True)
class UploadLimits:
    max_document_bytes: int
    max_body_bytes: int
    max_documents: int
    max_field_bytes: int
    max_pixels: int
    max_pages: int


@dataclass
class ReceivedDocument:
    staged: StagedBlob
    info: DocumentInfo | None
    """What the headers say; set once the part is complete."""
    filename: str | None


@dataclass
class ReceivedForm:
    """The documents (staged, not yet committed) and the text fields of one request."""

    documents: list[ReceivedDocument] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        for doc in self.documents:
            doc.staged.discard()


class _Part:
    def __init__(self, name: str, filename: str | None) -> None:
        self.name = name
        self.filename = filename
        self.staged: StagedBlob | None = None
        self.inspector: DocumentInspector | None = None
        self.value = bytearray()


async def receive_form(request: Request, blobs: BlobStore, limits: UploadLimits, *,
                       body_sha256: str | None = None) -> ReceivedForm:
    """Stream a ``multipart/form-data`` body into staged blobs; raise a problem if any of it is bad.

    With ``body_sha256`` (a signed request) the raw body must hash to it. On any error every
    staged blob is discarded, so a refused request leaves nothing behind.
    """
    boundary = _boundary(request)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise DocumentTooLarge(f"the request body is {int(declared):,} bytes, over the "
                               f"{limits.max_body_bytes:,}-byte limit; nothing was read")
    reader = _FormReader(blobs, limits, boundary)
    try:
        await reader.read(request.stream(), body_sha256)
    except BaseException:
        reader.form.discard()
        raise
    return reader.form


class _FormReader:
    """Drives python-multipart's push parser and routes each part's bytes as they come."""

    def __init__(self, blobs: BlobStore, limits: UploadLimits, boundary: bytes) -> None:
        self.blobs = blobs
        self.limits = limits
        self.form = ReceivedForm()
        self.part: _Part | None = None
        self._filename: str | None = None
        self._events: list[tuple] = []
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self.parser = MultipartParser(boundary, {
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda d, s, e: self._events.append(("data", d[s:e])),
            "on_part_end": lambda: self._events.append(("end", None)),
            "on_end": self._end,
        })
        self._ended = False

    def _end(self) -> None:
        self._ended = True

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        self._events.append(("begin", dict(self._headers)))
        self._headers.clear()

    async def read(self, stream: AsyncIterator[bytes], body_sha256: str | None) -> None:
        digest = hashlib.sha256() if body_sha256 is not None else None
        total = 0
        async for chunk in stream:
            total += len(chunk)
            if total > self.limits.max_body_bytes:
                raise DocumentTooLarge(
                    f"the request body passed the {self.limits.max_body_bytes:,}-byte limit (a document may "
                    f"be at most {self.limits.max_document_bytes:,} bytes); nothing was kept")
            if digest is not None:
                digest.update(chunk)
            try:
                self.parser.write(chunk)
            except MultipartParseError as exc:
                raise _malformed(str(exc)) from None
            try:
                for kind, value in self._events:
                    self._handle(kind, value)
            except OcrfleetError as exc:
                # Say which file was wrong: a batch carries many.
                if self._filename and not exc.message.startswith(self._filename):
                    exc.args = (f"{self._filename}: {exc.message}",)
                raise
            self._events.clear()
        try:
            self.parser.finalize()
        except MultipartParseError as exc:
            raise _malformed(str(exc)) from None
        if self.part is not None or not self._ended:
            raise _malformed("the body ended before its closing boundary; send the whole body")
        if digest is not None and body_sha256 is not None:
            check_signed_body(body_sha256, digest.hexdigest())

    def _handle(self, kind: str, value) -> None:
        if kind == "begin":
            self.part = self._begin(value)
            self._filename = self.part.filename
            return
        part = self.part
        if part is None:
            raise _malformed("data outside a part")
        if kind == "data":
            if part.staged is not None:
                part.inspector.feed(value)
                part.staged.write(value)
            else:
                part.value += value
                if len(part.value) > self.limits.max_field_bytes:
                    raise Problem(413, "field_too_large",
                                  f"form field {part.name!r} is over {self.limits.max_field_bytes} bytes")
            return
        self.part = None
        if part.staged is None:
            try:
                self.form.fields[part.name] = part.value.decode()
            except UnicodeDecodeError:
                raise Problem(422, "invalid_request", f"form field {part.name!r} is not UTF-8 text") from None
            return
        self.form.documents[-1].info = part.inspector.finish()

    def _begin(self, headers: dict[bytes, bytes]) -> _Part:
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        if raw_filename is None and name not in ("file", "files"):
            if len(self.form.fields) >= MAX_FIELDS:
                raise Problem(422, "invalid_request", f"more than {MAX_FIELDS} form fields")
            return _Part(name, None)
        if len(self.form.documents) >= self.limits.max_documents:
            raise Problem(413, "too_many_documents",
                          f"a request may carry at most {self.limits.max_documents} documents; split it")
        part = _Part(name, sources.clean_filename(raw_filename.decode("utf-8", "replace")) if raw_filename else None)
        part.inspector = DocumentInspector(max_pixels=self.limits.max_pixels, max_pages=self.limits.max_pages)
        part.staged = self.blobs.stage(self.limits.max_document_bytes)
        # Registered at once, so an error in this very part still discards its stage.
        self.form.documents.append(ReceivedDocument(staged=part.staged, info=None, filename=part.filename))
        return part


def _malformed(detail: str) -> Problem:
    return Problem(400, "malformed_multipart", f"the multipart body is malformed: {detail}",
                   title="Malformed request")


def _boundary(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "")
    media, options = parse_options_header(content_type)
    if media != b"multipart/form-data" or not options.get(b"boundary"):
        raise Problem(415, "unsupported_media_type",
                      "send documents as multipart/form-data with the file in a part named 'file'",
                      title="Unsupported media type")
    return options[b"boundary"]


async def fetch_document(url: str, blobs: BlobStore, limits: UploadLimits, *, allowed_prefixes: list[str],
                         timeout_s: float) -> ReceivedDocument:
    """Fetch a document from an allowed URL into a staged blob, under the same caps as an upload.

    Only URLs under ``allowed_prefixes`` are fetched (the API must not become a way into the
    cluster's network): the URL is normalized first, credentials in it are refused, and
    redirects are not followed. Prefixes should end with ``/``.
    """
    import httpx

    if not allowed_prefixes:
        raise Problem(422, "url_submission_disabled",
                      "this deployment does not fetch documents from URLs; upload the file instead")
    if not sources.allowed(url, allowed_prefixes):  # the one rule of what may be fetched
        raise Problem(422, "url_not_allowed", "the URL is not under a prefix this deployment fetches from")
    url = str(httpx.URL(url))
    staged = blobs.stage(limits.max_document_bytes)
    inspector = DocumentInspector(max_pixels=limits.max_pixels, max_pages=limits.max_pages)
    try:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise Problem(422, "url_fetch_failed", f"fetching the URL answered HTTP {response.status_code}")
            async for chunk in response.aiter_raw():
                inspector.feed(chunk)
                staged.write(chunk)
        info = inspector.finish()
    except httpx.HTTPError as exc:
        staged.discard()
        raise Problem(422, "url_fetch_failed", f"the URL could not be fetched: {exc.__class__.__name__}") from None
    except BaseException:
        staged.discard()
        raise
    filename = sources.filename_of(url.rstrip("/")) or None
    return ReceivedDocument(staged=staged, info=info, filename=filename)
