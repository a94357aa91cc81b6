"""The images a pool runs: the ones its spec names, or the operator's defaults.

The CRDs default no image of ocrfleet's own: a default written into the CRD is stored in every
object created under it, so a chart upgrade would never move an existing pool. The operator
fills what a spec leaves out from its settings (``OCRFLEET_API_IMAGE``, ``OCRFLEET_WORKER_IMAGE``,
which the chart sets from ``pools.images`` and its appVersion) each time it renders, and the
Triton container runs the worker image unless ``triton.image`` says otherwise. The stores'
images (Redis, PostgreSQL, SeaweedFS) stay CRD defaults: a database moves when its pool's author
says so, not with the chart.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from ocrfleet_operator.settings import OperatorSettings


def with_defaults(cluster: Mapping, settings: OperatorSettings) -> dict:
    """``cluster`` with ``spec.api.image``, ``spec.workers.image`` and ``spec.triton.image`` set."""
    resolved = copy.deepcopy(dict(cluster))
    spec = resolved["spec"]
    workers = spec.setdefault("workers", {})
    workers["image"] = workers.get("image") or settings.worker_image
    api = spec.setdefault("api", {})
    api["image"] = api.get("image") or settings.api_image
    triton = spec.setdefault("triton", {})
    triton["image"] = triton.get("image") or workers["image"]
    return resolved
