"""The one status writer: compare before writing, throttle progress-only changes.

Every status the operator computes goes through :meth:`StatusWriter.write`. It skips a write
when the status is what the object already shows, and holds back a change that only moves
counters when the object's status was written less than ``min_interval`` seconds ago (the
next timer tick writes it). Changes marked ``urgent`` (a phase or a condition flip) go out
at once. So a job of 10,000 pages costs a status write every few seconds, not one per page.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ocrfleet_operator import metrics
from ocrfleet_operator.kube import Kube


@dataclass
class WriteStats:
    written: int = 0
    unchanged: int = 0
    throttled: int = 0


@dataclass
class StatusWriter:
    kube: Kube
    min_interval: float = 3.0
    clock: Callable[[], float] = time.monotonic
    stats: WriteStats = field(default_factory=WriteStats)
    _last: dict[str, tuple[float, dict]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, kind: str, namespace: str, name: str, uid: str, current: Mapping | None, desired: dict,
              *, urgent: bool = False) -> bool:
        """Write ``desired`` as the object's status if it differs; returns True when written.

        ``current`` is the status the caller last saw on the object; the writer also
        remembers what it wrote itself, so a stale ``current`` does not cause a rewrite.
        """
        now = self.clock()
        with self._lock:
            last_at, last_written = self._last.get(uid, (float("-inf"), None))
            if _covers(current or {}, desired) or (last_written is not None and _covers(last_written, desired)):
                self.stats.unchanged += 1
                metrics.STATUS_SKIPPED.labels(kind, "unchanged").inc()
                return False
            if not urgent and now - last_at < self.min_interval:
                self.stats.throttled += 1
                metrics.STATUS_SKIPPED.labels(kind, "throttled").inc()
                return False
            self._last[uid] = (now, desired)
        self.kube.merge_patch(kind, namespace, name, {"status": desired}, sub="status")
        with self._lock:
            self.stats.written += 1
        metrics.STATUS_WRITES.labels(kind).inc()
        return True

    def known(self, uid: str, current: Mapping | None) -> dict:
        """The freshest status of an object: what this writer last wrote over what the body shows.

        kopf may hand a handler a body older than the writer's last patch; deciding a phase
        change (and posting its Event) from that stale body would announce it twice.
        """
        with self._lock:
            last = self._last.get(uid)
        return {**(current or {}), **(last[1] if last else {})}

    def forget(self, uid: str) -> None:
        with self._lock:
            self._last.pop(uid, None)


def _covers(current: Mapping, desired: Mapping) -> bool:
    """True when every key of ``desired`` already has that value in ``current``."""
    for key, value in desired.items():
        if isinstance(value, Mapping) and isinstance(current.get(key), Mapping):
            if not _covers(current[key], value):
                return False
        elif current.get(key) != value:
            return False
    return True
