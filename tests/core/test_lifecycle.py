"""The document lifecycle's table: every pair of states, and the store moving along it only."""

from __future__ import annotations

import pytest

from ocrfleet.lifecycle import MOVES, DocumentStatus, can_move
from ocrfleet.results import DocumentError, PageResult
from ocrfleet.store import DocumentRow

Q, P, S, F = DocumentStatus.QUEUED, DocumentStatus.PROCESSING, DocumentStatus.SUCCEEDED, DocumentStatus.FAILED

ALLOWED = {(Q, P), (Q, S), (Q, F), (P, P), (P, S), (P, F), (S, S), (S, F), (F, S), (F, F)}


@pytest.mark.parametrize("current", list(DocumentStatus))
@pytest.mark.parametrize("new", list(DocumentStatus))
def test_every_move_is_allowed_exactly_when_the_table_says(current, new):
    assert can_move(current.value, new) == ((current, new) in ALLOWED)


def test_nothing_moves_back_to_queued_and_a_finished_document_is_not_processed_again():
    assert all(Q not in targets for targets in MOVES.values())
    assert [s for s in DocumentStatus if s.finished] == [S, F]
    assert not any(can_move(s, P) for s in DocumentStatus if s.finished)


def test_the_status_is_its_wire_string():
    assert DocumentStatus("succeeded") is S and f"{S}" == "succeeded" and S == "succeeded"


def test_the_store_moves_a_document_only_along_the_table(store):
    store.add_document(DocumentRow(id="d", tenant="t", sha256="a" * 64))
    assert store.mark_processing("d", attempt=1)
    assert store.save_result("d", [PageResult(page=1, width=1, height=1)], document_type="generic")
    assert not store.mark_processing("d", attempt=2), "a stored result is not processed again"
    assert store.get("d").status == S
    with store.session() as s:
        assert s.get(DocumentRow, "d").attempts == 1
    assert not store.mark_processing("unknown")
    store.add_document(DocumentRow(id="e", tenant="t", sha256="b" * 64))
    assert store.mark_failed("e", DocumentError(code="enqueue_failed", message="not queued"))
    assert not store.mark_processing("e")
    assert store.save_result("e", [], document_type="generic"), "its task went in after all"
    assert store.get("e").status == S and store.get("e").error is None
