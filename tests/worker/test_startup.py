"""The worker waits for its Triton sidecar at start instead of crashing while the models load."""

from __future__ import annotations

import pytest
from ocrfleet_worker.main import wait_for_triton

from ocrfleet.errors import TemporaryError


class Sidecar:
    """A seam for TritonNetworks: ready after ``polls`` checks."""

    url = "127.0.0.1:8001"

    def __init__(self, polls: int) -> None:
        self.polls, self.closed = polls, False

    def ready(self) -> bool:
        self.polls -= 1
        return self.polls < 0

    def close(self) -> None:
        self.closed = True


def test_waits_until_every_model_is_ready():
    sidecar = Sidecar(polls=3)
    wait_for_triton(sidecar, timeout_s=5, interval_s=0)
    assert sidecar.polls == -1 and sidecar.closed


def test_gives_up_with_a_clear_error_after_its_deadline():
    with pytest.raises(TemporaryError, match="not ready within 0 s"):
        wait_for_triton(Sidecar(polls=10**9), timeout_s=0, interval_s=0)
