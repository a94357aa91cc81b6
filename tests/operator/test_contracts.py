"""Contracts between what the operator renders and what the images really run.

For every container of every example cluster (plus a CPU variant with every optional field):

* each ``OCRFLEET_*`` variable it sets is a field of a settings class the container's program
  reads (found by introspecting the program's modules, ``model_fields`` and ``env_prefix``);
* its command is a real program: ``python -m`` a module that exists and has a ``main``, the
  interpreter the image's Dockerfile uses, the real ``tritonserver``'s flags, and the model
  renderer run for real with the container's arguments and variables;
* its probes hit paths that exist: the API's FastAPI routes, Triton's standard v2 health and
  model-ready paths for our models, on ports the program is told to listen on.

Renaming a setting, a module or a route on either side fails here.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ocrfleet_operator import builders
from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .conftest import ROOT, make_cluster

#: Triton's standard (KServe v2) HTTP health paths; model paths come from our repository.
TRITON_HEALTH_PATHS = {"/v2/health/live", "/v2/health/ready"}
FULL_CPU_SPEC = {
    "workers": {"gpu": {"count": 0}},
    "api": {"authSecretRef": {"name": "signing"}, "port": 9000},
    "redis": {"urlSecretRef": {"name": "redis"}},
    "database": {"urlSecretRef": {"name": "db"}},
    "storage": {"pvc": {"claimName": "docs"}},
    "preprocessing": {"maxSidePixels": 3000, "pdfDpi": 150, "maxPages": 20},
    "triton": {"maxBatchSize": 4, "maxQueueDelayMicroseconds": 0, "instanceCount": 2},
}


def example_clusters() -> dict[str, dict]:
    clusters = {}
    for path in sorted((ROOT / "examples").glob("ocrcluster-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "OcrCluster":
                clusters[path.stem] = make_cluster(doc.get("spec") or {}, name=doc["metadata"]["name"])
    clusters["cpu-every-option"] = make_cluster(FULL_CPU_SPEC, name="full")
    return clusters


def pods(cluster: dict) -> list[dict]:
    return [c["spec"]["template"]["spec"] for c in builders.cluster_children(cluster) if c["kind"] == "Deployment"]


def all_containers() -> list[tuple[str, dict, dict]]:
    """(id, container, pod spec) for every container and init container of every example."""
    out = []
    for example, cluster in example_clusters().items():
        for pod in pods(cluster):
            for c in pod.get("initContainers", []) + pod["containers"]:
                out.append((f"{example}/{c['name']}", c, pod))
    return out


CONTAINERS = all_containers()
IDS = [i for i, _, _ in CONTAINERS]


def env_values(container: dict) -> dict[str, str | None]:
    """The container's variables; those from Secrets or fields have no literal value (None)."""
    return {e["name"]: e.get("value") for e in container.get("env", [])}


# -- what a container runs ------------------------------------------------------------------


def python_module(container: dict) -> tuple[str, list[str]] | None:
    """``(module, args)`` for a ``python -m module args...`` command, else None."""
    command = container.get("command", []) + container.get("args", [])
    if len(command) >= 3 and re.fullmatch(r"python3?", command[0]) and command[1] == "-m":
        return command[2], command[3:]
    return None


