"""Model versions: the names every image agrees on.

A model version names one set of OCR networks (detection, direction, recognition) with its
dictionary; the worker image knows where each one's files are
(:data:`ocrfleet_worker.model.convert.VERSIONS`). Every stored result records the version that
read it, and an earlier result answers a new document only when the same version read it
(:mod:`ocrfleet.reuse`): reading with another version is a choice, never a cache hit.
"""

from __future__ import annotations

DEFAULT = "ppocr-v4"
"""The version a pool reads with unless it names another; results stored before versions were
recorded (``model`` is null) were read by it."""
KNOWN = ("ppocr-v4", "ppocr-v6-small")


def check(name: str | None) -> str:
    """``name`` if it is a known version (the default for none); a clear error otherwise."""
    name = name or DEFAULT
    if name not in KNOWN:
        raise ValueError(f"unknown model version {name!r}; known: {', '.join(KNOWN)}")
    return name
