"""ocrfleet's shared core: the contracts the operator, the API and the worker agree on.

One copy of each: the queue protocol (:mod:`ocrfleet.queue`), the Redis key names
(:mod:`ocrfleet.keys`), the result schema (:mod:`ocrfleet.results`) and its store
(:mod:`ocrfleet.store`), the blob store (:mod:`ocrfleet.blobs`), job progress counters
(:mod:`ocrfleet.progress`), the error hierarchy (:mod:`ocrfleet.errors`) and the CLI.
"""

__version__ = "0.1.0"