def entry_modules(module: str) -> list:
    """The modules whose code ``python -m module`` runs: the module (or its ``__main__``'s imports)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"no module {module!r} in the image's code"
    if spec.submodule_search_locations is None:
        return [importlib.import_module(module)]
    main = importlib.util.find_spec(f"{module}.__main__")
    assert main is not None and main.origin, f"package {module!r} has no __main__ (python -m {module} fails)"
    tree = ast.parse(Path(main.origin).read_text())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return [importlib.import_module(n) for n in sorted(names)]


def runs_main(module: str) -> bool:
    """``python -m module`` calls a ``main()`` that it defines or imports (read, not run)."""
    spec = importlib.util.find_spec(module)
    if spec.submodule_search_locations is not None:
        spec = importlib.util.find_spec(f"{module}.__main__")
    tree = ast.parse(Path(spec.origin).read_text())
    has = any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body) or any(
        isinstance(n, ast.ImportFrom) and any(a.name == "main" for a in n.names) for n in tree.body)
    calls = any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "main" for n in ast.walk(tree))
    return has and calls


def settings_classes(module: str) -> list[type[BaseSettings]]:
    found = []
    for mod in entry_modules(module):
        for value in vars(mod).values():
            if inspect.isclass(value) and issubclass(value, BaseSettings) and value is not BaseSettings:
                found.append(value)
    return found


def env_names(settings: type[BaseModel]) -> set[str]:
    """The variables a settings class reads (pydantic-settings matches them case-insensitively)."""
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, AliasChoices):
            names |= {a.upper() for a in alias.choices if isinstance(a, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def unread(env: dict, classes: list[type[BaseModel]]) -> list[str]:
    read = set().union(*(env_names(c) for c in classes)) if classes else set()
    return sorted(n for n in env if n.startswith("OCRFLEET_") and n.upper() not in read)


def dockerfile_for(image: str) -> Path:
    """``ghcr.io/ocrfleet/worker:0.1.0`` -> ``worker-image/Dockerfile``."""
    name = image.rsplit("/", 1)[-1].split(":")[0]
    path = ROOT / f"{name}-image" / "Dockerfile"
    assert path.exists(), f"image {image!r} is built from no Dockerfile in this repository ({path})"
    return path


def dockerfile_interpreter(path: Path) -> str:
    cmd = re.search(r'^CMD \["([^"]+)"', path.read_text(), re.MULTILINE)
    assert cmd, f"{path} has no exec-form CMD"
    return cmd.group(1)


# -- (a) variables ----------------------------------------------------------------------------


def test_every_container_runs_a_known_program():
    for cid, container, _ in CONTAINERS:
        command = container.get("command") or []
        assert python_module(container) or command[:1] == ["tritonserver"], f"{cid}: unknown program {command}"


@pytest.mark.parametrize(("cid", "container", "pod"), CONTAINERS, ids=IDS)
def test_every_ocrfleet_variable_is_read_by_the_program(cid, container, pod):
    program = python_module(container)
    variables = env_values(container)
    if program is None:  # tritonserver reads no OCRFLEET_* variable
        assert not [n for n in variables if n.startswith("OCRFLEET_")], f"{cid}: tritonserver ignores them"
        return
    classes = settings_classes(program[0])
    assert classes, f"{cid}: python -m {program[0]} reads no settings class"
    assert unread(variables, classes) == [], (
        f"{cid}: variables no settings field of {[c.__name__ for c in classes]} reads")
    # literal values parse into the fields they name
    literal = {k.upper(): v for k, v in variables.items() if k.startswith("OCRFLEET_") and v is not None}
    for cls in classes:
        mine = {k: v for k, v in literal.items() if k in env_names(cls)}
        if mine:
            cls(**{_field_for(cls, k): v for k, v in mine.items()})


def _field_for(cls: type[BaseSettings], env: str) -> str:
    prefix = cls.model_config.get("env_prefix", "").upper()
    return env[len(prefix):].lower()


#: What a pod of a pool is told about where it is: its pool's name, its stores' addresses, its
#: files. Every other variable a pool that sets nothing renders is a default of the CRD.
WHERE_THE_POD_IS = {"OCRFLEET_CLUSTER", "OCRFLEET_CLUSTER_NAMESPACE", "OCRFLEET_REDIS_URL", "OCRFLEET_DATABASE_URL",
                    "OCRFLEET_BLOB_ROOT", "OCRFLEET_S3_ENDPOINT", "OCRFLEET_DRAIN_FILE", "OCRFLEET_BUSY_FILE"}


def test_a_pool_that_sets_nothing_runs_each_program_with_that_programs_own_defaults():
    """The CRD's defaults (max pages, max side, rate limit, Triton batching, ...) equal the
    settings' defaults, so a program behaves the same in a pool and outside one."""
    differ = []
    for pod in pods(make_cluster()):
        for container in pod.get("initContainers", []) + pod["containers"]:
            program = python_module(container)
            literal = {k: v for k, v in env_values(container).items()
                       if k.startswith("OCRFLEET_") and k not in WHERE_THE_POD_IS and v is not None}
            for cls in settings_classes(program[0]) if program else []:
                for var in sorted(literal.keys() & env_names(cls)):
                    field = _field_for(cls, var)
                    rendered = getattr(cls(**{field: literal[var]}), field)
                    default = cls.model_fields[field].get_default(call_default_factory=True)
                    if rendered != default:
                        differ.append(f"{container['name']}: {var}={literal[var]} but {cls.__name__}.{field} "
                                      f"defaults to {default!r}")
    assert differ == [], "the CRD's defaults and the programs' disagree (change one of them):\n" + "\n".join(differ)


