"""Model conversion: the PP-OCR ONNX weights become cached TorchScript modules.

A model version (:data:`VERSIONS`) names its three networks and the wheel that ships them:

- ``ppocr-v4`` (the default), inside ``rapidocr_onnxruntime``: PP-OCRv4 text detection (DB),
  the mobile v2 text-direction classifier and PP-OCRv4 recognition (CTC over a 6,623-character
  Chinese + English dictionary, stored in the recognizer's ONNX metadata);
- ``ppocr-v6-small``, inside ``rapidocr`` 3.10 (its model licences and provenance file come
  with it): PP-OCRv6 small detection and recognition (an 18,708-character dictionary, in the
  metadata the same way) and the same direction classifier.
ocrfleet runs them as PyTorch modules: onnx2torch builds an ``nn.Module`` from each graph and
``torch.jit.trace`` freezes it into TorchScript, which both the in-process engine and the
Triton python backend load without onnx2torch.

The graphs need four repairs before onnx2torch accepts them and the traced module accepts any
batch size and width:

1. ``Constant`` nodes become initializers (onnx2torch looks weights up among initializers);
2. BatchNormalization inputs that shape inference leaves without a rank get one from the
   ``Conv`` that produces them (onnx2torch picks ``BatchNorm1d/2d/3d`` by rank);
3. onnx2torch imports torchvision for NMS/RoIAlign, which these models never use; where a
   torchvision build cannot be imported beside torch, a placeholder stands in;
4. onnx2torch's ``Shape`` builds ``torch.tensor(x.shape)``, which tracing records as a
   constant; ``torch._shape_as_tensor`` keeps the shape dynamic in the trace;
5. ``auto_pad: SAME_UPPER``/``SAME_LOWER`` (PP-OCRv6's 2x2 stride-1 stem convolutions and max
   pool), which onnx2torch refuses, becomes the explicit ``pads`` it stands for: at stride 1 the
   total padding is ``(k - 1)·d`` whatever the input size, the odd one at the end (UPPER) or the
   start (LOWER).

Then :mod:`~ocrfleet_worker.model.fuse` folds the backbones' scalar affines into their
convolutions and fuses the spelt-out hard-swish, which onnxruntime does on load and PyTorch
does not — without it the converted recogniser ran about 2x slower than onnxruntime on a CPU.
Each network is traced inside its served ends (:mod:`~ocrfleet_worker.model.ends`: uint8
pages and maps for detection, the best class per step for recognition).

Everything is cached under ``${OCRFLEET_CACHE:-~/.cache/ocrfleet}/models/<key>/`` where the key
hashes the ONNX files, the torch version and this converter's version; the directory is
written to a temporary name and renamed, so concurrent first starts do not see half a cache.
Weights and caches never go into git.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import sys
import tempfile
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocrfleet import models
from ocrfleet_worker.model import fuse

#: Bumped whenever the conversion changes what it writes; part of the cache key.
CONVERTER_VERSION = 6

ROLES = ("det", "cls", "rec")


@dataclass(frozen=True)
class ModelVersion:
    """One version of the OCR networks: its name, the wheel whose ``models/`` holds them, and each
    role's ONNX file there. The converted modules' cache key (:func:`cache_key`) is its content
    hash: the ONNX bytes, the torch version and the converter's."""

    name: str
    package: str
    files: dict[str, str]
    triton_version: int
    """Its version directory under each of Triton's ``ocr_*`` models (fixed: a client names it)."""


