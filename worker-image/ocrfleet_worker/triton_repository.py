"""The Triton model repository, rendered per cluster.

``worker-image/model_repository/`` in git holds the three models (``ocr_det``, ``ocr_cls``,
``ocr_rec``) with the default settings — dynamic batching with max batch size 8 and a 100 ms
max queue delay, one CPU instance — and one shared python-backend file
(``torchscript_model.py``, linked as each model's ``1/model.py``). No weights live there.

A cluster wants its own numbers (an OcrCluster's ``spec.triton``): batch size, queue delay,
instance count and kind, torch threads per instance, and the model versions it serves
(:data:`~ocrfleet_worker.model.convert.VERSIONS`). :func:`render_repository` writes a complete,
servable repository for a :class:`TritonModelSettings`: each ``config.pbtxt`` generated from
:data:`MODELS` and the settings, and for each served model version a version directory (its
``triton_version``: ``1`` for ppocr-v4, ``2`` for ppocr-v6-small) with ``model.py`` and that
version's TorchScript modules converted for the instances' device
(:mod:`ocrfleet_worker.model.convert`). The configs' ``version_policy`` lists exactly those
directories, so Triton loads the versions side by side and a client names the one it wants.
In a pod, an init container of the worker image runs::

    python -m ocrfleet_worker.triton_repository render --out /models   # settings from OCRFLEET_TRITON_*

and tritonserver serves ``/models``; locally, :mod:`ocrfleet_worker.triton_server` does the same
in a temporary directory. The committed ``config.pbtxt`` files are exactly what the default
settings render (a test keeps them so).
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The committed repository (templates and defaults).
SOURCE = Path(__file__).resolve().parents[1] / "model_repository"
MODEL_FILE = "torchscript_model.py"


@dataclass(frozen=True)
class ModelSpec:
    role: str
    """Which converted network: det, cls or rec."""
    input_type: str
    input_dims: tuple[int, ...]
    output_type: str
    output_dims: tuple[int, ...]
    about: str


#: The served ends of each network (ocrfleet_worker.model.ends), without the batch dimension.
MODELS: dict[str, ModelSpec] = {
    "ocr_det": ModelSpec("det", "UINT8", (-1, -1, 3), "UINT8", (-1, -1),
                         "PP-OCR text detection (DB): uint8 BGR page -> text probability x 255"),
    "ocr_cls": ModelSpec("cls", "FP32", (3, 48, 192), "FP32", (2,),
                         "PP-OCR text direction: line crop -> [upright, upside down]"),
    "ocr_rec": ModelSpec("rec", "FP32", (3, 48, -1), "FP32", (-1, 2),
                         "PP-OCR recognition (CTC): line strip -> best class and its probability per step"),
}


class TritonModelSettings(BaseSettings):
    """How Triton runs the OCR models; an OcrCluster's ``spec.triton`` maps onto these."""

    model_config = SettingsConfigDict(env_prefix="OCRFLEET_TRITON_", extra="ignore")

    max_batch_size: int = Field(8, ge=1, le=64, description="max_batch_size: the largest batch Triton forms.")
    max_queue_delay_us: int = Field(
        100_000, ge=0, description="max_queue_delay_us: how long a request may wait for others to batch with.")
    dynamic_batching: bool = Field(True, description="dynamic_batching: merge concurrent requests into batches.")
    instance_count: int = Field(1, ge=1, le=16, description="instance_count: model instances per device.")
    kind: Literal["cpu", "gpu"] = Field("cpu", description="kind: where instances run (KIND_CPU or KIND_GPU).")
    torch_threads: int = Field(1, ge=1, le=256, description="torch_threads: intra-op threads per instance.")
    models: str = Field("ppocr-v4", description="models: the model versions served side by side, comma-separated.")

    @property
    def device(self) -> str:
        return "cuda" if self.kind == "gpu" else "cpu"

    @field_validator("models")
    @classmethod
    def _known_versions(cls, value: str) -> str:
        from ocrfleet_worker.model.convert import model_version

        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names:
            raise ValueError("models names no model version; serve at least one")
        for name in names:
            model_version(name)  # an unknown name says which exist
        return ",".join(names)

    @property
    def versions(self) -> list:
        """The served :class:`~ocrfleet_worker.model.convert.ModelVersion` s, in Triton version order."""
        from ocrfleet_worker.model.convert import model_version

        served = {n: model_version(n) for n in self.models.split(",")}
        return sorted(served.values(), key=lambda v: v.triton_version)


