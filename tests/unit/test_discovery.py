"""Discovery documents and the OpenAPI v3 kubectl reads to leave field validation to us."""
import hashlib
import json

import pytest

from kwire import KUBE_VERSION
from kwire.api import discovery
from kwire.api.registry import load

REGISTRY = load()
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def resources(group, version):
    return {r["name"]: r for r in discovery.resource_list(REGISTRY, group, version)["resources"]}


def test_core_resource_list_header():
    doc = discovery.resource_list(REGISTRY, "", "v1")
    assert (doc["kind"], doc["apiVersion"], doc["groupVersion"]) == ("APIResourceList", "v1",
                                                                     "v1")
    assert discovery.resource_list(REGISTRY, "apps", "v1")["groupVersion"] == "apps/v1"


def test_unknown_group_version_has_no_resource_list():
    assert discovery.resource_list(REGISTRY, "apps", "v2") is None
    assert discovery.resource_list(REGISTRY, "example.com", "v1") is None


def test_resources_carry_short_names_categories_and_verbs():
    core = resources("", "v1")
    assert core["pods"] == {"name": "pods", "singularName": "pod", "namespaced": True,
                            "kind": "Pod", "verbs": ALL_VERBS, "shortNames": ["po"],
                            "categories": ["all"]}
    assert core["namespaces"] == {"name": "namespaces", "singularName": "namespace",
                                  "namespaced": False, "kind": "Namespace",
                                  "verbs": ["create", "delete", "get", "list", "patch",
                                            "update", "watch"],
                                  "shortNames": ["ns"]}
    assert core["secrets"] == {"name": "secrets", "singularName": "secret", "namespaced": True,
                               "kind": "Secret", "verbs": ALL_VERBS}
    apps = resources("apps", "v1")
    assert (apps["deployments"]["shortNames"], apps["deployments"]["categories"]) == (
        ["deploy"], ["all"])


def test_pod_subresources():
    core = resources("", "v1")
    assert [n for n in core if n.startswith("pods/")] == [
        "pods/status", "pods/binding", "pods/log", "pods/exec", "pods/attach",
        "pods/portforward", "pods/eviction"]
    assert core["pods/status"] == {"name": "pods/status", "singularName": "", "namespaced": True,
                                   "kind": "Pod", "verbs": ["get", "patch", "update"]}
    assert core["pods/binding"]["kind"] == "Binding"
    assert core["pods/binding"]["verbs"] == ["create"]
    assert (core["pods/log"]["kind"], core["pods/log"]["verbs"]) == ("Pod", ["get"])
    assert (core["pods/exec"]["kind"], core["pods/exec"]["verbs"]) == ("PodExecOptions",
                                                                       ["create", "get"])
    assert core["pods/portforward"]["kind"] == "PodPortForwardOptions"


def test_eviction_and_scale_name_their_own_group_and_version():
    # kubectl drain finds the Eviction API through this entry.
    assert resources("", "v1")["pods/eviction"] == {
        "name": "pods/eviction", "singularName": "", "namespaced": True, "kind": "Eviction",
        "verbs": ["create"], "group": "policy", "version": "v1"}
    for name in ("deployments/scale", "replicasets/scale"):
        assert resources("apps", "v1")[name] == {
            "name": name, "singularName": "", "namespaced": True, "kind": "Scale",
            "verbs": ["get", "patch", "update"], "group": "autoscaling", "version": "v1"}
    assert "group" not in resources("apps", "v1")["deployments/status"]


def test_other_subresources():
    core = resources("", "v1")
    assert core["namespaces/finalize"] == {"name": "namespaces/finalize", "singularName": "",
                                           "namespaced": False, "kind": "Namespace",
                                           "verbs": ["update"]}
    assert core["services/proxy"]["kind"] == "ServiceProxyOptions"
    assert core["services/proxy"]["verbs"] == ["create", "delete", "get", "patch", "update"]
    assert core["nodes/status"]["namespaced"] is False


def test_every_kind_is_listed_with_each_subresource():
    for group, versions in REGISTRY.group_versions().items():
        for version in versions:
            listed = resources(group, version)
            for k in REGISTRY.kinds():
                if (k.group, k.version) != (group, version):
                    continue
                assert listed[k.plural]["kind"] == k.kind
                assert all(f"{k.plural}/{s}" in listed for s in k.subresources)


def test_api_versions():
    assert discovery.api_versions("10.0.0.1:6443") == {
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                        "serverAddress": "10.0.0.1:6443"}]}


def test_api_group_list_leaves_out_the_core_group():
    groups = discovery.api_group_list(REGISTRY)
    assert (groups["kind"], groups["apiVersion"]) == ("APIGroupList", "v1")
    names = [g["name"] for g in groups["groups"]]
    assert "" not in names and {"apps", "networking.k8s.io", "discovery.k8s.io",
                                "coordination.k8s.io"} <= set(names)
    apps = groups["groups"][names.index("apps")]
    assert apps == {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}


def test_api_group():
    assert discovery.api_group(REGISTRY, "apps") == {
        "kind": "APIGroup", "apiVersion": "v1", "name": "apps",
        "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}
    assert discovery.api_group(REGISTRY, "") is None
    assert discovery.api_group(REGISTRY, "example.com") is None


def test_version_info():
    info = discovery.version_info()
    assert info["gitVersion"] == KUBE_VERSION
    major, minor, _ = KUBE_VERSION.lstrip("v").split(".")
    assert (info["major"], info["minor"]) == (major, minor)


@pytest.fixture(scope="module")
def openapi():
    return discovery.OpenAPI(REGISTRY)


def test_openapi_root_points_at_each_document_by_content_hash(openapi):
    root = json.loads(openapi.root)
    expected = {"api/v1"} | {f"apis/{g}/{v}" for g, vs in REGISTRY.group_versions().items()
                             if g for v in vs}
    assert set(root["paths"]) == set(openapi.docs) == expected
    for path, doc in openapi.docs.items():
        digest = hashlib.sha256(doc).hexdigest()[:16].upper()
        assert root["paths"][path] == {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}


def test_openapi_documents_declare_field_validation_on_patch_for_every_kind(openapi):
    for k in REGISTRY.kinds():
        doc_path = f"apis/{k.group}/{k.version}" if k.group else f"api/{k.version}"
        doc = json.loads(openapi.docs[doc_path])
        assert doc["openapi"] == "3.0.0"
        prefix = f"/apis/{k.group}/{k.version}" if k.group else "/api/v1"
        ns = "/namespaces/{namespace}" if k.namespaced else ""
        item = doc["paths"][f"{prefix}{ns}/{k.plural}/{{name}}"]
        patch = item["patch"]
        assert patch["x-kubernetes-group-version-kind"] == {"group": k.group,
                                                            "version": k.version,
                                                            "kind": k.kind}
        assert {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}} \
            in patch["parameters"]
        assert item["put"]["x-kubernetes-group-version-kind"]["kind"] == k.kind
        assert "post" in doc["paths"][f"{prefix}{ns}/{k.plural}"]


def test_openapi_documents_hold_only_their_group_version(openapi):
    doc = json.loads(openapi.docs["apis/apps/v1"])
    kinds = {op["patch"]["x-kubernetes-group-version-kind"]["kind"]
             for op in doc["paths"].values() if "patch" in op}
    assert kinds == {k.kind for k in REGISTRY.kinds() if k.group == "apps"}
    assert all(p.startswith("/apis/apps/v1/") for p in doc["paths"])
