"""Discovery documents (/api, /apis, /api/v1, /apis/<g>/<v>) and the minimal
OpenAPI v3 that tells kubectl the server validates fields itself."""
from __future__ import annotations

import hashlib
import json

from kwire import KUBE_VERSION
from kwire.api.registry import Kind, Registry

SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "binding": ["create"],
                     "log": ["get"], "exec": ["create", "get"], "attach": ["create", "get"],
                     "portforward": ["create", "get"], "eviction": ["create"],
                     "scale": ["get", "patch", "update"], "finalize": ["update"],
                     "proxy": ["create", "delete", "get", "patch", "update"]}

# Subresources whose objects belong to another API group (kubectl drain looks for these).
SUBRESOURCE_GROUPS = {"eviction": ("policy", "v1"), "scale": ("autoscaling", "v1")}


def version_info() -> dict:
    major, minor, _ = KUBE_VERSION.lstrip("v").split(".")
    return {"major": major, "minor": minor, "gitVersion": KUBE_VERSION,
            "gitCommit": "kwire", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.6", "compiler": "gc",
            "platform": "linux/amd64"}


def _resource(k: Kind) -> dict:
    r = {"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
         "kind": k.kind, "verbs": list(k.verbs)}
    if k.short_names:
        r["shortNames"] = list(k.short_names)
    if k.categories:
        r["categories"] = list(k.categories)
    return r


def _subresources(k: Kind) -> list[dict]:
    out = []
    for sub in k.subresources:
        kind = {"binding": "Binding", "eviction": "Eviction", "scale": "Scale"}.get(sub, k.kind)
        if sub in ("log", "exec", "attach", "portforward", "proxy"):
            kind = {"log": "Pod", "exec": "PodExecOptions", "attach": "PodAttachOptions",
                    "portforward": "PodPortForwardOptions",
                    "proxy": f"{k.kind}ProxyOptions"}[sub]
        entry = {"name": f"{k.plural}/{sub}", "singularName": "", "namespaced": k.namespaced,
                 "kind": kind, "verbs": SUBRESOURCE_VERBS.get(sub, ["get"])}
        if sub in SUBRESOURCE_GROUPS:
            entry["group"], entry["version"] = SUBRESOURCE_GROUPS[sub]
        out.append(entry)
    return out


def resource_list(registry: Registry, group: str, version: str) -> dict | None:
    kinds = [k for k in registry.kinds() if k.group == group and k.version == version]
    if not kinds:
        return None
    resources = []
    for k in kinds:
        resources.append(_resource(k))
        resources.extend(_subresources(k))
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


def api_versions(address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": address}]}


def api_group_list(registry: Registry) -> dict:
    groups = []
    for group, versions in registry.group_versions().items():
        if not group:
            continue
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": vs, "preferredVersion": vs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> dict | None:
    versions = registry.group_versions().get(group)
    if not versions or not group:
        return None
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs,
            "preferredVersion": vs[0]}


class OpenAPI:
    """OpenAPI v3 with one PATCH operation per kind that declares fieldValidation:
    that is how kubectl learns to leave field validation to the server."""

    def __init__(self, registry: Registry):
        self.docs: dict[str, bytes] = {}
        for group, versions in registry.group_versions().items():
            for v in versions:
                path = f"api/{v}" if not group else f"apis/{group}/{v}"
                self.docs[path] = json.dumps(self._doc(registry, group, v)).encode()
        self.root = json.dumps({"paths": {
            p: {"serverRelativeURL": f"/openapi/v3/{p}?hash="
                + hashlib.sha256(d).hexdigest()[:16].upper()}
            for p, d in self.docs.items()}}).encode()

    @staticmethod
    def _doc(registry: Registry, group: str, version: str) -> dict:
        paths = {}
        for k in registry.kinds():
            if k.group != group or k.version != version:
                continue
            base = "/api/v1" if not group else f"/apis/{group}/{version}"
            ns = "/namespaces/{namespace}" if k.namespaced else ""
            params = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                      {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                      {"name": "fieldManager", "in": "query", "schema": {"type": "string"}}]
            op = {"x-kubernetes-group-version-kind": {"group": group, "version": version,
                                                      "kind": k.kind},
                  "parameters": params, "responses": {"200": {"description": "OK"}}}
            paths[f"{base}{ns}/{k.plural}/{{name}}"] = {"patch": op, "put": op}
            paths[f"{base}{ns}/{k.plural}"] = {"post": op}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": KUBE_VERSION},
                "paths": paths, "components": {"schemas": {}}}


def _field(number: int, text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return bytes([number << 3 | 2, len(data)]) + data


# /openapi/v2 as the protobuf document kubectl asks for: no definitions, so kubectl
# skips client-side schema checks for what it cannot find in v3 (such as kind: List).
OPENAPI_V2_PROTOBUF = _field(1, "2.0") + _field(2, _field(1, "Kubernetes") + _field(2, KUBE_VERSION))
