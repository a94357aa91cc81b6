"""The rendered children of an OcrCluster, checked by value."""

from __future__ import annotations

from ocrfleet_operator import builders
from ocrfleet_operator.builders import drifted

from ocrfleet import keys

from .conftest import make_cluster


def containers(deployment):
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_children_names_kinds_and_owner(cluster):
    children = builders.cluster_children(cluster)
    assert [(c["kind"], c["metadata"]["name"]) for c in children] == [
        ("StatefulSet", "pool-redis"),
        ("Service", "pool-redis"),
        ("StatefulSet", "pool-database"),
        ("Service", "pool-database"),
        ("StatefulSet", "pool-objects"),
        ("Service", "pool-objects"),
        ("Deployment", "pool-api"),
        ("Service", "pool-api"),
        ("Deployment", "pool-worker"),
        ("Service", "pool-worker-metrics"),
        ("HorizontalPodAutoscaler", "pool-worker"),
        ("PodDisruptionBudget", "pool-api"),
        ("PodDisruptionBudget", "pool-worker"),
        ("NetworkPolicy", "pool-api"),
        ("NetworkPolicy", "pool-worker"),
        ("NetworkPolicy", "pool-redis"),
        ("NetworkPolicy", "pool-database"),
        ("NetworkPolicy", "pool-objects"),
    ]
    for child in children:
        assert child["metadata"]["namespace"] == "ocr"
        assert child["metadata"]["ownerReferences"] == [{
            "apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrCluster", "name": "pool",
            "uid": "0000-uid", "controller": True, "blockOwnerDeletion": True,
        }]
        assert child["metadata"]["labels"]["ocrfleet.io/cluster"] == "pool"
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ocrfleet-operator"


def test_worker_pod_holds_worker_and_triton_with_one_gpu():
    dep = builders.worker_deployment(make_cluster({"workers": {"gpu": {"count": 1}}}))
    assert "replicas" not in dep["spec"], "the HPA owns replicas after creation"
    pod = dep["spec"]["template"]["spec"]
    c = containers(dep)
    assert list(c) == ["worker", "triton"]
    assert c["triton"]["resources"] == {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}
    assert c["triton"]["image"] == "ghcr.io/ocrfleet/worker:0.1.0", "Triton needs the model code"
    assert c["triton"]["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "triton-http"}
    assert "--strict-readiness=true" in c["triton"]["command"]
    assert c["worker"]["image"] == "ghcr.io/ocrfleet/worker:0.1.0"
    e = env(c["worker"])
    assert e["OCRFLEET_CLUSTER"] == "pool"
    assert e["OCRFLEET_CLUSTER_NAMESPACE"] == "ocr"
    assert e["OCRFLEET_TRITON_URL"] == "127.0.0.1:8001"
    assert e["OCRFLEET_CONSUMER_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert e["OCRFLEET_MAX_SIDE"] == "2048"
    init = env(pod["initContainers"][0])
    assert init["OCRFLEET_TRITON_MAX_BATCH_SIZE"] == "8"
    assert init["OCRFLEET_TRITON_MAX_QUEUE_DELAY_US"] == "100000"
    assert init["OCRFLEET_TRITON_KIND"] == "gpu"
    assert pod["terminationGracePeriodSeconds"] == 120
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in pod
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    # both containers wait for the worker's busy file before they stop
    for name in ("worker", "triton"):
        command = c[name]["lifecycle"]["preStop"]["exec"]["command"]
        assert "while [ -e /run/ocrfleet/busy ]" in command[-1]
    assert "touch /run/ocrfleet/drain" in c["worker"]["lifecycle"]["preStop"]["exec"]["command"][-1]
    assert pod["initContainers"][0]["command"][3:6] == ["render", "--out", "/models"]


def test_worker_spec_fields_flow_into_the_pod():
    cluster = make_cluster({
        "workers": {
            "image": "reg/worker:2", "gpu": {"count": 2}, "terminationGracePeriodSeconds": 600,
            "nodeSelector": {"nvidia.com/gpu.product": "A100"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ocr", "effect": "NoSchedule"}],
            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}},
        },
        "triton": {"maxBatchSize": 64},
        "redis": {"urlSecretRef": {"name": "redis"}},
        "database": {"urlSecretRef": {"name": "db", "key": "dsn"}},
        "storage": {"pvc": {"claimName": "docs", "subPath": "ocr"}},
    })
    dep = builders.worker_deployment(cluster, replicas=3)
    pod = dep["spec"]["template"]["spec"]
    c = containers(dep)
    assert dep["spec"]["replicas"] == 3
    assert pod["terminationGracePeriodSeconds"] == 600
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert [t["key"] for t in pod["tolerations"]] == ["dedicated", "nvidia.com/gpu"]
    assert c["triton"]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert c["worker"]["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}}
    e = env(c["worker"])
    assert e["OCRFLEET_REDIS_URL"] == {"secretKeyRef": {"name": "redis", "key": "url"}}
    assert e["OCRFLEET_DATABASE_URL"] == {"secretKeyRef": {"name": "db", "key": "dsn"}}
    assert env(pod["initContainers"][0])["OCRFLEET_TRITON_MAX_BATCH_SIZE"] == "64"
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "docs"}} in pod["volumes"]
    assert {"name": "data", "mountPath": "/data", "subPath": "ocr"} in c["worker"]["volumeMounts"]


