"""The error hierarchy, drawn once.

Every error a worker or the API can meet is either *temporary* (retry later: Redis or the
database is away, Triton is still loading) or *permanent* (the same input will fail again:
a corrupt file, an unsupported type). The worker retries the first kind with backoff and
fails the document at once on the second; the API turns both into problem details. An
outage of a dependency (:class:`DependencyUnavailable`) is waited out without spending the
document's attempts.
"""

from __future__ import annotations


class OcrfleetError(Exception):
    """Base of every error ocrfleet raises on purpose."""

    #: A short machine-readable code, stable across releases (used in results and problem types).
    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class TemporaryError(OcrfleetError):
    """Try again later: a dependency is unavailable or overloaded."""

    code = "temporary"


class DependencyUnavailable(TemporaryError):
    """A service the worker needs (Triton, the object store) is unreachable: an outage.

    The document is not at fault, so waiting it out spends none of its attempts.
    """

    code = "dependency_unavailable"


class PermanentError(OcrfleetError):
    """The same input will fail again; fail the item, keep the process running."""

    code = "permanent"


class InvalidDocument(PermanentError):
    """The document itself is unusable: empty, truncated, the wrong type, too large, encrypted."""

    code = "invalid_document"


class DocumentTooLarge(InvalidDocument):
    """Over a configured cap: bytes, pixels or pages."""

    code = "document_too_large"


class UnsupportedType(InvalidDocument):
    """The magic bytes name no type ocrfleet reads."""

    code = "unsupported_type"


class SourceRefused(PermanentError):
    """A job's source is outside what the pool may read (URL allowlist, volume confinement)."""

    code = "source_refused"


class SourceNotFound(PermanentError):
    """A job's source names nothing that exists."""

    code = "source_not_found"


class ServiceError(OcrfleetError):
    """A server a component starts or needs could not start (a missing binary, a failed load)."""

    code = "service_failed"
