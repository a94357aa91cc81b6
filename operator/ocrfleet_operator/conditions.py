"""Status conditions, for both kinds: what a condition is and how a new set folds into the old.

The one rule: ``lastTransitionTime`` moves only when a condition's status flips, and every
condition carries the generation it was computed for (``observedGeneration``), as kstatus and
``kubectl wait`` read them. Pure; OcrCluster (:mod:`.decisions`) and OcrJob (:mod:`.phases`)
decide which conditions hold, this module writes them.

Both kinds also carry ``Reconciling`` and ``Stalled``, the abnormal-true pair that kstatus
(``sigs.k8s.io/cli-utils``, which Flux and kpt wait with) reads on any custom resource:
Reconciling while the operator is still bringing the object to what its spec asks, Stalled
when it cannot without someone acting. Neither true, with ``observedGeneration`` equal to
``metadata.generation``, reads as Current.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


def kstatus_pair(*, reconciling: Condition, stalled: Condition) -> list[Condition]:
    """``Reconciling`` and ``Stalled``, each mirroring the kind's own condition that means it."""
    return [replace(reconciling, type="Reconciling"), replace(stalled, type="Stalled")]


def merge(previous: Sequence[Mapping], current: Sequence[Condition], *, generation: int, now: datetime
          ) -> list[dict]:
    """Conditions as status dicts; ``lastTransitionTime`` moves only when the status flips."""
    before = {c.get("type"): c for c in previous}
    stamp = rfc3339(now)
    out = []
    for c in current:
        old = before.get(c.type)
        changed = old is None or old.get("status") != c.status
        out.append({
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "observedGeneration": generation,
            "lastTransitionTime": stamp if changed else old.get("lastTransitionTime", stamp),
        })
    return out


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    """A status timestamp (RFC 3339, as :func:`rfc3339` writes it) back as a datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