def test_cpu_workers_ask_for_no_gpu_and_no_gpu_toleration():
    dep = builders.worker_deployment(make_cluster({"workers": {"gpu": {"count": 0}}}))
    pod = dep["spec"]["template"]["spec"]
    assert containers(dep)["triton"]["resources"] == {}
    assert env(pod["initContainers"][0])["OCRFLEET_TRITON_KIND"] == "cpu"
    assert "tolerations" not in pod


def test_hpa_scales_on_queue_depth_of_this_cluster(cluster):
    hpa = builders.worker_hpa(cluster)
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "pool-worker"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 4)
    assert spec["metrics"] == [{
        "type": "External",
        "external": {
            "metric": {"name": "ocrfleet_queue_depth", "selector": {"matchLabels": {"ocrfleet.io/cluster": "pool"}}},
            "target": {"type": "AverageValue", "averageValue": "8"},
        },
    }]
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_hpa_bounds_and_windows_follow_the_spec_and_never_go_below_one():
    hpa = builders.worker_hpa(make_cluster({"workers": {
        "minReplicas": 0, "maxReplicas": 20, "targetQueueDepthPerWorker": 32,
        "scaleUpStabilizationSeconds": 15, "scaleDownStabilizationSeconds": 60}}))
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 20)
    assert spec["metrics"][0]["external"]["target"]["averageValue"] == "32"
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 15
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60


def test_api_deployment_and_service(cluster):
    cluster["spec"]["api"]["authSecretRef"] = {"name": "signing", "key": "signingMasterKey"}
    dep = builders.api_deployment(cluster)
    svc = builders.api_service(cluster)
    c = containers(dep)["api"]
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"]["matchLabels"] == {"ocrfleet.io/cluster": "pool", "app.kubernetes.io/component": "api"}
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert env(c)["OCRFLEET_SIGNING_MASTER_KEY"] == {"secretKeyRef": {"name": "signing", "key": "signingMasterKey"}}
    assert env(c)["OCRFLEET_MAX_UPLOAD_BYTES"] == str(50 * 1024 * 1024)
    assert env(c)["OCRFLEET_PORT"] == "8080"
    assert (env(c)["OCRFLEET_RATE_LIMIT_REQUESTS"], env(c)["OCRFLEET_RATE_LIMIT_WINDOW_S"]) == ("600", "60")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert builders.api_endpoint(cluster) == "http://pool-api.ocr.svc:80"


def test_worker_pods_are_scraped_on_their_metrics_ports(cluster):
    dep = builders.worker_deployment(cluster)
    c = containers(dep)
    assert c["worker"]["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    assert env(c["worker"])["OCRFLEET_METRICS_PORT"] == "9400"
    assert {"name": "triton-metrics", "containerPort": 8002, "protocol": "TCP"} in c["triton"]["ports"]
    assert "--metrics-port=8002" in c["triton"]["command"]
    assert dep["spec"]["template"]["metadata"]["annotations"] == {"prometheus.io/scrape": "true",
                                                                  "prometheus.io/port": "9400"}
    svc = builders.worker_metrics_service(cluster)
    assert svc["metadata"]["name"] == "pool-worker-metrics"
    assert svc["spec"]["clusterIP"] == "None", "headless: one endpoint per worker pod"
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 9400, "targetPort": "metrics", "protocol": "TCP"},
        {"name": "triton-metrics", "port": 8002, "targetPort": "triton-metrics", "protocol": "TCP"}]