def test_the_api_and_the_worker_cap_documents_alike_by_default():
    """What the API accepts, a worker decodes: outside a pool too (a pool sets both from its spec)."""
    from ocrfleet_api.settings import ApiSettings
    from ocrfleet_worker.settings import WorkerSettings

    api, worker = ApiSettings.model_fields, WorkerSettings.model_fields
    for api_field, worker_field in (("max_upload_bytes", "max_bytes"), ("max_pixels", "max_pixels"),
                                    ("max_pdf_pages", "max_pages")):
        assert api[api_field].default == worker[worker_field].default, (
            f"ApiSettings.{api_field} and WorkerSettings.{worker_field} default differently")


def test_the_check_sees_a_renamed_setting():
    class Renamed(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="OCRFLEET_")
        consumer: str = Field("w")  # was consumer_name

    worker = next(c for i, c, _ in CONTAINERS if i.endswith("/worker"))
    assert "OCRFLEET_CONSUMER_NAME" in unread(env_values(worker), [Renamed])


# -- (b) commands ---------------------------------------------------------------------------


@pytest.mark.parametrize(("cid", "container", "pod"), CONTAINERS, ids=IDS)
def test_command_is_what_the_image_offers(cid, container, pod):
    dockerfile = dockerfile_for(container["image"])
    program = python_module(container)
    if program is None:
        assert container["command"][0] == "tritonserver"
        assert "> /opt/venv/bin/tritonserver" in dockerfile.read_text(), (
            f"{cid}: {container['image']} installs no tritonserver command")
        return
    assert container["command"][0] == dockerfile_interpreter(dockerfile), (
        f"{cid}: the image runs {dockerfile_interpreter(dockerfile)}, not {container['command'][0]}")
    module, args = program
    assert runs_main(module), f"{cid}: python -m {module} defines or imports no main() and calls none"
    if args:
        help_run = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                                  timeout=120)
        assert help_run.returncode == 0 and "usage:" in help_run.stdout, (
            f"{cid}: {module} takes no command-line arguments but is given {args}")


def test_tritonserver_knows_every_flag_it_is_given():
    from ocrfleet_worker.triton_server import TritonPaths, server_environment

    paths = TritonPaths.find()
    run = subprocess.run([str(paths.binary), "--help"], env=server_environment(paths),
                         capture_output=True, text=True, timeout=60)
    known = set(re.findall(r"--[a-z][a-z0-9-]+", run.stdout + run.stderr))
    assert "--model-repository" in known, "could not read tritonserver's flags"
    for cid, container, _ in CONTAINERS:
        if python_module(container) is None:
            flags = {a.split("=", 1)[0] for a in container["command"][1:] if a.startswith("--")}
            assert flags <= known, f"{cid}: tritonserver has no {sorted(flags - known)}"


def test_the_model_renderer_runs_with_the_init_containers_arguments_and_variables(tmp_path):
    """The CPU example's init container, for real: its configs carry the cluster's numbers."""
    pod = pods(example_clusters()["cpu-every-option"])[1]
    init = pod["initContainers"][0]
    module, args = python_module(init)
    out = args[args.index("--out") + 1]
    assert out == builders.MODELS_DIR
    args[args.index("--out") + 1] = str(tmp_path / "models")
    env = {**_base_env(), **{k: v for k, v in env_values(init).items() if v is not None}}
    run = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    from ocrfleet_worker.triton_repository import MODELS

    for name in MODELS:
        config = (tmp_path / "models" / name / "config.pbtxt").read_text()
        assert "max_batch_size: 4" in config
        assert "max_queue_delay_microseconds: 0" in config
        assert "count: 2, kind: KIND_CPU" in config
        assert not (tmp_path / "models" / name / "1" / "model.cpu.pt").is_symlink(), "weights copied"
    triton = next(c for c in pod["containers"] if c["name"] == "triton")
    assert f"--model-repository={out}" in triton["command"]


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("OCRFLEET_")}


# -- (c) probes and ports --------------------------------------------------------------------


def _port(container: dict, name_or_number) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert name_or_number in ports, f"probe port {name_or_number!r} is not a port of {container['name']}"
    return ports[name_or_number]


def _probes(container: dict) -> list[tuple[str, int]]:
    return [(container[p]["httpGet"]["path"], _port(container, container[p]["httpGet"]["port"]))
            for p in ("startupProbe", "readinessProbe", "livenessProbe") if "httpGet" in container.get(p, {})]


