"""Contracts between the chart's operator Deployment and the operator it runs, rendered by helm.

The real ``helm template`` (helm built by e2e/tools/build.sh) renders the chart at the
repository root, with its default values and with its optional parts switched. For each:

* the container runs ``python -m ocrfleet_operator``;
* each ``OCRFLEET_*`` variable it sets is a field of a settings class that program reads
  (:class:`~ocrfleet_operator.settings.OperatorSettings`), and the values parse into those
  fields as the values file meant them;
* its ports and probes are the ones the operator listens on.

With the default values the chart runs the operator with the operator's own defaults, except
for the pool policy (the chart installs a strict one; the program alone allows any) and the
TLS files (where the pod mounts them). Renaming a setting or a value on either side fails here.
"""

from __future__ import annotations

import functools
import subprocess

import pytest
import yaml
from ocrfleet_operator.settings import OperatorSettings

from .conftest import ROOT
from .test_contracts import _field_for, env_values, python_module, settings_classes, unread

#: helm arguments of each rendering, and fields of the settings they must parse into.
VARIANTS = {
    "default values": ([], {"namespace": "", "metrics_port": 6443, "metrics_client_auth": True,
                            "allowed_toleration_keys": ["nvidia.com/gpu"]}),
    "one namespace, no metrics adapter": (
        ["--set", "watchNamespace=ocr", "--set", "metricsAdapter.enabled=false"],
        {"namespace": "ocr", "metrics_port": 0}),
    "every operator value set": (
        ["--set-json", 'operator={"reconcileIntervalSeconds": 2.5, "jobProgressIntervalSeconds": 1, '
         '"statusMinIntervalSeconds": 0, "watchServerTimeoutSeconds": 60, "watchClientTimeoutSeconds": 90, '
         '"logLevel": "DEBUG"}',
         "--set-json", 'pools={"allowedImagePrefixes": ["registry.example.com/"], "allowedTolerationKeys": [], '
         '"images": {"repository": "registry.example.com:5000/ocr", "tag": "0.2.0-rc1"}}',
         "--set-json", 'metricsAdapter={"port": 7443, "clientAuth": false, "tlsSecretName": "adapter-tls", '
         '"caBundle": "Y2E="}'],
        {"reconcile_interval": 2.5, "job_progress_interval": 1.0, "status_min_interval": 0.0,
         "watch_server_timeout": 60, "watch_client_timeout": 90, "log_level": "DEBUG",
         "allowed_image_prefixes": ["registry.example.com/"], "allowed_toleration_keys": [],
         "api_image": "registry.example.com:5000/ocr/api:0.2.0-rc1",
         "worker_image": "registry.example.com:5000/ocr/worker:0.2.0-rc1",
         "metrics_port": 7443, "metrics_client_auth": False,
         "metrics_tls_cert": "/etc/ocrfleet/metrics-tls/tls.crt", "metrics_tls_key": "/etc/ocrfleet/metrics-tls/tls.key"}),
}

#: Variables the chart sets to something else than the operator's default on purpose.
CHART_CHOICES = {"OCRFLEET_ALLOWED_IMAGE_PREFIXES", "OCRFLEET_ALLOWED_TOLERATION_KEYS",
                 "OCRFLEET_METRICS_TLS_CERT", "OCRFLEET_METRICS_TLS_KEY"}


@functools.cache
def helm() -> str:
    """The helm binary e2e/tools/build.sh builds (or finds cached); its build log when it cannot."""
    from e2e.cluster import build_tools

    return str(build_tools() / "helm")


@functools.cache
def operator_container(variant: str) -> dict:
    args, _ = VARIANTS[variant]
    run = subprocess.run([helm(), "template", "ocrfleet", str(ROOT), "--namespace", "ocrfleet-system", *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"helm template ({variant}) failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    [deployment] = [d for d in yaml.safe_load_all(run.stdout) if d and d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def operator_settings(container: dict) -> OperatorSettings:
    """The settings the container's literal ``OCRFLEET_*`` variables give the operator."""
    literal = {k: v for k, v in env_values(container).items() if k.startswith("OCRFLEET_") and v is not None}
    return OperatorSettings(**{_field_for(OperatorSettings, k): v for k, v in literal.items()})


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_ocrfleet_variable_of_the_chart_is_an_operator_setting_and_parses(variant):
    container = operator_container(variant)
    assert python_module(container) == ("ocrfleet_operator", []), (
        f"the chart runs {container.get('command')} {container.get('args')}")
    classes = settings_classes("ocrfleet_operator")
    assert OperatorSettings in classes
    variables = env_values(container)
    assert unread(variables, classes) == [], "variables of the chart that no operator setting reads"
    settings = operator_settings(container)
    _, expected = VARIANTS[variant]
    assert {name: getattr(settings, name) for name in expected} == expected


def test_the_charts_default_values_run_the_operator_with_its_own_defaults():
    container = operator_container("default values")
    settings = operator_settings(container)
    differ = []
    for var in sorted(set(env_values(container)) - CHART_CHOICES):
        field = _field_for(OperatorSettings, var)
        default = OperatorSettings.model_fields[field].get_default(call_default_factory=True)
        if getattr(settings, field) != default:
            differ.append(f"{var}: the chart says {getattr(settings, field)!r}, the operator {default!r}")
    assert differ == [], "values.yaml and OperatorSettings disagree (change one of them):\n" + "\n".join(differ)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_charts_ports_and_probes_are_where_the_operator_listens(variant):
    container = operator_container(variant)
    settings = operator_settings(container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["healthz"] == settings.liveness_port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    if settings.metrics_port:
        assert ports["metrics-api"] == settings.metrics_port
    else:
        assert "metrics-api" not in ports
    assert ports["metrics"] == settings.prometheus_port, "the operator's own Prometheus port"
    assert len(set(ports.values())) == len(ports), f"two ports share a number: {ports}"
