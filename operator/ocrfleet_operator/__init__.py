"""The ocrfleet operator: reconciles OcrCluster and OcrJob resources (group ``ocrfleet.io``).

Layers, from the outside in:

- :mod:`.handlers` — every ``@kopf.on.*``; each unpacks its arguments and delegates.
- :mod:`.reconcile` — the I/O: applies rendered manifests, reads child state, feeds jobs.
- :mod:`.builders`, :mod:`.decisions`, :mod:`.phases` — pure functions, tested by value.
- :mod:`.status` — the one status writer (compare before write, throttled).
- :mod:`.metrics_adapter` — serves each cluster's queue depth as an external metric.
"""
