"""Drain-safe termination through two files a pod's preStop hook can see.

The operator's worker pod shares an in-memory ``/run/ocrfleet`` between the worker and the
Triton container. Its preStop hook touches the *drain file* and then waits while the *busy
file* exists; Triton's hook waits on the same busy file, so it stops only after the worker's
last page. :class:`DrainFiles` is the worker's side: it reports the drain request and keeps
the busy file present exactly while a document is in hand. With no paths (the default, and
outside Kubernetes) both do nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class DrainFiles:
    def __init__(self, drain_file: str | Path = "", busy_file: str | Path = "") -> None:
        self.drain_file = Path(drain_file) if drain_file else None
        self.busy_file = Path(busy_file) if busy_file else None

    def draining(self) -> bool:
        """True once the drain file exists: take no new work."""
        return self.drain_file is not None and self.drain_file.exists()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """The busy file exists for the duration of the block (one document, stored and acked)."""
        if self.busy_file is None:
            yield
            return
        self.busy_file.parent.mkdir(parents=True, exist_ok=True)
        self.busy_file.touch()
        try:
            yield
        finally:
            self.busy_file.unlink(missing_ok=True)