def test_api_and_workers_cap_documents_alike():
    cluster = make_cluster({"api": {"maxUploadBytes": 100 * 1024 * 1024}, "preprocessing": {"maxPages": 7}})
    api = env(containers(builders.api_deployment(cluster))["api"])
    worker = env(containers(builders.worker_deployment(cluster))["worker"])
    assert api["OCRFLEET_MAX_UPLOAD_BYTES"] == worker["OCRFLEET_MAX_BYTES"] == str(100 * 1024 * 1024)
    assert api["OCRFLEET_MAX_PDF_PAGES"] == worker["OCRFLEET_MAX_PAGES"] == "7"


def test_pdbs_allow_one_pod_down(cluster):
    for component in ("api", "worker"):
        pdb = builders.pdb(cluster, component)
        assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {
            "ocrfleet.io/cluster": "pool", "app.kubernetes.io/component": component}}}


def test_drift_ignores_server_defaults_but_sees_changes(cluster):
    desired = builders.worker_hpa(cluster)
    live = {**desired, "status": {"currentReplicas": 1}}
    live["metadata"] = {**desired["metadata"], "resourceVersion": "7", "uid": "x"}
    assert not drifted(desired, live)
    edited = {**live, "spec": {**live["spec"], "maxReplicas": 99}}
    assert drifted(desired, edited)
    assert drifted({"a": [1, 2]}, {"a": [1]})
    assert not drifted({"a": {"b": []}}, {"a": {}})
    assert drifted(desired, None)


def test_api_pods_follow_the_api_placement(cluster):
    placed = make_cluster({"api": {"nodeSelector": {"pool": "cpu"},
                                   "tolerations": [{"key": "dedicated", "operator": "Exists"}]}})
    pod = builders.api_deployment(placed)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "cpu"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    anywhere = builders.api_deployment(cluster)["spec"]["template"]["spec"]
    assert "nodeSelector" not in anywhere and "tolerations" not in anywhere


SPREAD = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
          "labelSelector": {"matchLabels": {"ocrfleet.io/cluster": "pool", "app.kubernetes.io/component": "worker"}}}
ANTI = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
    "topologyKey": "kubernetes.io/hostname",
    "labelSelector": {"matchLabels": {"ocrfleet.io/cluster": "pool", "app.kubernetes.io/component": "api"}}}}]}}


