"""What the served networks take and give back: small tensors across every process boundary.

The converted PP-OCR networks are wrapped before they are traced, so that what crosses gRPC to
Triton and the python backend's shared memory (and, on a GPU, the PCIe bus) is what the worker
needs and no more:

- **detection** takes pages as decoded, ``uint8`` N x H x W x 3 (BGR), normalises them inside
  (PP-OCR's mean 0.5 / std 0.5: ``x * 2 / 255 - 1``) and gives the text probability map as
  ``uint8`` N x H x W, probability x 255 rounded: a quarter of the float32 page in and a quarter
  of the float32 map out (a 1,248 x 1,760 statement was 26 MB in and 8.8 MB out, now 6.6 and
  2.2);
- **recognition** gives, per time step, only the best class and its probability (N x T x 2
  float32: ``[..., 0]`` the class index, ``[..., 1]`` its probability), which is all greedy CTC
  decoding reads, instead of all 6,625 class probabilities (1 MB a line of 40 steps, now 320
  bytes);
- **direction** is unchanged: N x 3 x 48 x 192 float32 in, N x 2 probabilities out.

The wrapped modules are what :mod:`~ocrfleet_worker.model.convert` caches, so the in-process
engine and the Triton python backend run the same graph with the same contract.
"""

from __future__ import annotations

import torch

#: Each role's input: dtype and an example shape to trace with (none of them a size served).
EXAMPLES: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {
    "det": (torch.uint8, (1, 640, 640, 3)),
    "cls": (torch.float32, (2, 3, 48, 192)),
    "rec": (torch.float32, (2, 3, 48, 320)),
}


class PageDetector(torch.nn.Module):
    """uint8 pages (N, H, W, 3) in, the uint8 probability map (N, H, W) out."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, pages: torch.Tensor) -> torch.Tensor:
        # NHWC memory seen as NCHW is channels-last, the layout oneDNN's convolutions prefer
        x = pages.permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
        probability = self.network(x)[:, 0]
        return (probability * 255.0 + 0.5).clamp(0.0, 255.0).to(torch.uint8)


class BestClass(torch.nn.Module):
    """Line strips in, (N, T, 2) out: each time step's most probable class and its probability."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, strips: torch.Tensor) -> torch.Tensor:
        probability, index = self.network(strips).max(dim=2)
        return torch.stack((index.float(), probability), dim=2)


def wrap(network: torch.nn.Module, role: str) -> torch.nn.Module:
    """The network with its served ends."""
    if role == "det":
        return PageDetector(network)
    if role == "rec":
        return BestClass(network)
    return network


def example(role: str, device: str) -> torch.Tensor:
    """A random input of the role's dtype and example shape."""
    dtype, shape = EXAMPLES[role]
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, dtype=dtype, device=device)
    return torch.rand(shape, dtype=dtype, device=device)
