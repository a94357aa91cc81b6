"""Pure builders of a pool's shared state: its Redis, its results database, its document store.

Each of the three is either *external* (the spec names it: a URL in a Secret, a bucket, a
ReadWriteMany claim) or *managed*: the operator runs it for the pool as a one-replica
StatefulSet with its data on a PVC, behind a Service of the same name. Managed is what a pool
gets when its spec names nothing, so ``spec: {}`` works on any cluster with a default
StorageClass. Managed stores authenticate with random credentials the operator writes once
into the pool's Secret ``NAME-credentials`` (:func:`new_credentials`; never rewritten).
Like :mod:`.builders`, every function reads the cluster as the API server returns it, with
the CRD's defaults applied.

========================  =====================================================================
``NAME-redis``            StatefulSet and Service: the queue and counters (AOF on a PVC)
``NAME-database``         StatefulSet and Service: PostgreSQL, the results store
``NAME-objects``          StatefulSet and Service: SeaweedFS, the S3-compatible document store
``NAME-credentials``      Secret: the managed stores' passwords, the API's signing master key
========================  =====================================================================

The commands are written so that both the public images (the CRD's defaults) and the images
built here from Debian packages (``e2e/images.py``) run them unchanged.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ocrfleet_operator import pods
from ocrfleet_operator.meta import labels, metadata, selector_labels

Manifest = dict[str, Any]

REDIS_PORT = 6379
POSTGRES_PORT = 5432
S3_PORT = 8333
DATABASE_NAME = "ocrfleet"
DATABASE_USER = "ocrfleet"
BUCKET = "ocrfleet"
#: The uid the public Redis and PostgreSQL images run their server as (and the local builds too).
STORE_USER = 999

#: Keys of the pool's credentials Secret.
REDIS_PASSWORD = "redis-password"
DATABASE_PASSWORD = "database-password"
S3_ACCESS_KEY = "s3-access-key"
S3_SECRET_KEY = "s3-secret-key"
SIGNING_MASTER_KEY = "signing-master-key"
CREDENTIAL_KEYS = (REDIS_PASSWORD, DATABASE_PASSWORD, S3_ACCESS_KEY, S3_SECRET_KEY, SIGNING_MASTER_KEY)

_STORE_SECURITY = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
}


# -- which stores are managed ----------------------------------------------------------------


def redis_managed(spec: Mapping) -> bool:
    redis = spec["redis"]
    return not (redis.get("url") or redis.get("urlSecretRef"))


def database_managed(spec: Mapping) -> bool:
    return not spec["database"].get("urlSecretRef")


def documents_managed(spec: Mapping) -> bool:
    storage = spec["storage"]
    return not (storage.get("objectStore") or storage.get("pvc"))


def any_managed(spec: Mapping) -> bool:
    return redis_managed(spec) or database_managed(spec) or documents_managed(spec)


# -- names -----------------------------------------------------------------------------------


def credentials_name(cluster: str) -> str:
    return f"{cluster}-credentials"


def redis_name(cluster: str) -> str:
    return f"{cluster}-redis"


def database_name(cluster: str) -> str:
    return f"{cluster}-database"


def objects_name(cluster: str) -> str:
    return f"{cluster}-objects"


def _host(cluster: Mapping, name: str) -> str:
    return f"{name}.{cluster['metadata']['namespace']}.svc"


def managed_redis_url(cluster: Mapping, password: str) -> str:
    return f"redis://:{password}@{_host(cluster, redis_name(cluster['metadata']['name']))}:{REDIS_PORT}/0"


def objects_endpoint(cluster: Mapping) -> str:
    return f"http://{_host(cluster, objects_name(cluster['metadata']['name']))}:{S3_PORT}"


# -- the credentials Secret ------------------------------------------------------------------


def new_credentials(cluster: Mapping, token: Callable[[], str] = lambda: secrets.token_hex(24)) -> Manifest:
    """A fresh credentials Secret (created once, when absent; hex values are URL-safe).

    It has no owner: like the stores' claims it outlives the pool, so a pool created again
    under the same name opens its old database with the password that database has.
    """
    meta = cluster["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": credentials_name(meta["name"]), "namespace": meta["namespace"],
                     "labels": labels(meta["name"], "credentials")},
        "type": "Opaque",
        "stringData": {key: token() for key in CREDENTIAL_KEYS},
    }


def _credential(cluster: Mapping, env: str, key: str) -> dict[str, Any]:
    ref = {"name": credentials_name(cluster["metadata"]["name"]), "key": key}
    return {"name": env, "valueFrom": {"secretKeyRef": ref}}


def secret_env(name: str, ref: Mapping) -> dict[str, Any]:
    """A variable read from a Secret: ``ref`` names the Secret (``name``) and its ``key``."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref["name"], "key": ref["key"]}}}


# -- what the pool's own pods read -----------------------------------------------------------


