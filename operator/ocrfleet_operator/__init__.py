"""The ocrfleet operator: reconciles OcrCluster and OcrJob resources (group ``ocrfleet.io``).

Layers, from the outside in:

- :mod:`.handlers` — every ``@kopf.on.*``; each unpacks its arguments and delegates.
- :mod:`.clusters`, :mod:`.jobs` — the I/O of one reconcile tick: :mod:`.clusters` applies the
  rendered children, reads their state and takes the scale steps; :mod:`.jobs` admits an
  OcrJob, hands its feeding to the runtime's feeder threads and folds progress into status.
- :mod:`.runtime` — the clients the handlers share (Kubernetes, Redis per pool, the feeder).
- :mod:`.builders`, :mod:`.stores`, :mod:`.policies`, :mod:`.jobsource` — what to render (pure).
- :mod:`.decisions`, :mod:`.phases`, :mod:`.conditions`, :mod:`.jobstatus` — what should be
  (pure functions, tested by value).
- :mod:`.status` — the one status writer (compare before write, throttled).
- :mod:`.kube` — the Kubernetes REST client; :mod:`.metrics_adapter` — serves each cluster's queue
  depth as an external metric.
"""
