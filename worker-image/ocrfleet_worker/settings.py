"""The worker's settings: the shared core's plus the consumer's pacing, the engine and the caps.

Read once from the environment (prefix ``OCRFLEET_``) by :mod:`ocrfleet_worker.main`; tests
build the object directly.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field

from ocrfleet.settings import CoreSettings, StrList
from ocrfleet.sources import SourceAccess
from ocrfleet_worker.documents import DecodeLimits


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(CoreSettings):
    consumer_name: str = Field(
        default_factory=_default_consumer,
        description="consumer_name: this worker's name in the consumer group (the pod name in a cluster).",
    )
    engine: Literal["triton", "torch"] = Field(
        "triton",
        description="engine: `triton` (gRPC to the Triton sidecar) or `torch` (in-process PyTorch).",
    )
    triton_url: str = Field("127.0.0.1:8001", description="triton_url: Triton's gRPC endpoint.")
    triton_wait_s: float = Field(
        900.0, ge=0, description="triton_wait_s: how long the worker waits at start for Triton to be ready "
        "(the sidecar loads the models meanwhile) before it exits with an error.")
    block_ms: int = Field(1000, ge=10, description="block_ms: how long one read waits for new work.")
    reclaim_interval_s: float = Field(
        5.0, gt=0, description="reclaim_interval_s: how often idle entries of dead workers are looked for."
    )
    backoff_base_s: float = Field(0.5, ge=0, description="backoff_base_s: first wait after a temporary error.")
    backoff_max_s: float = Field(30.0, ge=0, description="backoff_max_s: longest wait between retries.")
    # The decoding caps default to the decoder's own (DecodeLimits). In a pool the operator sets
    # max_bytes, max_pages, max_side and pdf_dpi from the OcrCluster, whose CRD defaults are these.
    max_bytes: int = Field(DecodeLimits.max_bytes, ge=1, description="max_bytes: largest document accepted.")
    max_pixels: int = Field(DecodeLimits.max_pixels, ge=1, description="max_pixels: most pixels of one page.")
    max_dimension: int = Field(DecodeLimits.max_dimension, ge=1,
                               description="max_dimension: most pixels of one page side.")
    max_decoded_bytes: int = Field(
        DecodeLimits.max_decoded_bytes, ge=1024 * 1024,
        description="max_decoded_bytes: most bytes one page may decode to (pixels times bytes per pixel of "
        "its mode: 16-bit and 32-bit pages cost more than 8-bit ones).")
    max_pages: int = Field(DecodeLimits.max_pages, ge=1, description="max_pages: most pages of one document.")
    max_side: int = Field(DecodeLimits.max_side, ge=64,
                          description="max_side: pages are downscaled to this longer side.")
    pdf_dpi: int = Field(DecodeLimits.pdf_dpi, ge=36, description="pdf_dpi: resolution PDF pages are rendered at.")
    drain_file: str = Field("", description="drain_file: once this file exists, take no new work and stop "
                            "(a pod's preStop hook touches it); empty: no drain file.")
    busy_file: str = Field("", description="busy_file: present exactly while a document is in hand (a pod's "
                           "preStop hooks wait for it to go); empty: no busy file.")
    log_level: str = Field("INFO", description="log_level: Python logging level.")
    metrics_port: int = Field(9400, ge=0, le=65535,
                              description="metrics_port: port of the Prometheus exposition (/metrics); 0 disables it.")
    metrics_host: str = Field("0.0.0.0", description="metrics_host: the exposition's listen address.")
    source_url_allowlist: StrList = Field(
        default_factory=list, description="source_url_allowlist: URL prefixes OcrJob documents may be fetched "
        "from (a JSON list; the pool's spec.sources.urlAllowlist); empty refuses every URL.")
    source_volume_root: str = Field(
        "", description="source_volume_root: where the pool's documents volume is mounted (volume: sources); "
        "empty: no volume sources.")

    def source_access(self, objects: object | None) -> SourceAccess:
        """What this worker may read of OcrJob sources (``objects``: the pool's S3 store, if any)."""
        return SourceAccess(max_bytes=self.max_bytes, url_allowlist=tuple(self.source_url_allowlist),
                            volume_root=Path(self.source_volume_root) if self.source_volume_root else None,
                            objects=objects)

    def decode_limits(self) -> DecodeLimits:
        return DecodeLimits(max_bytes=self.max_bytes, max_pixels=self.max_pixels,
                            max_dimension=self.max_dimension, max_pages=self.max_pages,
                            max_decoded_bytes=self.max_decoded_bytes, max_side=self.max_side,
                            pdf_dpi=self.pdf_dpi)
