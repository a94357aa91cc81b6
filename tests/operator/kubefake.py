"""An in-memory Kubernetes API server at the HTTP transport, for the operator's fast tests.

The operator's own client (:class:`ocrfleet_operator.kube.Kube`) is built over
``httpx.MockTransport(FakeApiServer.handle)``, so every call it makes goes over the same REST
paths, verbs and content types as against a real API server, and nothing is monkeypatched.
The fake keeps objects in a dict and answers what the operator sends: GET of one object, list
with an equality label selector, create (POST), server-side apply (PATCH
``application/apply-patch+yaml``), merge patch (PATCH ``application/merge-patch+json``) of an
object or of its ``status`` or ``scale`` subresource, and DELETE. Like the API server it sets
``uid``, ``resourceVersion`` and ``generation``, defaults a Deployment's or StatefulSet's
``spec.replicas`` to 1, and keeps ``status`` out of writes to the main resource. Nothing runs
behind it: a test plays the controllers (:meth:`FakeApiServer.roll_out`, :meth:`set_status`).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from ocrfleet_dev.kubeobjects import merge_patch
from ocrfleet_operator.kube import RESOURCES, Kube

_KIND_OF = {(prefix, plural): kind for kind, (prefix, plural) in RESOURCES.items()}
_PATH = re.compile(r"^(?P<prefix>/api/v1|/apis/[^/]+/[^/]+)(?:/namespaces/(?P<namespace>[^/]+))?"
                   r"/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$")
_SCALED = ("Deployment", "StatefulSet")


@dataclass(frozen=True)
class Call:
    """One request the client sent, as the fake understood it."""

    method: str
    kind: str
    namespace: str
    name: str
    sub: str
    content_type: str
    field_manager: str
    body: Any


def _status(code: int, reason: str, message: str) -> httpx.Response:
    return httpx.Response(code, json={"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": reason, "message": message, "code": code})


def _matches(labels: Mapping, selector: str) -> bool:
    terms = [t for t in selector.split(",") if t]
    return all(labels.get(k) == v for k, _, v in (t.partition("=") for t in terms))


class FakeApiServer:
    """The objects of a fake cluster and the requests that reached them."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.calls: list[Call] = []
        self._versions = itertools.count(1)

    def kube(self) -> Kube:
        """A fresh operator client talking to this server (a restarted operator gets another)."""
        return Kube(httpx.Client(transport=httpx.MockTransport(self.handle), base_url="https://kube.test"))

    # -- what a test does to the cluster ---------------------------------------------------------

    def put(self, obj: Mapping) -> dict:
        """Store ``obj`` as ``kubectl create`` would (with its status, if it carries one);
        returns what a GET returns."""
        meta = obj["metadata"]
        return self._store(obj["kind"], meta.get("namespace", ""), meta["name"], copy.deepcopy(dict(obj)))

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, kind: str, namespace: str) -> list[dict]:
        return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items()) if k == kind and ns == namespace]

    def edit_spec(self, kind: str, namespace: str, name: str, patch: Mapping) -> dict:
        """A user's ``kubectl patch --type merge`` of the spec; returns the object after it."""
        obj = self.objects[(kind, namespace, name)]
        return self._store(kind, namespace, name, {**obj, "spec": merge_patch(obj.get("spec"), patch)})

    def set_status(self, kind: str, namespace: str, name: str, status: Mapping) -> None:
        """What a controller (the Deployment controller, the kubelet) reports on an object."""
        obj = self.objects[(kind, namespace, name)]
        self._store(kind, namespace, name, {**obj, "status": copy.deepcopy(dict(status))})

    def roll_out(self, namespace: str) -> None:
        """Every Deployment and StatefulSet of the namespace reports all its replicas ready."""
        for (kind, ns, name), obj in list(self.objects.items()):
            if kind in _SCALED and ns == namespace:
                n = obj["spec"]["replicas"]
                self.set_status(kind, ns, name, {"replicas": n, "readyReplicas": n, "updatedReplicas": n})

    def writes(self, kind: str | None = None, *, sub: str | None = None) -> list[Call]:
        """The requests that change something, optionally of one kind and subresource."""
        return [c for c in self.calls if c.method != "GET" and (kind is None or c.kind == kind)
                and (sub is None or c.sub == sub)]

    # -- the transport ---------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        found = _PATH.match(request.url.path)
        kind = found and _KIND_OF.get((found["prefix"], found["plural"]))
        if not kind:
            return _status(404, "NotFound", f"the server could not find the requested resource {request.url.path}")
        namespace, name, sub = found["namespace"] or "", found["name"] or "", found["sub"] or ""
        content_type = request.headers.get("content-type", "")
        body = json.loads(request.content) if request.content else None
        self.calls.append(Call(request.method, kind, namespace, name, sub, content_type,
                               request.url.params.get("fieldManager", ""), body))
        key = (kind, namespace, name)
        live = self.objects.get(key)
        if request.method == "GET" and not name:
            selector = request.url.params.get("labelSelector", "")
            items = [o for o in self.list(kind, namespace) if _matches(o["metadata"].get("labels") or {}, selector)]
            return httpx.Response(200, json={"kind": f"{kind}List", "apiVersion": "v1", "items": items})
        if request.method == "POST":
            name = body["metadata"]["name"]
            if (kind, namespace, name) in self.objects:
                return _status(409, "AlreadyExists", f'{found["plural"]} "{name}" already exists')
            return httpx.Response(201, json=self._store(kind, namespace, name, {**body, "status": {}}))
        if request.method == "PATCH" and content_type == "application/apply-patch+yaml" and not sub:
            if request.url.params.get("force") != "true" and live is not None:
                return _status(409, "Conflict", "apply without force over another manager's fields")
            applied = {**merge_patch(live, {k: v for k, v in body.items() if k != "status"}),
                       "status": (live or {}).get("status", {})}
            return httpx.Response(200, json=self._store(kind, namespace, name, applied))
        if live is None:
            return _status(404, "NotFound", f'{found["plural"]} "{name}" not found')
        if request.method == "GET":
            return httpx.Response(200, json=copy.deepcopy(live))
        if request.method == "DELETE":
            del self.objects[key]
            return httpx.Response(200, json={"kind": "Status", "apiVersion": "v1", "status": "Success"})
        if request.method == "PATCH" and content_type == "application/merge-patch+json":
            if sub == "status":
                patched = {**live, "status": merge_patch(live.get("status"), body.get("status", {}))}
            elif sub == "scale" and kind in _SCALED:
                replicas = body["spec"]["replicas"]
                patched = {**live, "spec": {**live["spec"], "replicas": replicas}}
            elif not sub:
                patched = {**merge_patch(live, {k: v for k, v in body.items() if k != "status"}),
                           "status": live.get("status", {})}
            else:
                return _status(404, "NotFound", f"no subresource {sub!r} on {kind}")
            return httpx.Response(200, json=self._store(kind, namespace, name, patched))
        return _status(415, "UnsupportedMediaType", f"{request.method} with {content_type!r} is not served here")

    def _store(self, kind: str, namespace: str, name: str, obj: dict) -> dict:
        old = self.objects.get((kind, namespace, name))
        meta = obj["metadata"] = {**obj.get("metadata", {}), "name": name, "namespace": namespace}
        meta.setdefault("uid", (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()))
        meta["resourceVersion"] = str(next(self._versions))
        if old is None:
            meta["generation"] = meta.get("generation", 1)
        elif obj.get("spec") != old.get("spec"):
            meta["generation"] = old["metadata"].get("generation", 1) + 1
        else:
            meta["generation"] = old["metadata"].get("generation", 1)
        if kind in _SCALED:
            obj["spec"] = {"replicas": 1, **obj.get("spec", {})}
        self.objects[(kind, namespace, name)] = obj
        return copy.deepcopy(obj)
