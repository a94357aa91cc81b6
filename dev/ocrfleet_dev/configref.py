"""The configuration reference: every ``OCRFLEET_*`` variable of every program, generated::

    python -m ocrfleet_dev.configref > docs/configuration.md

One table per program, from its settings class (the same fields, defaults and descriptions
``python -m <program> --help`` prints through :func:`ocrfleet.settings.describe`): the
variable, its default (a secret's is not shown), who sets it where ocrfleet is installed, and
what it does. Who sets it is read from the code, not written down: for a pool's programs the
variables the operator renders into the pods of an OcrCluster (:mod:`ocrfleet_operator.builders`
over the CRD's defaults, with each storage choice), for the operator the variables the chart's
Deployment sets and the values they come from (``templates/deployment.yaml``).
``tests/test_configuration_doc.py`` fails when ``docs/configuration.md`` differs from this
module's output.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ocrfleet_api.settings import ApiSettings
from ocrfleet_operator import builders, images
from ocrfleet_operator.settings import OperatorSettings
from ocrfleet_worker.settings import WorkerSettings
from ocrfleet_worker.triton_repository import TritonModelSettings
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from ocrfleet_dev.kubeobjects import defaulted

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = "docs/configuration.md"
COMMAND = f"python -m ocrfleet_dev.configref > {OUTPUT}"
OPERATOR_DEPLOYMENT = ROOT / "templates" / "deployment.yaml"

#: Specs whose pods, together, carry every variable the operator renders: managed stores, a
#: documents claim, an external object store and external Redis and database URLs.
POOL_VARIANTS: tuple[dict, ...] = (
    {},
    {"storage": {"pvc": {"claimName": "documents"}}},
    {"storage": {"objectStore": {"endpoint": "https://s3.example", "bucket": "docs",
                                 "credentialsSecretRef": {"name": "s3"}}},
     "redis": {"urlSecretRef": {"name": "redis", "key": "url"}},
     "database": {"urlSecretRef": {"name": "database", "key": "url"}}},
)


@dataclass(frozen=True)
class Program:
    command: str
    module: str
    """The ``python -m`` module its containers run."""
    settings: type[BaseSettings]
    about: str


PROGRAMS = (
    Program("python -m ocrfleet_operator", "ocrfleet_operator", OperatorSettings,
            "The operator: reconciles OcrClusters and OcrJobs and serves each pool's queue depth to its "
            "HorizontalPodAutoscaler. One Deployment, installed by the chart. It reads each pool's stores "
            "from the pool's OcrCluster, not from the shared settings it inherits (`OCRFLEET_CLUSTER` to "
            "`OCRFLEET_CLAIM_IDLE_MS`), of which it uses `OCRFLEET_MAX_ATTEMPTS` only."),
    Program("python -m ocrfleet_api", "ocrfleet_api", ApiSettings,
            "The HTTP API of a pool (Deployment NAME-api): tenants submit documents and read results. "
            "`python -m ocrfleet_api.admin` (tenants and API keys) reads the same settings; it needs "
            "`OCRFLEET_DATABASE_URL` and `OCRFLEET_SIGNING_MASTER_KEY`, which an API pod has."),
    Program("python -m ocrfleet_worker", "ocrfleet_worker", WorkerSettings,
            "The queue consumer of a pool's worker pods (Deployment NAME-worker): takes documents from the "
            "pool's queue, reads them through the Triton container beside it, stores their results."),
    Program("python -m ocrfleet_worker.triton_repository render", "ocrfleet_worker.triton_repository",
            TritonModelSettings,
            "The worker pod's init container: renders the Triton model repository the Triton container "
            "serves. Its `render` flags (`--max-batch-size`, `--kind`, ...) override these variables; its "
            "`--help` lists the flags, not the variables."),
)


# -- the settings ----------------------------------------------------------------------------


def variable(settings: type[BaseSettings], name: str) -> str:
    return f"{settings.model_config.get('env_prefix', '')}{name}".upper()


def default_text(field: FieldInfo) -> str:
    """The default as ``--help`` shows it; a secret's only as "not shown", and a default computed
    when the program starts (from its host, say) as such, since it differs from one run to the next."""
    factory = field.default_factory
    if factory is not None and not (inspect.isclass(factory) or factory.__name__ == "<lambda>"):
        return "*computed at start*"
    default = field.get_default(call_default_factory=True)
    if isinstance(default, SecretStr):
        return "*(a secret: not shown)*" if default.get_secret_value() else '`""`'
    shown = default if isinstance(default, str) else json.dumps(default, default=str)
    return _code(shown) if shown != "" else '`""`'


def description(name: str, field: FieldInfo) -> str:
    return (field.description or "").removeprefix(f"{name}: ")


# -- who sets them ---------------------------------------------------------------------------


def pool(spec: Mapping) -> dict:
    """An OcrCluster with ``spec`` as the API server keeps it (the CRD's defaults applied)."""
    return defaulted({"apiVersion": f"{builders.GROUP}/{builders.VERSION}", "kind": "OcrCluster",
                      "metadata": {"name": "NAME", "namespace": "NAMESPACE", "uid": "uid", "generation": 1},
                      "spec": copy.deepcopy(dict(spec))}, "ocrclusters")


def _containers(cluster: Mapping) -> Iterable[dict]:
    for child in builders.cluster_children(images.with_defaults(cluster, OperatorSettings())):
        if child["kind"] == "Deployment":
            pod = child["spec"]["template"]["spec"]
            yield from pod.get("initContainers", []) + pod["containers"]


def _module(container: Mapping) -> str | None:
    command = list(container.get("command") or []) + list(container.get("args") or [])
    if len(command) >= 3 and re.fullmatch(r"python3?", command[0]) and command[1] == "-m":
        return command[2]
    return None


def rendered_by_operator() -> dict[str, set[str]]:
    """Per ``python -m`` module, the variables the operator sets in some pool's pods."""
    found: dict[str, set[str]] = {}
    for spec in POOL_VARIANTS:
        for container in _containers(pool(spec)):
            module = _module(container)
            if module:
                found.setdefault(module, set()).update(e["name"] for e in container.get("env", []))
    return found


_ENV_ITEM = re.compile(r"^\s*- name: (OCRFLEET_[A-Z0-9_]+)\s*\n\s*value: (.*)$", re.MULTILINE)
_VALUE_PATH = re.compile(r"\.Values\.([A-Za-z0-9_.]+)")


def set_by_chart() -> dict[str, str]:
    """The operator Deployment's variables (templates/deployment.yaml): each one's chart value."""
    out = {}
    for name, value in _ENV_ITEM.findall(OPERATOR_DEPLOYMENT.read_text()):
        paths = _VALUE_PATH.findall(value)
        out[name] = f"chart value {_code(paths[0])}" if paths else "the chart"
    return out


# -- rendering -------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def _code(value: str) -> str:
    value = " ".join(str(value).split()).replace("|", "\\|")
    return f"`` {value} ``" if "`" in value else f"`{value}`"


def _anchor(command: str) -> str:
    """GitHub's heading anchor: lowercase; letters, digits, '-' and '_' kept; spaces to '-'."""
    return re.sub(r"[^a-z0-9 _-]", "", command.lower()).replace(" ", "-")


INTRO = f"""\
# Configuration reference

<!-- Generated from the settings classes by `{COMMAND}`; do not edit by hand.
     tests/test_configuration_doc.py fails when this file is out of date. -->

Every ocrfleet program reads its settings once, when it starts, from environment variables
(prefix `OCRFLEET_`; a list is a JSON list or comma-separated values). In Kubernetes you do not
set them yourself:

- **A pool's programs** (the API, the worker and the model renderer) get what the operator
  renders into the pods of an OcrCluster, from its spec and from where the pod runs (the pool's
  name, its stores' addresses, the Secrets holding their credentials); the spec's fields are in
  [docs/api-reference.md](api-reference.md). The column *set by* marks the variables the operator
  renders (some only for some pools: `OCRFLEET_S3_REGION` only with an external object store,
  `OCRFLEET_SOURCE_VOLUME_ROOT` only with a documents claim). The others keep the defaults shown
  here: the OcrCluster has no field for them.
- **The operator** gets its variables from the chart: the column *set by* names the chart value
  each comes from (see the README's [chart values](../README.md#chart-values) table); the others
  keep their defaults.

`python -m <program> --help` prints the same variables with their defaults and descriptions
(a default computed at start as computed on that machine), and `--version` its version.
A secret's default is not shown.
"""


def render() -> str:
    operator_env = rendered_by_operator()
    chart_env = set_by_chart()
    out = [INTRO]
    out += [f"- [`{p.command}`](#{_anchor(p.command)})" for p in PROGRAMS]
    out.append("")
    for program in PROGRAMS:
        settings = program.settings
        source = Path(inspect.getfile(settings)).resolve().relative_to(ROOT)
        out += [f"## {program.command}", "", program.about, "",
                f"Settings class `{settings.__name__}` ({_code(str(source))}).", "",
                "| variable | default | set by | description |", "|---|---|---|---|"]
        for name, field in settings.model_fields.items():
            var = variable(settings, name)
            if program.module == "ocrfleet_operator":
                who = chart_env.get(var, "")
            else:
                who = "the operator" if var in operator_env.get(program.module, set()) else ""
            out.append(f"| `{var}` | {default_text(field)} | {who} | {_cell(description(name, field))} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        help_asked = args[0] in ("-h", "--help")
        print(f"usage: {COMMAND}", file=sys.stdout if help_asked else sys.stderr)
        return 0 if help_asked else 2
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
