"""``python -m ocrfleet_operator``: run the operator (one replica; kopf bookkeeping in annotations).

Settings come from ``OCRFLEET_*`` variables (see :mod:`.settings`); the Kubernetes
credentials from the pod's service account or ``KUBECONFIG``.
"""

from __future__ import annotations

import logging
import sys

import kopf

from ocrfleet.settings import command_line
from ocrfleet_operator import (
    handlers,  # noqa: F401  (registers the handlers)
    metrics,
)
from ocrfleet_operator.settings import OperatorSettings


def main(argv: list[str] | None = None) -> None:
    command_line(sys.argv[1:] if argv is None else argv, program="python -m ocrfleet_operator",
                 summary="The ocrfleet operator: reconciles OcrClusters and OcrJobs.", settings=OperatorSettings)
    config = OperatorSettings()
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the rest
    metrics.serve(config.prometheus_host, config.prometheus_port)
    kopf.run(
        clusterwide=not config.namespace,
        namespaces=[config.namespace] if config.namespace else (),
        standalone=True,  # one replica (Recreate): no peering objects needed
        liveness_endpoint=f"http://0.0.0.0:{config.liveness_port}/healthz" if config.liveness_port else None,
    )


if __name__ == "__main__":
    main()