def redis_endpoint(cluster: Mapping) -> dict[str, str]:
    """Where the pool's Redis is, as KEDA's redis scalers take it: ``address`` (host:port),
    ``databaseIndex`` and, for ``rediss://``, ``enableTLS``. Not for redis.urlSecretRef (the CRD
    refuses that combination: the URL is in a Secret the operator does not read)."""
    redis = cluster["spec"]["redis"]
    if redis_managed(cluster["spec"]):
        return {"address": f"{_host(cluster, redis_name(cluster['metadata']['name']))}:{REDIS_PORT}",
                "databaseIndex": "0"}
    url = urlsplit(redis["url"])
    endpoint = {"address": f"{url.hostname}:{url.port or REDIS_PORT}",
                "databaseIndex": url.path.strip("/") or "0"}
    if url.scheme == "rediss":
        endpoint["enableTLS"] = "true"
    return endpoint


def store_env(cluster: Mapping) -> list[dict[str, Any]]:
    """OCRFLEET_REDIS_URL, OCRFLEET_DATABASE_URL and the blob store's settings for a pool pod.

    Managed URLs are composed in the pod from the Secret (``$(VAR)`` expansion), so no
    password is ever written into a Deployment.
    """
    spec, name = cluster["spec"], cluster["metadata"]["name"]
    env: list[dict[str, Any]] = []
    redis = spec["redis"]
    if redis.get("urlSecretRef"):
        env.append(secret_env("OCRFLEET_REDIS_URL", redis["urlSecretRef"]))
    elif redis.get("url"):
        env.append({"name": "OCRFLEET_REDIS_URL", "value": redis["url"]})
    else:
        env += [_credential(cluster, "REDIS_PASSWORD", REDIS_PASSWORD),
                {"name": "OCRFLEET_REDIS_URL", "value": managed_redis_url(cluster, "$(REDIS_PASSWORD)")}]
    database = spec["database"]
    if database.get("urlSecretRef"):
        env.append(secret_env("OCRFLEET_DATABASE_URL", database["urlSecretRef"]))
    else:
        host = _host(cluster, database_name(name))
        env += [_credential(cluster, "DATABASE_PASSWORD", DATABASE_PASSWORD),
                {"name": "OCRFLEET_DATABASE_URL", "value": f"postgresql+psycopg://{DATABASE_USER}:"
                 f"$(DATABASE_PASSWORD)@{host}:{POSTGRES_PORT}/{DATABASE_NAME}"}]
    storage = spec["storage"]
    store = storage.get("objectStore")
    if store:
        creds = store["credentialsSecretRef"]
        prefix = store["prefix"].strip("/")
        env += [{"name": "OCRFLEET_BLOB_ROOT", "value": f"s3://{store['bucket']}/{prefix}"},
                {"name": "OCRFLEET_S3_ENDPOINT", "value": store["endpoint"]},
                {"name": "OCRFLEET_S3_REGION", "value": store["region"]},
                secret_env("OCRFLEET_S3_ACCESS_KEY", {"name": creds["name"], "key": creds["accessKeyIdKey"]}),
                secret_env("OCRFLEET_S3_SECRET_KEY", {"name": creds["name"], "key": creds["secretAccessKeyKey"]})]
    elif storage.get("pvc"):
        env.append({"name": "OCRFLEET_BLOB_ROOT", "value": f"{DATA_DIR}/blobs"})
    else:
        env += [{"name": "OCRFLEET_BLOB_ROOT", "value": f"s3://{BUCKET}/blobs"},
                {"name": "OCRFLEET_S3_ENDPOINT", "value": objects_endpoint(cluster)},
                _credential(cluster, "OCRFLEET_S3_ACCESS_KEY", S3_ACCESS_KEY),
                _credential(cluster, "OCRFLEET_S3_SECRET_KEY", S3_SECRET_KEY)]
    return env


DATA_DIR = "/data"
"""Where a pool pod mounts a ReadWriteMany documents claim (``spec.storage.pvc``)."""


# -- the managed stores ----------------------------------------------------------------------


def _statefulset(cluster: Mapping, name: str, component: str, container: dict, storage: Mapping, *,
                 data_path: str, extra_volumes: list | None = None, run_as: int = STORE_USER) -> Manifest:
    cname = cluster["metadata"]["name"]
    claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": storage["size"]}}}
    if storage.get("storageClassName"):
        claim["storageClassName"] = storage["storageClassName"]
    container = {
        **container,
        "securityContext": _STORE_SECURITY,
        "volumeMounts": [{"name": "data", "mountPath": data_path}, {"name": "tmp", "mountPath": "/tmp"},
                         *container["volumeMounts"]],
    }
    if storage.get("resources"):
        container["resources"] = dict(storage["resources"])
    pod_spec: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": run_as, "runAsGroup": run_as, "fsGroup": run_as,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, *(extra_volumes or [])],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(cluster, name, component),
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": selector_labels(cname, component)},
            # the claim stays when the pool goes: deleting a pool must not delete its data by surprise
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "template": pods.template(cluster, labels(cname, component), pod_spec, storage),
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
        },
    }


