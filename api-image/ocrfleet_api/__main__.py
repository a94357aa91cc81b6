"""``python -m ocrfleet_api``: create the schema once, then serve with uvicorn.

Settings come from ``OCRFLEET_*`` variables (see :class:`~ocrfleet_api.settings.ApiSettings`).
With more than one worker, Prometheus metrics are shared through a temporary
``PROMETHEUS_MULTIPROC_DIR`` unless one is given; they are served on ``OCRFLEET_METRICS_PORT``.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import uvicorn

from ocrfleet.settings import command_line
from ocrfleet.store import ResultStore, make_engine
from ocrfleet_api import metrics, tables  # noqa: F401  (tables registers the API's tables on Base)
from ocrfleet_api.settings import ApiSettings


def main(argv: list[str] | None = None) -> None:
    command_line(sys.argv[1:] if argv is None else argv, program="python -m ocrfleet_api",
                 summary="The ocrfleet API: documents in, results out, for a pool's tenants.", settings=ApiSettings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ApiSettings()
    try:
        settings.master_key()
    except ValueError as exc:
        raise SystemExit(f"ocrfleet-api: {exc}") from None
    engine = make_engine(settings.database_url)
    ResultStore(engine).create_schema()
    engine.dispose()
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ocrfleet-api-metrics-")
    if settings.metrics_port:
        metrics.serve(settings.host, settings.metrics_port)
    uvicorn.run("ocrfleet_api.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, proxy_headers=True, access_log=False, log_level="info",
                timeout_keep_alive=30)


if __name__ == "__main__":
    main()
