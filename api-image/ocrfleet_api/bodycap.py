"""A cap on every request body that is not a document upload, enforced before routing.

Uploads (``multipart/form-data`` POSTs to the submission routes) stream through their own
caps in :mod:`ocrfleet_api.uploads`. Every other body — a JSON submission, a cache check,
anything sent to a route that takes none — may be at most ``limit`` bytes: a declared
``Content-Length`` over it is refused at once, before the request reaches auth or a route,
and a body streamed without one is cut off at the cap. No route ever holds more than
``limit`` bytes of a body it did not ask for.
"""

from __future__ import annotations

from ocrfleet_api.problems import Problem

UPLOAD_PATHS = frozenset({"/v1/documents", "/v1/batches"})


def _too_large(limit: int) -> Problem:
    return Problem(413, "body_too_large", f"this request body may be at most {limit} bytes; documents are "
                   "uploaded as multipart/form-data to POST /v1/documents or /v1/batches")


def is_upload(scope) -> bool:
    if scope["method"] != "POST" or scope["path"].rstrip("/") not in UPLOAD_PATHS:
        return False
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.lower().startswith(b"multipart/form-data")
    return False


class BodyCapMiddleware:
    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or is_upload(scope):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await _too_large(self.limit).response(scope["path"])(scope, receive, send)
                return
        seen = 0

        async def capped():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _too_large(self.limit)
            return message

        await self.app(scope, capped, send)
