"""A document's lifecycle: its states and the moves between them, written once.

A document is recorded ``queued`` when it is accepted (:func:`ocrfleet.intake.accept`) or,
for an OcrJob's documents, when a worker takes its task. Each try of a worker marks it
``processing``; it ends ``succeeded`` with its pages or ``failed`` with an error::

    queued ──► processing ──► succeeded
      │          ▲    │
      │          └────┤       (the next try: a retry, or a reclaim after a worker died)
      │               └─────► failed
      ├─────────────────────► succeeded   (answered from an earlier result, never processed)
      └─────────────────────► failed      (unusable, or the queue refused it)

The results store (:class:`ocrfleet.store.ResultStore`) moves a document only along
:data:`MOVES`; a move the table does not hold leaves the document as it is.
"""

from __future__ import annotations

from enum import StrEnum


class DocumentStatus(StrEnum):
    """Where a document is in its lifecycle (the ``status`` of results and API answers)."""

    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """Its outcome is stored: no worker processes it again."""
        return self in (DocumentStatus.SUCCEEDED, DocumentStatus.FAILED)


QUEUED, PROCESSING, SUCCEEDED, FAILED = DocumentStatus

MOVES: dict[DocumentStatus, frozenset[DocumentStatus]] = {
    QUEUED: frozenset({PROCESSING, SUCCEEDED, FAILED}),
    # processing again: the next try (a retry, or a reclaim after a worker died)
    PROCESSING: frozenset({PROCESSING, SUCCEEDED, FAILED}),
    # succeeded again: a redelivered document stores its result once more; failed: given up as
    # delivered past its attempts to workers that died after storing it (its pages stay)
    SUCCEEDED: frozenset({SUCCEEDED, FAILED}),
    # succeeded after failing: its task went in although enqueueing it reported an error
    FAILED: frozenset({SUCCEEDED, FAILED}),
}
"""For each state, the states a document may move to from it."""


def can_move(current: str, new: DocumentStatus) -> bool:
    """Whether a document in state ``current`` (as stored) may move to ``new``."""
    return new in MOVES[DocumentStatus(current)]