def test_api_probes_hit_real_routes_on_the_port_it_listens_on():
    from ocrfleet_api.app import create_app
    from ocrfleet_api.settings import ApiSettings

    schema = create_app(ApiSettings()).openapi()
    routes = {path for path, operations in schema["paths"].items() if "get" in operations}
    for cid, container, _ in CONTAINERS:
        if python_module(container) and python_module(container)[0] == "ocrfleet_api":
            probes = _probes(container)
            assert probes, f"{cid}: no probes"
            listens = int(env_values(container)["OCRFLEET_PORT"])
            for path, port in probes:
                assert path in routes, f"{cid}: the API has no GET {path}"
                assert port == listens, f"{cid}: probe on {port}, the API listens on {listens}"


def test_triton_probes_are_v2_paths_for_our_models_on_its_http_port():
    from ocrfleet_worker.triton_repository import MODELS, SOURCE

    committed = {p.parent.name for p in SOURCE.glob("*/config.pbtxt")}
    assert committed == set(MODELS)
    allowed = TRITON_HEALTH_PATHS | {f"/v2/models/{m}/ready" for m in committed}
    for cid, container, pod in CONTAINERS:
        if python_module(container) is not None:
            continue
        flags = dict(a.split("=", 1) for a in container["command"][1:] if "=" in a)
        for path, port in _probes(container):
            assert path in allowed, f"{cid}: {path} is no Triton path for our models"
            assert port == int(flags["--http-port"]), f"{cid}: probe on {port}, Triton serves HTTP elsewhere"
        assert container["readinessProbe"]["httpGet"]["path"] != "/v2/health/live", "ready means models ready"
        assert flags.get("--strict-readiness") == "true", "/v2/health/ready must wait for every model"
        worker = next(c for c in pod["containers"] if python_module(c) and python_module(c)[0] == "ocrfleet_worker")
        assert env_values(worker)["OCRFLEET_TRITON_URL"].rsplit(":", 1)[1] == flags["--grpc-port"], (
            f"{cid}: the worker dials another gRPC port than Triton's")


def test_metrics_ports_are_where_the_programs_serve_them_and_the_services_name_them():
    from ocrfleet_worker.settings import WorkerSettings

    assert WorkerSettings.model_fields["metrics_port"].default == builders.WORKER_METRICS_PORT
    for cname, cluster in example_clusters().items():
        children = builders.cluster_children(cluster)
        for dep in (c for c in children if c["kind"] == "Deployment"):
            template = dep["spec"]["template"]
            scraped = (template["metadata"].get("annotations") or {}).get("prometheus.io/port")
            for container in template["spec"]["containers"]:
                ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
                if python_module(container):
                    values = env_values(container)
                    assert ("metrics" in ports) == ("OCRFLEET_METRICS_PORT" in values), (cname, container["name"])
                    if "metrics" in ports:
                        assert ports["metrics"] == int(values["OCRFLEET_METRICS_PORT"]), (cname, container["name"])
                        assert scraped == str(ports["metrics"]), f"{cname}: the pod is scraped elsewhere"
                elif "triton-metrics" in ports:
                    flags = dict(a.split("=", 1) for a in container["command"][1:] if "=" in a)
                    assert ports["triton-metrics"] == int(flags["--metrics-port"]), cname
        svc = next(c for c in children if c["metadata"]["name"] == builders.worker_metrics_name(
            cluster["metadata"]["name"]))
        pod = builders.worker_deployment(cluster)["spec"]["template"]
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        named = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= named, cname


def test_drain_and_busy_files_sit_on_a_volume_worker_and_triton_share():
    for cid, container, pod in CONTAINERS:
        if not (python_module(container) and python_module(container)[0] == "ocrfleet_worker"):
            continue
        triton = next(c for c in pod["containers"] if python_module(c) is None)
        shared = {m["mountPath"] for m in container["volumeMounts"]} & {m["mountPath"] for m in triton["volumeMounts"]}
        env = env_values(container)
        for var in ("OCRFLEET_DRAIN_FILE", "OCRFLEET_BUSY_FILE"):
            assert any(env[var].startswith(f"{m}/") for m in shared), f"{cid}: {var} is not on a shared volume"
        hook = shlex.join(container["lifecycle"]["preStop"]["exec"]["command"])
        assert env["OCRFLEET_DRAIN_FILE"] in hook and env["OCRFLEET_BUSY_FILE"] in hook
        assert env["OCRFLEET_BUSY_FILE"] in shlex.join(triton["lifecycle"]["preStop"]["exec"]["command"])
