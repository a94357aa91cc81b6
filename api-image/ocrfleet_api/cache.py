"""An in-process cache of processed results, serialized, keyed by (tenant, SHA-256, policy).

``check-cache`` is the hottest route: clients call it before every upload. A succeeded
result does not change (a retry stores the same outcome again), so its JSON is kept here for
``ttl_s`` and a repeated hit costs no database round trip and no re-serialization. Only hits
are kept — a miss may turn into a hit as soon as a worker finishes — and the key includes the
tenant, so one tenant's result is never served to another, and the masking policy, so a
result is never served masked less than the request asks.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class ResultCache:
    def __init__(self, *, max_entries: int, ttl_s: float) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, ...], tuple[float, bytes]] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, body = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return body

    def put(self, key: tuple[str, ...], body: bytes) -> None:
        if self.max_entries <= 0 or self.ttl_s <= 0:
            return
        self._entries[key] = (time.monotonic() + self.ttl_s, body)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
