"""The OCR model: PP-OCRv4 detection, direction and recognition as PyTorch, with our own pre/post-processing.

- :mod:`.convert` turns the ONNX weights of the rapidocr-onnxruntime wheel into cached TorchScript
  (after :mod:`.fuse` simplifies the graphs);
- :mod:`.networks` runs those modules in this process (CUDA when available);
- :mod:`.detect`, :mod:`.crops`, :mod:`.classify`, :mod:`.recognize` and :mod:`.order` are the stages
  around the networks, and :mod:`.pipeline` strings them together for one page.

The worker reaches all of this through :mod:`ocrfleet_worker.engine`.
"""