def render_config(name: str, settings: TritonModelSettings) -> str:
    """One model's ``config.pbtxt``."""
    spec = MODELS[name]

    def dims(values: tuple[int, ...]) -> str:
        return ", ".join(str(v) for v in values)

    lines = [
        f"# {spec.about}",
        "# Rendered by ocrfleet_worker.triton_repository; edit the settings, not this file.",
        f'name: "{name}"',
        'backend: "python"',
        f"max_batch_size: {settings.max_batch_size}",
        f'input [ {{ name: "x", data_type: TYPE_{spec.input_type}, dims: [ {dims(spec.input_dims)} ] }} ]',
        f'output [ {{ name: "y", data_type: TYPE_{spec.output_type}, dims: [ {dims(spec.output_dims)} ] }} ]',
    ]
    served = ", ".join(str(v.triton_version) for v in settings.versions)
    lines.append(f"version_policy: {{ specific: {{ versions: [ {served} ] }} }}")
    if settings.dynamic_batching:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {settings.max_queue_delay_us} }}")
    lines += [
        f"instance_group [ {{ count: {settings.instance_count}, kind: KIND_{settings.kind.upper()} }} ]",
        f'parameters: {{ key: "role", value: {{ string_value: "{spec.role}" }} }}',
        f'parameters: {{ key: "torch_threads", value: {{ string_value: "{settings.torch_threads}" }} }}',
    ]
    return "\n".join(lines) + "\n"


def render_repository(out: Path, settings: TritonModelSettings | None = None, *, copy_weights: bool = False,
                      cache_root: Path | None = None) -> Path:
    """A servable repository under ``out``: configs, model code and the converted networks."""
    from ocrfleet_worker.model.convert import ensure_models

    settings = settings or TritonModelSettings()
    served = {v.triton_version: ensure_models(settings.device, root=cache_root, version=v.name)
              for v in settings.versions}
    out.mkdir(parents=True, exist_ok=True)
    for name, spec in MODELS.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / name / "config.pbtxt").write_text(render_config(name, settings))
        for number, files in served.items():
            version = out / name / str(number)
            version.mkdir(exist_ok=True)
            shutil.copyfile(SOURCE / MODEL_FILE, version / "model.py")
            target = version / f"model.{settings.device}.pt"
            target.unlink(missing_ok=True)
            if copy_weights:
                shutil.copyfile(files.module(spec.role), target)
            else:
                target.symlink_to(files.module(spec.role))
    return out


def _writable_cache(out: Path, settings: TritonModelSettings) -> Path | None:
    """The default model cache, or one in the output volume when the image's lacks the served
    versions' networks for the device and is read-only (the worker image carries the CPU
    networks; a GPU pod traces its own at start, into the models volume it renders)."""
    from ocrfleet_worker.model.convert import cache_root, cached_models

    root = cache_root()
    while not root.exists() and root != root.parent:
        root = root.parent
    complete = all(cached_models(settings.device, version=v.name).complete() for v in settings.versions)
    return None if complete or os.access(root, os.W_OK) else out / ".cache"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ocrfleet_worker.triton_repository",
                                     description="Render the OCR model repository for Triton.")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write a servable repository (defaults from OCRFLEET_TRITON_*)")
    render.add_argument("--out", type=Path, required=True)
    render.add_argument("--kind", choices=["cpu", "gpu"])
    render.add_argument("--max-batch-size", type=int)
    render.add_argument("--max-queue-delay-us", type=int)
    render.add_argument("--instance-count", type=int)
    render.add_argument("--torch-threads", type=int)
    render.add_argument("--models", help="model versions to serve, comma-separated (default: ppocr-v4)")
    render.add_argument("--no-dynamic-batching", action="store_true")
    render.add_argument("--copy-weights", action="store_true", help="copy the networks instead of linking the cache")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items()
                 if k in TritonModelSettings.model_fields and v is not None}
    if args.no_dynamic_batching:
        overrides["dynamic_batching"] = False
    settings = TritonModelSettings(**overrides)
    out = render_repository(args.out, settings, copy_weights=args.copy_weights,
                            cache_root=_writable_cache(args.out, settings))
    served = ", ".join(f"{v.name} as version {v.triton_version}" for v in settings.versions)
    print(f"rendered {', '.join(MODELS)} into {out} ({settings.kind}, max batch {settings.max_batch_size}; {served})")


if __name__ == "__main__":
    main()
