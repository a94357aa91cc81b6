"""ocrfleet's shared core: the contracts the operator, the API and the worker agree on.

One copy of each: the queue protocol (:mod:`ocrfleet.queue`), the Redis key names
(:mod:`ocrfleet.keys`), the result schema (:mod:`ocrfleet.results`) and its store
(:mod:`ocrfleet.store`), the blob store (:mod:`ocrfleet.blobs`), job progress counters
(:mod:`ocrfleet.progress`), the error hierarchy (:mod:`ocrfleet.errors`) and the settings
every image reads (:mod:`ocrfleet.settings`).

The version has one source, ``pyproject.toml``; the chart's version and appVersion and the
image tags the operator gives pools follow it (``tests/test_version.py`` keeps them in step).
"""

from importlib.metadata import version as _version

__version__ = _version("ocrfleet")
