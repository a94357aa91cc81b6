"""ocrfleet's development tooling: what tests, benchmarks, the demo and ``ocrfleet process`` use
and no image carries.

- :mod:`.docgen`: labelled sample documents (ID cards, bank statements, generic pages);
- :mod:`.localproc`: Redis, PostgreSQL and the object store as local child processes;
- :mod:`.triton`: the local Triton server (the ``nvidia-pytriton`` wheel's binary);
- :mod:`.replay_engine`: an OCR engine that answers with a sample set's truth;
- :mod:`.worker`: the worker process over the replay engine (``python -m ocrfleet_dev.worker``).

It may import the core and any image's package; nothing outside it imports it (the
import-linter contracts in ``pyproject.toml``).
"""
