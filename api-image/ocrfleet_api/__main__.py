"""``python -m ocrfleet_api``: create the schema once, then serve with uvicorn.

Settings come from ``OCRFLEET_*`` variables (see :class:`~ocrfleet_api.settings.ApiSettings`).
With more than one worker, Prometheus metrics are shared through a temporary
``PROMETHEUS_MULTIPROC_DIR`` unless one is given.
"""

from __future__ import annotations

import logging
import os
import tempfile

import uvicorn

from ocrfleet.store import Base, make_engine
from ocrfleet_api import tables  # noqa: F401  (registers the API's tables on Base)
from ocrfleet_api.settings import ApiSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ApiSettings()
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    engine.dispose()
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ocrfleet-api-metrics-")
    uvicorn.run("ocrfleet_api.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, proxy_headers=True, access_log=False, log_level="info",
                timeout_keep_alive=30)


if __name__ == "__main__":
    main()
