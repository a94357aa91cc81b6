"""The repository root is a Helm chart that lints, renders and installs into a real API server."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def helm(cluster, *args: str) -> str:
    proc = subprocess.run([str(cluster.helm), f"--kubeconfig={cluster.kubeconfig_path}", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_chart_lints_and_renders(kind_cluster):
    out = helm(kind_cluster, "lint", str(ROOT), "--strict")
    assert "0 chart(s) failed" in out
    rendered = [d for d in yaml.safe_load_all(helm(kind_cluster, "template", "ocrfleet", str(ROOT),
                                                   "--namespace", "ocrfleet-system", "--include-crds")) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    assert ("CustomResourceDefinition", "ocrclusters.ocrfleet.io") in kinds
    assert ("CustomResourceDefinition", "ocrjobs.ocrfleet.io") in kinds
    assert any(k == "Deployment" for k, _ in kinds)
    # the aggregator always verifies the adapter: a CA in the APIService, the cert it signed in a Secret
    [apiservice] = [d for d in rendered if d["kind"] == "APIService"]
    [tls] = [d for d in rendered if d["kind"] == "Secret" and d["type"] == "kubernetes.io/tls"]
    assert "insecureSkipTLSVerify" not in apiservice["spec"]
    assert apiservice["spec"]["caBundle"] == tls["data"]["ca.crt"]
    _assert_signed_for(tls, "ocrfleet-metrics.ocrfleet-system.svc")
    failed = subprocess.run([str(kind_cluster.helm), "template", "x", str(ROOT), "--set", "metricsAdapter.tlsSecretName=mine"],
                            capture_output=True, text=True, cwd=ROOT)
    assert failed.returncode != 0 and "needs metricsAdapter.caBundle" in failed.stderr
    # `helm show readme` prints the README with its values table
    readme = helm(kind_cluster, "show", "readme", str(ROOT))
    assert readme.startswith("# ocrfleet") and "| `rbac.aggregateToDefaultRoles` |" in readme
    # the package holds the chart, not the Python sources next to it
    package = subprocess.run([str(kind_cluster.helm), "package", str(ROOT), "-d", "/tmp"],
                             capture_output=True, text=True, check=True).stdout.split(":")[-1].strip()
    listing = subprocess.run(["tar", "tzf", package], capture_output=True, text=True, check=True).stdout
    Path(package).unlink()
    assert "ocrfleet/Chart.yaml" in listing and "ocrfleet/crds/" in listing
    assert not any(part in listing for part in ("/operator/", "/tests/", "/api-image/", "/argocd/", "/dev/", ".py\n"))
    assert [line for line in listing.splitlines() if "/." in line] == []  # no caches or dotfiles


def test_chart_installs_into_the_cluster(kind_cluster):
    helm(kind_cluster, "install", "ocrfleet", str(ROOT), "--namespace", "ocrfleet-system", "--create-namespace",
         "--wait", "--timeout", "120s")
    try:
        crds = json.loads(kind_cluster.kubectl("get", "crd", "-o", "json"))["items"]
        names = {c["metadata"]["name"] for c in crds}
        assert {"ocrclusters.ocrfleet.io", "ocrjobs.ocrfleet.io"} <= names
        status = json.loads(helm(kind_cluster, "status", "ocrfleet", "-n", "ocrfleet-system", "-o", "json"))
        assert status["info"]["status"] == "deployed"
        # the generated certificate is kept across upgrades (lookup), so the APIService stays trusted
        def certificate():
            secret = json.loads(kind_cluster.kubectl("get", "secret", "ocrfleet-metrics-tls", "-n", "ocrfleet-system",
                                                     "-o", "json"))
            ca = json.loads(kind_cluster.kubectl("get", "apiservice", "v1beta1.external.metrics.k8s.io", "-o",
                                                 "json"))["spec"]["caBundle"]
            return secret["data"]["tls.crt"], secret["data"]["ca.crt"], ca

        before = certificate()
        assert before[1] == before[2]
        helm(kind_cluster, "upgrade", "ocrfleet", str(ROOT), "--namespace", "ocrfleet-system", "--reuse-values")
        assert certificate() == before
        _users_bound_to_the_built_in_roles_use_both_kinds(kind_cluster)
    finally:
        helm(kind_cluster, "uninstall", "ocrfleet", "-n", "ocrfleet-system", "--wait")


def _users_bound_to_the_built_in_roles_use_both_kinds(cluster) -> None:
    """A user bound to the built-in `edit` role in a namespace applies an OcrJob there (and nowhere
    else); one bound to `view` reads it and cannot change it."""
    for ns in ("team-loans", "team-other"):
        cluster.kubectl("create", "namespace", ns, check=False)
    cluster.kubectl("create", "rolebinding", "jane-edits", "--clusterrole=edit", "--user=jane", "-n", "team-loans")
    cluster.kubectl("create", "rolebinding", "vic-views", "--clusterrole=view", "--user=vic", "-n", "team-loans")
    job = (ROOT / "examples" / "ocrjob-urls.yaml").read_text()
    try:
        deadline = time.monotonic() + 60  # the aggregation controller folds the chart's rules in
        while cluster.kubectl("auth", "can-i", "create", "ocrjobs.ocrfleet.io", "-n", "team-loans", "--as=jane",
                              check=False).strip() != "yes":
            assert time.monotonic() < deadline, cluster.kubectl("get", "clusterrole", "edit", "-o", "yaml")
            time.sleep(1)
        out = cluster.kubectl("apply", "-f", "-", "-n", "team-loans", "--as=jane", input=job)
        assert "ocrjob.ocrfleet.io/id-cards-batch created" in out
        assert "id-cards-batch" in cluster.kubectl("get", "ocrjobs", "-n", "team-loans", "--as=vic")
        refused = subprocess.run([cluster.kubectl_path, f"--kubeconfig={cluster.kubeconfig_path}", "apply", "-f", "-",
                                  "-n", "team-other", "--as=jane"], input=job, capture_output=True, text=True)
        assert refused.returncode != 0 and "forbidden" in refused.stderr, refused.stderr
        refused = subprocess.run([cluster.kubectl_path, f"--kubeconfig={cluster.kubeconfig_path}", "delete", "ocrjob",
                                  "id-cards-batch", "-n", "team-loans", "--as=vic"], capture_output=True, text=True)
        assert refused.returncode != 0 and "forbidden" in refused.stderr, refused.stderr
        assert cluster.kubectl("auth", "can-i", "patch", "ocrjobs.ocrfleet.io", "--subresource=status",
                               "-n", "team-loans", "--as=jane", check=False).strip() == "no", \
            "status has one writer: the operator"
    finally:
        for ns in ("team-loans", "team-other"):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        # no operator may be running here to release its finalizer
        cluster.kubectl("patch", "ocrjob", "id-cards-batch", "-n", "team-loans", "--type=merge",
                        "-p", '{"metadata":{"finalizers":null}}', check=False)


def _assert_signed_for(secret: dict, dns: str) -> None:
    import base64

    from cryptography import x509

    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert.verify_directly_issued_by(ca)
    assert dns in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)


def test_with_watch_namespace_the_operator_can_touch_nothing_elsewhere(kind_cluster):
    """RBAC is a Role in the watched namespace: the operator's service account may read Secrets
    and create Deployments there, nowhere else, and delete no Deployment anywhere."""
    kind_cluster.kubectl("create", "namespace", "loans-pools", check=False)
    helm(kind_cluster, "install", "scoped", str(ROOT), "--namespace", "scoped-system", "--create-namespace",
         "--set", "watchNamespace=loans-pools", "--set", "metricsAdapter.registerAPIService=false")
    account = "system:serviceaccount:scoped-system:scoped-ocrfleet"

    def can(verb: str, resource: str, namespace: str) -> bool:
        resource, _, sub = resource.partition("/")  # TYPE/status: the subresource (not an object named status)
        out = kind_cluster.kubectl("auth", "can-i", verb, resource, *([f"--subresource={sub}"] if sub else []),
                                   "-n", namespace, f"--as={account}", check=False)
        return out.strip() == "yes"

    try:
        assert can("get", "secrets", "loans-pools") and can("create", "deployments", "loans-pools")
        assert can("patch", "ocrclusters.ocrfleet.io/status", "loans-pools")
        assert not can("patch", "ocrclusters.ocrfleet.io/status", "default")
        assert not can("get", "secrets", "kube-system") and not can("get", "secrets", "default")
        assert not can("create", "deployments", "default") and not can("list", "pods", "default")
        assert not can("delete", "deployments", "loans-pools"), "children go with their owner, never by hand"
        assert not can("update", "deployments", "loans-pools") and not can("delete", "secrets", "loans-pools")
        assert can("get", "customresourcedefinitions.apiextensions.k8s.io", "default")
    finally:
        helm(kind_cluster, "uninstall", "scoped", "-n", "scoped-system", "--wait")