def _service(cluster: Mapping, name: str, component: str, port: int) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cluster, name, component),
        "spec": {"selector": selector_labels(cluster["metadata"]["name"], component),
                 "ports": [{"name": component, "port": port, "targetPort": port, "protocol": "TCP"}]},
    }


def _tcp_probes(port: int) -> dict[str, Any]:
    return {"readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 5},
            "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 10, "failureThreshold": 6}}


def _store(cluster: Mapping, component: str, name: str, managed: Mapping, port: int, command: list[str],
           env: list[dict], *, data_path: str = "/data", mounts: list | None = None, volumes: list | None = None,
           run_as: int = STORE_USER, probes: Mapping | None = None) -> list[Manifest]:
    """A managed store's StatefulSet (its one container) and Service."""
    container = {
        "name": component,
        "image": managed["image"],
        "command": command,
        "env": env,
        "ports": [{"name": component, "containerPort": port, "protocol": "TCP"}],
        "volumeMounts": mounts or [],
        **_tcp_probes(port),
        **(probes or {}),
    }
    return [_statefulset(cluster, name, component, container, managed, data_path=data_path,
                         extra_volumes=volumes, run_as=run_as),
            _service(cluster, name, component, port)]


def redis(cluster: Mapping) -> list[Manifest]:
    """Redis with every write in its append-only file: a restarted pod replays it."""
    return _store(cluster, "redis", redis_name(cluster["metadata"]["name"]), cluster["spec"]["redis"]["managed"],
                  REDIS_PORT,
                  ["redis-server", "--port", str(REDIS_PORT), "--dir", "/data", "--appendonly", "yes",
                   "--appendfsync", "everysec", "--save", "", "--protected-mode", "no",
                   "--requirepass", "$(REDIS_PASSWORD)"],
                  [_credential(cluster, "REDIS_PASSWORD", REDIS_PASSWORD)])


# initdb on the first start (the password from the mounted Secret), then the server.
_POSTGRES_SCRIPT = f"""set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U {DATABASE_USER} --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust \\
    --auth-host=scram-sha-256 --pwfile=/credentials/{DATABASE_PASSWORD}
  printf 'host all all 0.0.0.0/0 scram-sha-256\\nhost all all ::/0 scram-sha-256\\n' >> "$PGDATA/pg_hba.conf"
  echo 'CREATE DATABASE {DATABASE_NAME}' | postgres --single -D "$PGDATA" postgres >/dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp -p {POSTGRES_PORT}
"""


def database(cluster: Mapping) -> list[Manifest]:
    """PostgreSQL, initialised on its first start with the pool's database and password."""
    secret = {"name": "credentials", "secret": {
        "secretName": credentials_name(cluster["metadata"]["name"]),
        "items": [{"key": DATABASE_PASSWORD, "path": DATABASE_PASSWORD}], "defaultMode": 0o440}}
    return _store(cluster, "database", database_name(cluster["metadata"]["name"]),
                  cluster["spec"]["database"]["managed"], POSTGRES_PORT, ["sh", "-c", _POSTGRES_SCRIPT],
                  [{"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
                  data_path="/var/lib/postgresql/data", volumes=[secret],
                  mounts=[{"name": "credentials", "mountPath": "/credentials", "readOnly": True}])


SEAWEEDFS_ONE_VOLUME_AT_A_TIME = [{"name": f"WEED_MASTER_VOLUME_GROWTH_{copies}", "value": "1"}
                                  for copies in ("COPY_1", "COPY_2", "COPY_3", "COPY_OTHER")]
"""SeaweedFS grows one volume per bucket at a time instead of seven.

With ``-volume.max=0`` its slot count is the disk's free space over the volume size, and the
first write to a bucket asks for seven volumes at once: on a disk with fewer free gigabytes
than that the growth fails and the write is answered 500 (``no free volumes``)."""


def objects(cluster: Mapping) -> list[Manifest]:
    """SeaweedFS in one process (master, volume server, filer, S3 gateway); its S3 admin from the Secret."""
    return _store(cluster, "objects", objects_name(cluster["metadata"]["name"]), cluster["spec"]["storage"]["managed"],
                  S3_PORT,
                  ["weed", "server", "-dir=/data", "-ip=127.0.0.1", "-ip.bind=0.0.0.0", "-filer", "-s3",
                   f"-s3.port={S3_PORT}", "-master.volumeSizeLimitMB=1024", "-volume.max=0"],
                  [_credential(cluster, "AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
                   _credential(cluster, "AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
                   *SEAWEEDFS_ONE_VOLUME_AT_A_TIME],
                  run_as=10001,
                  # the gateway answers before the filer behind it does; /healthz waits for both
                  probes={"readinessProbe": {"httpGet": {"path": "/healthz", "port": S3_PORT}, "periodSeconds": 5}})


def managed_children(cluster: Mapping) -> list[Manifest]:
    """The StatefulSets and Services of every store the pool leaves to the operator."""
    spec = cluster["spec"]
    out: list[Manifest] = []
    if redis_managed(spec):
        out += redis(cluster)
    if database_managed(spec):
        out += database(cluster)
    if documents_managed(spec):
        out += objects(cluster)
    return out
