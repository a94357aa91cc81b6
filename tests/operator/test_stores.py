"""A pool's shared state: managed by default, external when the spec names it."""

from __future__ import annotations

import base64

from ocrfleet_operator import builders, stores

from .conftest import make_cluster


def env(container) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def pod_env(cluster, component="worker") -> dict:
    deployment = builders.api_deployment(cluster) if component == "api" else builders.worker_deployment(cluster)
    return env(deployment["spec"]["template"]["spec"]["containers"][0])


def kinds(cluster) -> list[tuple[str, str]]:
    return [(c["kind"], c["metadata"]["name"]) for c in stores.managed_children(cluster)]


def test_a_pool_that_names_nothing_gets_redis_a_database_and_an_object_store_of_its_own(cluster):
    assert kinds(cluster) == [("StatefulSet", "pool-redis"), ("Service", "pool-redis"),
                              ("StatefulSet", "pool-database"), ("Service", "pool-database"),
                              ("StatefulSet", "pool-objects"), ("Service", "pool-objects")]
    e = pod_env(cluster)
    secret = {"secretKeyRef": {"name": "pool-credentials", "key": "redis-password"}}
    assert e["REDIS_PASSWORD"] == secret
    assert e["OCRFLEET_REDIS_URL"] == "redis://:$(REDIS_PASSWORD)@pool-redis.ocr.svc:6379/0"
    assert e["OCRFLEET_DATABASE_URL"] == (
        "postgresql+psycopg://ocrfleet:$(DATABASE_PASSWORD)@pool-database.ocr.svc:5432/ocrfleet")
    assert e["OCRFLEET_BLOB_ROOT"] == "s3://ocrfleet/blobs"
    assert e["OCRFLEET_S3_ENDPOINT"] == "http://pool-objects.ocr.svc:8333"
    names = [x["name"] for x in builders.worker_deployment(cluster)["spec"]["template"]["spec"]["containers"][0]["env"]]
    # Kubernetes expands $(VAR) only from variables defined earlier in the list
    assert names.index("REDIS_PASSWORD") < names.index("OCRFLEET_REDIS_URL")
    assert names.index("DATABASE_PASSWORD") < names.index("OCRFLEET_DATABASE_URL")
    assert pod_env(cluster, "api")["OCRFLEET_SIGNING_MASTER_KEY"] == {
        "secretKeyRef": {"name": "pool-credentials", "key": "signing-master-key"}}


def test_no_password_is_written_into_any_child(cluster):
    children = builders.cluster_children(cluster)
    text = repr(children)
    credentials = stores.new_credentials(cluster, token=lambda: "s3cr3t-value")
    assert "s3cr3t-value" in repr(credentials) and "s3cr3t-value" not in text


def test_the_credentials_are_random_per_pool_and_outlive_it(cluster):
    a, b = stores.new_credentials(cluster), stores.new_credentials(cluster)
    assert set(a["stringData"]) == set(stores.CREDENTIAL_KEYS)
    assert all(len(v) == 48 for v in a["stringData"].values())
    assert not set(a["stringData"].values()) & set(b["stringData"].values())
    assert "ownerReferences" not in a["metadata"], "the Secret stays with the stores' claims"


def test_external_stores_replace_the_managed_ones():
    cluster = make_cluster({
        "redis": {"urlSecretRef": {"name": "queue"}},
        "database": {"urlSecretRef": {"name": "results", "key": "dsn"}},
        "storage": {"objectStore": {"endpoint": "https://s3.example.internal", "bucket": "loan-docs",
                                    "credentialsSecretRef": {"name": "s3"}}},
    })
    assert kinds(cluster) == []
    e = pod_env(cluster)
    assert e["OCRFLEET_REDIS_URL"] == {"secretKeyRef": {"name": "queue", "key": "url"}}
    assert e["OCRFLEET_DATABASE_URL"] == {"secretKeyRef": {"name": "results", "key": "dsn"}}
    assert e["OCRFLEET_BLOB_ROOT"] == "s3://loan-docs/blobs"
    assert e["OCRFLEET_S3_ENDPOINT"] == "https://s3.example.internal"
    assert e["OCRFLEET_S3_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3", "key": "accessKeyId"}}
    assert "REDIS_PASSWORD" not in e and "DATABASE_PASSWORD" not in e


def test_a_readwritemany_claim_holds_the_documents_of_every_pod():
    cluster = make_cluster({"storage": {"pvc": {"claimName": "docs"}}})
    assert ("StatefulSet", "pool-objects") not in kinds(cluster)
    for deployment in (builders.api_deployment(cluster), builders.worker_deployment(cluster)):
        pod = deployment["spec"]["template"]["spec"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "docs"}} in pod["volumes"]
        assert {"name": "data", "mountPath": "/data"} in pod["containers"][0]["volumeMounts"]
        assert env(pod["containers"][0])["OCRFLEET_BLOB_ROOT"] == "/data/blobs"


def test_managed_stores_keep_their_data_on_a_claim_that_outlives_the_pool(cluster):
    for sts in (c for c in stores.managed_children(cluster) if c["kind"] == "StatefulSet"):
        spec = sts["spec"]
        assert spec["replicas"] == 1 and spec["serviceName"] == sts["metadata"]["name"]
        assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
        [claim] = spec["volumeClaimTemplates"]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        [container] = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        probe = container["readinessProbe"]
        assert (probe.get("tcpSocket") or probe.get("httpGet"))["port"] == container["ports"][0]["containerPort"]
    redis = next(c for c in stores.managed_children(cluster) if c["metadata"]["name"] == "pool-redis")
    command = redis["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


def test_store_sizes_images_and_classes_come_from_the_spec():
    cluster = make_cluster({"database": {"managed": {"size": "50Gi", "storageClassName": "fast",
                                                      "image": "registry.internal/postgres:15"}}})
    sts = next(c for c in stores.managed_children(cluster) if c["metadata"]["name"] == "pool-database")
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.internal/postgres:15"


def test_the_operator_reaches_a_managed_redis_with_the_password_from_the_secret(cluster):
    from ocrfleet_operator.runtime import Runtime

    class SecretsOnly:
        def get(self, kind, namespace, name):
            assert (kind, namespace, name) == ("Secret", "ocr", "pool-credentials")
            return {"data": {"redis-password": base64.b64encode(b"abc123").decode()}}

    rt = Runtime(settings=None, kube=SecretsOnly(), status=None)
    assert rt.redis_url(cluster) == "redis://:abc123@pool-redis.ocr.svc:6379/0"
