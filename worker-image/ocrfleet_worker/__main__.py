"""``python -m ocrfleet_worker`` runs the worker process (see :mod:`ocrfleet_worker.main`)."""

import sys

from ocrfleet_worker.main import main

sys.exit(main())
