"""ocrfleet's Prometheus rules, dashboard and monitors: unit-tested by promtool, tied to the pods.

* ``promtool check rules`` and ``promtool test rules`` (Debian's ``prometheus`` package) pass over
  ``monitoring/rules.yaml``, and every alert has a case where it fires and one where it stays
  silent;
* the chart's PrometheusRule and dashboard ConfigMap carry those files unchanged;
* the PodMonitor selects the API and worker pods the operator renders (and no store pod), on
  ports those pods' containers declare; the ServiceMonitor's port is one of the operator's
  metrics Service.

The real-node e2e (``e2e/test_real_main_job.py``) scrapes a running pool with these selectors.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess

import pytest
import yaml
from ocrfleet_operator import builders

from .conftest import ROOT, make_cluster
from .test_chart import helm

MONITORING = ROOT / "monitoring"
ALL_ON = ["--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.podMonitor.enabled=true",
          "--set", "monitoring.rules.enabled=true", "--set", "monitoring.dashboard.enabled=true"]


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool not found: it comes with Debian's prometheus package (make system installs it)"
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=MONITORING, timeout=120)


def test_the_rules_pass_promtool_check_and_their_unit_tests():
    check = promtool("check", "rules", "rules.yaml")
    assert check.returncode == 0, check.stdout + check.stderr
    tested = promtool("test", "rules", "rules_test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_firing_and_a_silent_case():
    rules = yaml.safe_load((MONITORING / "rules.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    cases = [c for t in yaml.safe_load((MONITORING / "rules_test.yaml").read_text())["tests"]
             for c in t.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alerts == firing, f"alerts without a firing case: {alerts - firing}; cases of no alert: {firing - alerts}"
    assert alerts == silent, f"alerts without a silent case: {alerts - silent}"
    assert len(alerts) == 8


@functools.cache
def rendered(*args: str) -> dict[str, dict]:
    run = subprocess.run([helm(), "template", "ocrfleet", str(ROOT), "--namespace", "ocrfleet-system", *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-4000:]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(run.stdout) if d}


def test_monitoring_objects_are_opt_in():
    kinds = {key.split("/")[0] for key in rendered()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert "ConfigMap/ocrfleet-dashboard" not in rendered()


def test_the_chart_ships_the_rules_and_the_dashboard_unchanged():
    objects = rendered(*ALL_ON, "--set", "monitoring.labels.release=prom")
    rule = objects["PrometheusRule/ocrfleet"]
    assert rule["spec"] == yaml.safe_load((MONITORING / "rules.yaml").read_text())
    assert rule["metadata"]["labels"]["release"] == "prom"
    dashboard = objects["ConfigMap/ocrfleet-dashboard"]
    assert json.loads(dashboard["data"]["ocrfleet.json"]) == json.loads((MONITORING / "dashboard.json").read_text())
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions with In/NotIn/Exists)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        value, op = labels.get(e["key"]), e["operator"]
        if (op == "In" and value not in e["values"]) or (op == "NotIn" and value in e["values"]) \
                or (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True


def test_the_pod_monitor_scrapes_every_api_and_worker_pod_on_ports_they_declare():
    monitor = rendered(*ALL_ON)["PodMonitor/ocrfleet-pools"]["spec"]
    assert monitor["namespaceSelector"] == {"any": True}
    ports = {e["port"] for e in monitor["podMetricsEndpoints"]}
    cluster = make_cluster({"workers": {"gpu": {"count": 1}}}, name="gpu-a")
    templates = {c["metadata"]["labels"][builders.COMPONENT_LABEL]: c["spec"]["template"]
                 for c in builders.cluster_children(cluster) if "template" in c.get("spec", {})}
    scraped = {component for component, t in templates.items() if selects(monitor["selector"], t["metadata"]["labels"])}
    assert scraped == {"api", "worker"}, templates.keys()
    declared = {component: {p["name"] for c in templates[component]["spec"]["containers"] for p in c.get("ports", [])}
                for component in scraped}
    assert declared["api"] & ports == {"metrics"}
    assert declared["worker"] & ports == {"metrics", "triton-metrics"}
    for endpoint in monitor["podMetricsEndpoints"]:
        assert {"sourceLabels": ["__meta_kubernetes_pod_label_ocrfleet_io_cluster"], "targetLabel": "pool"} \
            in endpoint["relabelings"]
    assert rendered(*ALL_ON, "--set", "watchNamespace=ocr")["PodMonitor/ocrfleet-pools"]["spec"][
        "namespaceSelector"] == {"matchNames": ["ocr"]}


@pytest.mark.parametrize("adapter", ["true", "false"])
def test_the_service_monitor_scrapes_the_operator_metrics_port(adapter):
    objects = rendered(*ALL_ON, "--set", f"metricsAdapter.enabled={adapter}")
    monitor = objects["ServiceMonitor/ocrfleet-operator"]["spec"]
    service = objects["Service/ocrfleet-metrics"]
    assert selects(monitor["selector"], service["metadata"]["labels"])
    [endpoint] = monitor["endpoints"]
    assert endpoint["honorLabels"] is True  # the operator's series name their pool's namespace
    [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    [deployment] = [d for d in objects.values() if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [declared] = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OCRFLEET_PROMETHEUS_PORT"] == str(declared["containerPort"])