def test_platform_pod_knobs_reach_every_pod_of_the_pool():
    c = make_cluster({
        "pods": {"labels": {"cost-center": "loans", "team": "ocr"}, "annotations": {"sidecar.istio.io/inject": "false"},
                 "imagePullSecrets": [{"name": "mirror"}], "serviceAccountName": "ocr-identity"},
        "api": {"affinity": ANTI, "priorityClassName": "ocr-api"},
        "workers": {"topologySpreadConstraints": [SPREAD], "priorityClassName": "ocr-batch",
                    "gpu": {"count": 1}, "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
    })
    templates = {t["metadata"]["labels"]["app.kubernetes.io/component"]: t["spec"]["template"]
                 for t in builders.cluster_children(c) if "template" in t.get("spec", {})}
    assert set(templates) == {"api", "worker", "redis", "database", "objects"}
    for component, template in templates.items():
        meta, pod = template["metadata"], template["spec"]
        assert meta["labels"]["cost-center"] == "loans" and meta["labels"]["team"] == "ocr", component
        assert meta["labels"]["app.kubernetes.io/component"] == component  # the operator's labels stay
        assert meta["annotations"]["sidecar.istio.io/inject"] == "false", component
        assert pod["imagePullSecrets"] == [{"name": "mirror"}] and pod["serviceAccountName"] == "ocr-identity"
        assert pod["automountServiceAccountToken"] is False, component
    api, worker = templates["api"]["spec"], templates["worker"]["spec"]
    assert api["affinity"] == ANTI and api["priorityClassName"] == "ocr-api" and "topologySpreadConstraints" not in api
    assert worker["topologySpreadConstraints"] == [SPREAD] and worker["priorityClassName"] == "ocr-batch"
    assert "affinity" not in worker
    assert {"key": "dedicated", "operator": "Exists"} in worker["tolerations"]  # with the GPU taint's
    assert any(t.get("key") == "nvidia.com/gpu" for t in worker["tolerations"])
    assert templates["api"]["metadata"]["annotations"]["prometheus.io/port"] == str(builders.API_METRICS_PORT)


def test_a_pool_without_pod_knobs_renders_none_of_them(cluster):
    for child in builders.cluster_children(cluster):
        pod = child.get("spec", {}).get("template", {}).get("spec")
        if pod is not None:
            assert not {"imagePullSecrets", "serviceAccountName", "affinity", "topologySpreadConstraints",
                        "priorityClassName"} & set(pod), child["metadata"]["name"]


def test_every_container_runs_unprivileged_on_a_read_only_root_with_a_writable_tmp(cluster):
    for deployment in (builders.api_deployment(cluster), builders.worker_deployment(cluster)):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == builders.IMAGE_USER
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"] + pod.get("initContainers", []):
            security = c["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, c["name"]
            assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{c['name']} has no writable /tmp"
    triton = containers(builders.worker_deployment(cluster))["triton"]
    assert {"name": "shm", "mountPath": "/dev/shm"} in triton["volumeMounts"]


def test_the_pools_source_and_masking_rules_reach_the_api_and_the_workers():
    c = make_cluster({"sources": {"urlAllowlist": ["https://docs.example.com/inbox/"]}})
    api = env(containers(builders.api_deployment(c))["api"])
    worker = env(containers(builders.worker_deployment(c))["worker"])
    assert api["OCRFLEET_URL_FETCH_PREFIXES"] == worker["OCRFLEET_SOURCE_URL_ALLOWLIST"] == \
        '["https://docs.example.com/inbox/"]'
    assert api["OCRFLEET_MASK_DEFAULT"] == worker["OCRFLEET_MASK_DEFAULT"] == '["all"]', "masking is on by default"
    off = make_cluster({"masking": {"default": []}})
    assert env(containers(builders.api_deployment(off))["api"])["OCRFLEET_MASK_DEFAULT"] == "[]"


def test_every_pool_pod_is_hardened_and_reachable_only_as_needed(cluster):
    from ocrfleet_operator import policies

    children = builders.cluster_children(cluster)
    for where, spec in policies._pod_specs(children):
        assert spec["automountServiceAccountToken"] is False, f"{where} mounts a service-account token"
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["seccompProfile"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], where
    api = containers(builders.api_deployment(cluster))["api"]
    assert api["resources"]["limits"]["memory"], "the API container has a memory limit"
    netpols = {c["metadata"]["name"]: c["spec"] for c in children if c["kind"] == "NetworkPolicy"}
    assert netpols["pool-worker"]["ingress"] == [{"from": [{"namespaceSelector": {}}], "ports": [
        {"protocol": "TCP", "port": 9400}, {"protocol": "TCP", "port": 8002}]}], "workers: only scrapes, in-cluster"
    assert netpols["pool-api"]["ingress"][0] == {"ports": [{"protocol": "TCP", "port": 8080}]}
    assert netpols["pool-api"]["ingress"][1]["ports"] == [{"protocol": "TCP", "port": 9090}], "metrics, in-cluster"
    database = netpols["pool-database"]["ingress"][0]["from"]
    assert [f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for f in database] == ["api", "worker"]
    redis_from = netpols["pool-redis"]["ingress"][0]["from"]
    assert redis_from[-1]["podSelector"]["matchLabels"] == policies.OPERATOR_POD, "the operator enqueues jobs"


def test_a_pool_asking_for_an_image_or_toleration_outside_the_policy_is_refused():
    from ocrfleet_operator import policies

    rules = {"allowed_image_prefixes": ["ghcr.io/ocrfleet/", "docker.io/library/"],
             "allowed_toleration_keys": ["nvidia.com/gpu"]}
    assert policies.violations(builders.cluster_children(make_cluster({"storage": {"pvc": {"claimName": "d"}}})),
                               **rules) == []
    bad = make_cluster({"workers": {"image": "evil.example.com/miner:1",
                                    "tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                                     "operator": "Exists"}]},
                        "storage": {"pvc": {"claimName": "d"}}})
    found = policies.violations(builders.cluster_children(bad), **rules)
    assert any("evil.example.com/miner:1" in f for f in found)
    assert any("node-role.kubernetes.io/control-plane" in f for f in found)
    assert policies.violations(builders.cluster_children(bad)) == [], "no policy: anything goes"


def test_keda_mode_renders_a_scaled_object_over_the_queue_depth_rule_and_no_hpa():
    c = make_cluster({"workers": {"autoscaler": "keda", "minReplicas": 0, "maxReplicas": 12,
                                  "targetQueueDepthPerWorker": 20, "idleSecondsBeforeScaleToZero": 120}})
    kinds = {(x["kind"], x["metadata"]["name"]) for x in builders.cluster_children(c)}
    assert ("ScaledObject", "pool-worker") in kinds and ("TriggerAuthentication", "pool-worker") in kinds
    assert not any(k == "HorizontalPodAutoscaler" for k, _ in kinds)
    spec = builders.worker_scaled_object(c)["spec"]
    assert spec["scaleTargetRef"]["name"] == "pool-worker"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (0, 12, 120)
    streams = [t["metadata"]["stream"] for t in spec["triggers"]]
    assert streams == [keys.stream(keys.pool("ocr", "pool"), p) for p in keys.PRIORITIES]
    for t in spec["triggers"]:  # the stream's length: waiting + in flight, as queue.depth_from_replies counts
        assert t["type"] == "redis-streams" and t["metadata"]["streamLength"] == "20"
        assert t["metadata"]["address"] == "pool-redis.ocr.svc:6379"
        assert t["authenticationRef"] == {"name": "pool-worker"}
    modifiers = spec["advanced"]["scalingModifiers"]
    assert modifiers["formula"] == " + ".join(t["name"] for t in spec["triggers"])
    assert (modifiers["target"], modifiers["metricType"]) == ("20", "AverageValue")
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == \
        builders.worker_hpa(c)["spec"]["behavior"]
    [auth] = [x for x in builders.cluster_children(c) if x["kind"] == "TriggerAuthentication"]
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "password", "name": "pool-credentials",
                                                "key": "redis-password"}]
    assert builders.replaced_autoscaling(c) == [("HorizontalPodAutoscaler", "pool-worker")]


def test_keda_mode_with_an_external_redis_url_needs_no_authentication():
    c = make_cluster({"workers": {"autoscaler": "keda"}, "redis": {"url": "rediss://cache.example:6380/3"}})
    kinds = {x["kind"] for x in builders.cluster_children(c)}
    assert "TriggerAuthentication" not in kinds
    trigger = builders.worker_scaled_object(c)["spec"]["triggers"][0]
    assert "authenticationRef" not in trigger
    assert {k: trigger["metadata"][k] for k in ("address", "databaseIndex", "enableTLS")} == {
        "address": "cache.example:6380", "databaseIndex": "3", "enableTLS": "true"}
    managed = make_cluster({"workers": {"autoscaler": "keda"}})
    [redis_policy] = [x for x in builders.cluster_children(managed) if x["metadata"]["name"] == "pool-redis"
                      and x["kind"] == "NetworkPolicy"]
    peers = redis_policy["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "keda-operator"}}} in peers
    hpa = make_cluster()
    [hpa_policy] = [x for x in builders.cluster_children(hpa) if x["metadata"]["name"] == "pool-redis"
                    and x["kind"] == "NetworkPolicy"]
    assert len(hpa_policy["spec"]["ingress"][0]["from"]) == len(peers) - 1
    assert builders.replaced_autoscaling(hpa) == [("ScaledObject", "pool-worker"), ("TriggerAuthentication", "pool-worker")]
