"""The local cluster's storage: a default StorageClass and the provisioner that serves it.

A claim of class ``standard`` (the default, so a claim that names no class gets it) is bound to
a new hostPath PersistentVolume: a directory under ``--root``, mode 0777 because hostPath
volumes get no ``fsGroup`` and the pods run as non-root users. A released volume is deleted
with its directory. kube-controller-manager's own hostPath provisioner makes directories only
root can write, so the local cluster runs this one instead, as one of its processes.

One machine is one node, so hostPath is shared storage here, and claims of any access mode
(ReadWriteMany too) are honoured. Polls the API server once a second; exits when the API
server has been unreachable for a minute (the cluster is gone).

    python -m e2e.provisioner --kubeconfig PATH --root DIR
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

CLASS = "standard"
PROVISIONER = "ocrfleet.io/local-path"

log = logging.getLogger("provisioner")


def storage_class() -> dict:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}


def volume_for(claim, root: Path) -> dict:
    """The PersistentVolume that serves ``claim`` (a V1PersistentVolumeClaim)."""
    meta = claim.metadata
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{meta.uid}", "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": claim.spec.resources.requests["storage"]},
            "accessModes": list(claim.spec.access_modes),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
            "volumeMode": claim.spec.volume_mode or "Filesystem",
            "hostPath": {"path": str(root / f"{meta.namespace}-{meta.name}-{meta.uid}"), "type": "Directory"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta.namespace,
                         "name": meta.name, "uid": meta.uid},
        },
    }


def sync(core, root: Path) -> None:
    """One pass: a volume for each waiting claim of our class, released volumes removed."""
    from kubernetes.client.exceptions import ApiException

    for claim in core.list_persistent_volume_claim_for_all_namespaces().items:
        if claim.status.phase != "Pending" or claim.spec.volume_name or claim.spec.storage_class_name != CLASS:
            continue
        pv = volume_for(claim, root)
        path = Path(pv["spec"]["hostPath"]["path"])
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        try:
            core.create_persistent_volume(pv)
            log.info("bound %s/%s to %s", claim.metadata.namespace, claim.metadata.name, path)
        except ApiException as exc:
            if exc.status != 409:
                raise
    for pv in core.list_persistent_volume().items:
        owned = (pv.metadata.annotations or {}).get("pv.kubernetes.io/provisioned-by") == PROVISIONER
        if owned and pv.status.phase in ("Released", "Failed") and pv.spec.persistent_volume_reclaim_policy == "Delete":
            core.delete_persistent_volume(pv.metadata.name)
            shutil.rmtree(pv.spec.host_path.path, ignore_errors=True)
            log.info("deleted %s and %s", pv.metadata.name, pv.spec.host_path.path)


def run(kubeconfig: str, root: Path, *, interval: float = 1.0, give_up_after: float = 60.0) -> int:
    from kubernetes import client, config

    config.load_kube_config(kubeconfig)
    core = client.CoreV1Api()
    storage = client.StorageV1Api()
    root.mkdir(parents=True, exist_ok=True)
    unreachable_since: float | None = None
    installed = False
    while True:
        try:
            if not installed:
                from kubernetes.utils import create_from_dict

                try:
                    create_from_dict(client.ApiClient(), storage_class())
                except Exception as exc:  # already there
                    if "AlreadyExists" not in str(exc):
                        raise
                storage.read_storage_class(CLASS)
                installed = True
                log.info("StorageClass %s (default) served from %s", CLASS, root)
            sync(core, root)
            unreachable_since = None
        except Exception as exc:  # the API server restarting, or gone for good
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > give_up_after:
                log.error("API server unreachable for %.0f s (%s): stopping", give_up_after, exc)
                return 1
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.provisioner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--root", required=True, type=Path, help="where the volumes' directories go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run(args.kubeconfig, args.root)


if __name__ == "__main__":
    sys.exit(main())
