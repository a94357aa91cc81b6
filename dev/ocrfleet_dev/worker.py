"""``python -m ocrfleet_dev.worker``: the real worker process over the replay engine.

Tests that kill, restart and race worker processes need the queue, store and signal handling
of ``python -m ocrfleet_worker`` without the model: this runs exactly that main with a
:class:`~ocrfleet_dev.replay_engine.ReplayEngine`. Besides the worker's own settings it reads
``OCRFLEET_REPLAY_DIR`` (a sample set whose truth it answers with) and
``OCRFLEET_REPLAY_DELAY_MS`` (simulated inference time per page).
"""

from __future__ import annotations

import sys

from ocrfleet_worker.main import main
from ocrfleet_worker.settings import WorkerSettings
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ocrfleet_dev.replay_engine import ReplayEngine


class ReplaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCRFLEET_REPLAY_")

    dir: str = Field("", description="a generated sample set whose truth the engine answers with")
    delay_ms: int = Field(0, ge=0, description="simulated inference time per page")


def replay_engine() -> ReplayEngine:
    replay = ReplaySettings()
    delay = replay.delay_ms / 1000
    if replay.dir:
        return ReplayEngine.from_sample_set(replay.dir, limits=WorkerSettings().decode_limits(), delay_s=delay)
    return ReplayEngine(delay_s=delay)


if __name__ == "__main__":
    sys.exit(main(engine=replay_engine()))