VERSIONS: dict[str, ModelVersion] = {v.name: v for v in (
    ModelVersion("ppocr-v4", "rapidocr_onnxruntime", {
        "det": "ch_PP-OCRv4_det_infer.onnx", "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "rec": "ch_PP-OCRv4_rec_infer.onnx"}, triton_version=1),
    ModelVersion("ppocr-v6-small", "rapidocr", {
        "det": "PP-OCRv6_det_small.onnx", "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "rec": "PP-OCRv6_rec_small.onnx"}, triton_version=2),
)}
DEFAULT_VERSION = models.DEFAULT


def model_version(name: str | None = None) -> ModelVersion:
    """The named version (the default without a name); an unknown name says which exist."""
    return VERSIONS[models.check(name)]  # the names are the core's (a test keeps the two the same)

KEYS_FILE = "ppocr_keys.txt"


def cache_root() -> Path:
    """``$OCRFLEET_CACHE`` or ``~/.cache/ocrfleet``."""
    return Path(os.environ.get("OCRFLEET_CACHE") or Path.home() / ".cache" / "ocrfleet")


def onnx_dir(version: str | None = None) -> Path:
    """The ``models/`` directory of the wheel that ships ``version``'s networks."""
    package = model_version(version).package
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"{package} is not installed; it carries the OCR weights of {model_version(version).name} "
            "(pip install --no-deps -r worker-image/weights.txt, or `make venv`)"
        )
    return Path(spec.origin).parent / "models"


@dataclass(frozen=True)
class ModelFiles:
    """Where one device's converted modules and the dictionary lie."""

    directory: Path
    device: str

    def module(self, role: str) -> Path:
        return self.directory / f"{role}.{self.device}.pt"

    @property
    def keys(self) -> Path:
        return self.directory / KEYS_FILE

    def load_keys(self) -> list[str]:
        return self.keys.read_text(encoding="utf-8").split("\n")

    def complete(self) -> bool:
        return self.keys.exists() and all(self.module(role).exists() for role in ROLES)


def cache_key(source: Path | None = None, version: str | None = None) -> str:
    """The version's name and a short hash of its ONNX files, the torch version and the converter's."""
    import torch

    spec = model_version(version)
    source = source or onnx_dir(spec.name)
    digest = hashlib.sha256(f"v{CONVERTER_VERSION}/torch{torch.__version__}".encode())
    for role in sorted(ROLES):
        digest.update(role.encode())
        digest.update((source / spec.files[role]).read_bytes())
    return f"{spec.name}-{digest.hexdigest()[:16]}"


def cached_models(device: str = "cpu", *, root: Path | None = None, source: Path | None = None,
                  version: str | None = None) -> ModelFiles:
    """Where the cache keeps (or would keep) ``version``'s converted models for ``device``."""
    source = source or onnx_dir(version)
    return ModelFiles((root or cache_root()) / "models" / cache_key(source, version), device)


def ensure_models(device: str = "cpu", *, root: Path | None = None, source: Path | None = None,
                  version: str | None = None) -> ModelFiles:
    """Convert ``version``'s models (the default's without one) for ``device`` ("cpu" or
    "cuda") unless the cache already has them."""
    spec = model_version(version)
    source = source or onnx_dir(spec.name)
    files = cached_models(device, root=root, source=source, version=spec.name)
    directory = files.directory
    if files.complete():
        return files
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        if directory.exists():  # another device's modules are already there: keep them
            for item in directory.iterdir():
                shutil.copy2(item, staging / item.name)
        for role in ROLES:
            target = staging / f"{role}.{device}.pt"
            if not target.exists():
                module = to_torch(load_onnx(source / spec.files[role]))
                trace(module, role, device).save(str(target))
        (staging / KEYS_FILE).write_text("\n".join(read_dictionary(source, spec.name)), encoding="utf-8")
        (staging / "manifest.json").write_text(json.dumps(_manifest(source, spec), indent=2))
        _publish(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files


def read_dictionary(source: Path | None = None, version: str | None = None) -> list[str]:
    """The recognizer's characters, in class order (without CTC blank and trailing space)."""
    import onnx

    spec = model_version(version)
    model = onnx.load((source or onnx_dir(spec.name)) / spec.files["rec"], load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise ValueError("the recognition model carries no 'character' metadata (the dictionary)")
    return meta["character"].splitlines()


def load_onnx(path: Path, *, fused: bool = True):
    """Load an ONNX graph, apply repairs 1, 2 and 5 (constants, BatchNorm ranks, SAME padding)
    and the fusions."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    _explicit_same_padding(model.graph)
    _constants_to_initializers(model.graph)
    model = shape_inference.infer_shapes(model)
    _give_batchnorm_inputs_a_rank(model.graph)
    if fused:
        fuse.fuse(model)
    return model


def to_torch(model):
    """onnx2torch with repairs 3 and 4 (torchvision placeholder, dynamic Shape)."""
    onnx2torch = _import_onnx2torch()
    from onnx2torch.node_converters import shape as shape_module

    _dynamic_shape(shape_module.OnnxShape)
    fuse.register_converters()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = onnx2torch.convert(model)
    return module.eval()


def trace(module, role: str, device: str = "cpu"):
    """TorchScript of ``module`` with its served ends (:mod:`~ocrfleet_worker.model.ends`) on
    ``device``, traced at the role's example input."""
    import torch

    from ocrfleet_worker.model import ends

    module = ends.wrap(module, role).to(device).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, ends.example(role, device), check_trace=False)
    return torch.jit.freeze(traced.eval())


def _explicit_same_padding(graph) -> int:
    """Repair 5: SAME auto-padding as explicit pads (stride 1 only; elsewhere the padding depends
    on the input size, and a clear error beats a silently wrong border)."""
    from onnx import helper

    fixed = 0
    for node in graph.node:
        attributes = {a.name: a for a in node.attribute}
        mode = attributes["auto_pad"].s.decode() if "auto_pad" in attributes else "NOTSET"
        if mode not in ("SAME_UPPER", "SAME_LOWER"):
            continue
        kernel = list(attributes["kernel_shape"].ints)
        strides = list(attributes["strides"].ints) if "strides" in attributes else [1] * len(kernel)
        dilations = list(attributes["dilations"].ints) if "dilations" in attributes else [1] * len(kernel)
        if any(s != 1 for s in strides):
            raise ValueError(f"{node.op_type} {node.name or node.output[0]!r}: auto_pad {mode} at stride {strides} "
                             "depends on the input size; only stride 1 is converted")
        total = [(k - 1) * d for k, d in zip(kernel, dilations, strict=True)]
        begin = [t // 2 if mode == "SAME_UPPER" else t - t // 2 for t in total]
        node.attribute.remove(attributes["auto_pad"])
        node.attribute.append(helper.make_attribute("pads", begin + [t - b for t, b in zip(total, begin, strict=True)]))
        fixed += 1
    return fixed


def _constants_to_initializers(graph) -> None:
    import onnx

    kept = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _give_batchnorm_inputs_a_rank(graph) -> None:
    import onnx

    known = {v.name for v in [*graph.value_info, *graph.input, *graph.output]
             if v.type.tensor_type.HasField("shape")}
    initializers = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        name = node.input[0] if node.op_type == "BatchNormalization" else None
        if name is None or name in known:
            continue
        producer = producers.get(name)
        weight = initializers.get(producer.input[1]) if producer is not None and producer.op_type == "Conv" else None
        rank = len(weight.dims) if weight is not None else 4
        graph.value_info.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [None] * rank))
        known.add(name)


def _import_onnx2torch():
    try:
        importlib.import_module("torchvision")
    except Exception:  # noqa: BLE001 - a broken torchvision build raises anything from OSError to RuntimeError
        placeholder = types.ModuleType("torchvision")
        placeholder.ops = types.ModuleType("torchvision.ops")  # type: ignore[attr-defined]
        placeholder.ops.roi_align = None  # type: ignore[attr-defined]
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision"] = placeholder
        sys.modules["torchvision.ops"] = placeholder.ops  # type: ignore[attr-defined]
    return importlib.import_module("onnx2torch")


def _dynamic_shape(shape_class) -> None:
    import torch

    if getattr(shape_class, "_ocrfleet_dynamic", False):
        return

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor:
        return torch._shape_as_tensor(input_tensor)[self._start : self._end].to(input_tensor.device)

    shape_class.forward = forward
    shape_class._ocrfleet_dynamic = True


def _manifest(source: Path, spec: ModelVersion) -> dict:
    import torch

    return {
        "model_version": spec.name,
        "package": spec.package,
        "converter_version": CONVERTER_VERSION,
        "torch": torch.__version__,
        "onnx": {role: {"file": name, "sha256": _sha256(source / name)} for role, name in spec.files.items()},
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _publish(staging: Path, directory: Path) -> None:
    if directory.exists():
        old = directory.with_name(f".{directory.name}-old-{os.getpid()}")
        with contextlib.suppress(OSError):
            directory.rename(old)
            shutil.rmtree(old, ignore_errors=True)
    try:
        staging.rename(directory)
    except OSError:  # another process published first; its modules are as good as ours
        if not directory.exists():
            raise


def reference_outputs(role: str, batch: np.ndarray, source: Path | None = None, threads: int = 1,
                      version: str | None = None) -> np.ndarray:
    """The bare ONNX network run by onnxruntime (for checks and benchmarks): float32 N x 3 x H x W
    in, the network's own output (no served ends) out."""
    import onnxruntime

    spec = model_version(version)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str((source or onnx_dir(spec.name)) / spec.files[role]), options,
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch.astype(np.float32)})[0]
