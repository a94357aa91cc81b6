"""The ocrfleet worker: consumes a pool's queue and turns each document into page results.

:mod:`~ocrfleet_worker.consumer` is the queue loop, :mod:`~ocrfleet_worker.pipeline` the pure
path from bytes to results (:mod:`~ocrfleet_worker.documents` decoding,
:mod:`~ocrfleet_worker.doctype`, :mod:`~ocrfleet_worker.fields`,
:mod:`~ocrfleet_worker.masking`), and ``model`` / ``engine`` the OCR model behind Triton.
``python -m ocrfleet_worker`` runs it (:mod:`~ocrfleet_worker.main`).
"""
