"""core/v1 kinds: defaults, validation, update rules, table rows and field labels.

Expected values are what a Kubernetes 1.32 API server returns for the same input.
"""
from __future__ import annotations

import base64
import copy
from datetime import datetime, timezone

import pytest

from kwire.api.kinds.core import (
    OBJECT_META_SCHEMA, POD_SPEC_SCHEMA, default_pod_spec, prepare_service_update,
    validate_pod_spec,
)
from kwire.api.registry import REGISTRY

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
CREATED = "2024-01-01T11:55:00Z"  # five minutes before NOW

POD = REGISTRY.resource("", "v1", "pods")
SVC = REGISTRY.resource("", "v1", "services")
NS = REGISTRY.resource("", "v1", "namespaces")
EP = REGISTRY.resource("", "v1", "endpoints")
NODE = REGISTRY.resource("", "v1", "nodes")
CM = REGISTRY.resource("", "v1", "configmaps")
SECRET = REGISTRY.resource("", "v1", "secrets")
EVENT = REGISTRY.resource("", "v1", "events")
SA = REGISTRY.resource("", "v1", "serviceaccounts")


def seed_pod() -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "multi-container-pod", "namespace": "default",
                     "creationTimestamp": CREATED},
        "spec": {"containers": [
            {"name": "container-1", "image": "nginx:alpine"},
            {"name": "container-2", "image": "busybox",
             "command": ["/bin/sh", "-c", "mkdir -p /usr/share/nginx/html && while true; do "
                         "echo \"Hello from Container 2\" >> /usr/share/nginx/html/index.html; "
                         "sleep 10; done"]},
        ]},
    }


def defaulted(kind, obj: dict) -> dict:
    kind.default(obj)
    return obj


def pod_with(**spec) -> dict:
    pod = seed_pod()
    pod["spec"].update(spec)
    return defaulted(POD, pod)


def causes(kind, obj: dict) -> list[str]:
    return [str(c) for c in kind.validate(defaulted(kind, obj))]


def service(**spec) -> dict:
    return {"metadata": {"name": "web", "namespace": "default", "creationTimestamp": CREATED},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}


# --- registration -----------------------------------------------------------------

@pytest.mark.parametrize("plural,singular,kind,namespaced,short,categories", [
    ("namespaces", "namespace", "Namespace", False, ("ns",), ()),
    ("pods", "pod", "Pod", True, ("po",), ("all",)),
    ("services", "service", "Service", True, ("svc",), ("all",)),
    ("endpoints", "endpoints", "Endpoints", True, ("ep",), ()),
    ("nodes", "node", "Node", False, ("no",), ()),
    ("configmaps", "configmap", "ConfigMap", True, ("cm",), ()),
    ("secrets", "secret", "Secret", True, (), ()),
    ("events", "event", "Event", True, ("ev",), ()),
    ("serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",), ()),
])
def test_registered_names(plural, singular, kind, namespaced, short, categories):
    k = REGISTRY.resource("", "v1", plural)
    assert (k.kind, k.singular, k.namespaced, k.short_names, k.categories) == \
        (kind, singular, namespaced, short, categories)
    assert k.api_version == "v1"
    assert k.spec_paths == ()  # no core/v1 kind has metadata.generation in 1.32
    assert k.merge_schema["metadata"] == {"fields": OBJECT_META_SCHEMA}
    assert len(k.columns) == len(k.row(defaulted(k, _minimal(k)), NOW))


def _minimal(kind) -> dict:
    meta = {"name": "x", "creationTimestamp": CREATED}
    if kind.namespaced:
        meta["namespace"] = "default"
    return {"metadata": meta}


def test_subresources_and_status():
    assert set(POD.subresources) >= {"status", "binding", "log", "exec", "attach",
                                     "portforward", "eviction"}
    assert set(NS.subresources) == {"status", "finalize"}
    assert "status" in SVC.subresources and "status" in NODE.subresources
    assert all(k.status_subresource for k in (POD, SVC, NODE, NS))
    assert not any(k.status_subresource for k in (CM, SECRET, EVENT, SA, EP))
    assert NODE.keep_status_on_create and not POD.keep_status_on_create
    assert "deletecollection" not in NS.verbs and "deletecollection" in POD.verbs


def test_merge_schemas():
    assert POD_SPEC_SCHEMA["containers"]["key"] == "name"
    assert POD_SPEC_SCHEMA["containers"]["fields"]["ports"] == {"key": "containerPort"}
    assert POD_SPEC_SCHEMA["initContainers"]["fields"]["env"] == {"key": "name"}
    assert POD_SPEC_SCHEMA["containers"]["fields"]["volumeMounts"] == {"key": "mountPath"}
    assert POD_SPEC_SCHEMA["volumes"] == {"key": "name", "retainKeys": True}
    assert OBJECT_META_SCHEMA == {"finalizers": {"set": True}, "ownerReferences": {"key": "uid"}}
    assert POD.merge_schema["spec"] == {"fields": POD_SPEC_SCHEMA}
    assert POD.merge_schema["status"]["fields"]["conditions"] == {"key": "type"}
    assert SVC.merge_schema["spec"]["fields"]["ports"] == {"key": "port"}
    assert NODE.merge_schema["status"]["fields"]["addresses"] == {"key": "type"}
    assert SA.merge_schema["secrets"] == {"key": "name"}


# --- Pod defaults -----------------------------------------------------------------

def test_seed_pod_defaults():
    pod = defaulted(POD, seed_pod())
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    assert spec["priority"] == 0 and spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert spec["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ]
    nginx, busybox = spec["containers"]
    assert nginx["imagePullPolicy"] == "IfNotPresent"  # tag "alpine"
    assert busybox["imagePullPolicy"] == "Always"  # no tag means latest
    for c in (nginx, busybox):
        assert c["terminationMessagePath"] == "/dev/termination-log"
        assert c["terminationMessagePolicy"] == "File"
        assert c["resources"] == {}
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert POD.validate(pod) == []


def test_defaulting_is_idempotent():
    pod = defaulted(POD, seed_pod())
    again = defaulted(POD, copy.deepcopy(pod))
    assert again == pod


@pytest.mark.parametrize("image,policy", [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.27", "IfNotPresent"),
    ("localhost:5000/app", "Always"), ("localhost:5000/app:v1", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy(image, policy):
    pod = pod_with(containers=[{"name": "c", "image": image}])
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_explicit_values_are_kept():
    pod = pod_with(restartPolicy="Never", terminationGracePeriodSeconds=0,
                   serviceAccountName="robot", enableServiceLinks=False,
                   tolerations=[{"operator": "Exists"}],
                   containers=[{"name": "c", "image": "nginx", "imagePullPolicy": "Never"}])
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["terminationGracePeriodSeconds"] == 0
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "robot"
    assert spec["enableServiceLinks"] is False
    assert spec["tolerations"] == [{"operator": "Exists"}]  # already tolerates everything
    assert spec["containers"][0]["imagePullPolicy"] == "Never"


def test_container_parts_defaults():
    probe = {"httpGet": {"port": 80}}
    pod = pod_with(
        containers=[{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
                     "livenessProbe": probe, "readinessProbe": {"grpc": {"port": 9000}},
                     "env": [{"name": "NODE", "valueFrom": {
                         "fieldRef": {"fieldPath": "spec.nodeName"}}}],
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        volumes=[{"name": "data"}, {"name": "cfg", "configMap": {"name": "cfg"}},
                 {"name": "sec", "secret": {"secretName": "s"}},
                 {"name": "host", "hostPath": {"path": "/var/log"}}])
    c = pod["spec"]["containers"][0]
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                                  "timeoutSeconds": 1, "periodSeconds": 10,
                                  "successThreshold": 1, "failureThreshold": 3}
    assert c["readinessProbe"]["grpc"] == {"port": 9000, "service": ""}
    assert c["env"][0]["valueFrom"]["fieldRef"] == {"fieldPath": "spec.nodeName",
                                                    "apiVersion": "v1"}
    vols = {vol["name"]: vol for vol in pod["spec"]["volumes"]}
    assert vols["data"]["emptyDir"] == {}
    assert vols["cfg"]["configMap"]["defaultMode"] == 420
    assert vols["sec"]["secret"]["defaultMode"] == 420
    assert vols["host"]["hostPath"]["type"] == ""
    assert POD.validate(pod) == []


def test_qos_and_requests_from_limits():
    guaranteed = pod_with(containers=[{"name": "c", "image": "nginx", "resources": {
        "limits": {"cpu": "500m", "memory": "128Mi"}}}])
    res = guaranteed["spec"]["containers"][0]["resources"]
    assert res["requests"] == {"cpu": "500m", "memory": "128Mi"}
    assert guaranteed["status"]["qosClass"] == "Guaranteed"
    burstable = pod_with(containers=[{"name": "c", "image": "nginx", "resources": {
        "requests": {"cpu": "0.1"}, "limits": {"cpu": "1", "memory": "1Gi"}}}])
    assert burstable["status"]["qosClass"] == "Burstable"
    equal_units = pod_with(containers=[{"name": "c", "image": "nginx", "resources": {
        "requests": {"cpu": "1000m", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "1073741824"}}}])
    assert equal_units["status"]["qosClass"] == "Guaranteed"


def test_quantities_take_their_canonical_form():
    pod = pod_with(
        overhead={"cpu": "0.0001", "memory": "1024Mi"},
        volumes=[{"name": "tmp", "emptyDir": {"sizeLimit": "0.0001"}}],
        containers=[{"name": "c", "image": "nginx", "resources": {
            "limits": {"cpu": "1000m", "memory": " 1024Mi", "ephemeral-storage": 1e3},
            "requests": {"cpu": 0.5}},
            "env": [{"name": "MEM", "valueFrom": {"resourceFieldRef": {
                "resource": "limits.memory", "divisor": "1024Ki"}}}]}],
        initContainers=[{"name": "i", "image": "busybox", "resources": {
            "requests": {"cpu": "0.0001"}}}])
    res = pod["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1k"},
                   "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1k"}}
    # ResourceLists are rounded up to milli units; other quantities keep nano.
    assert pod["spec"]["initContainers"][0]["resources"]["requests"] == {"cpu": "1m"}
    assert pod["spec"]["overhead"] == {"cpu": "1m", "memory": "1Gi"}
    assert pod["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "100u"
    env = pod["spec"]["containers"][0]["env"][0]
    assert env["valueFrom"]["resourceFieldRef"]["divisor"] == "1Mi"
    assert causes(POD, pod) == []
    template = {"containers": [{"name": "c", "image": "nginx",
                                "resources": {"limits": {"memory": "1.5Gi"}}}]}
    default_pod_spec(template)
    assert template["containers"][0]["resources"] == {"limits": {"memory": "1536Mi"}}


QUANTITY_MSG = ("quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


def test_resource_quantity_errors():
    res = "spec.containers[0].resources"
    pod = seed_pod()
    pod["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "abc", "memory": "1.5.5", "example.com/gpu": "500m"},
        "requests": {"cpu": "", "memory": "-1", "ephemeral-storage": "1Kb"}}
    pod["spec"]["containers"][1]["resources"] = {"limits": {"cpu": "1000m"},
                                                  "requests": {"cpu": "2"}}
    assert causes(POD, pod) == [
        f'{res}.limits[cpu]: Invalid value: "abc": {QUANTITY_MSG}',
        f'{res}.limits[memory]: Invalid value: "1.5.5": {QUANTITY_MSG}',
        f'{res}.limits[example.com/gpu]: Invalid value: "500m": must be an integer',
        f'{res}.requests[cpu]: Invalid value: "": {QUANTITY_MSG}',
        f'{res}.requests[memory]: Invalid value: "-1": must be greater than or equal to 0',
        f'{res}.requests[ephemeral-storage]: Invalid value: "1Kb": {QUANTITY_MSG}',
        # example.com/gpu was defaulted from its limit; cpu and memory were not, their
        # limits being no quantities.
        f'{res}.requests[example.com/gpu]: Invalid value: "500m": must be an integer',
        'spec.containers[1].resources.requests: Invalid value: "2": must be less than or equal '
        "to cpu limit of 1",
    ]


def test_resource_names_and_hugepages():
    res = "spec.containers[0].resources"
    pod = seed_pod()
    pod["spec"]["containers"][0]["resources"] = {
        "limits": {"hugepages-2Mi": "3Mi", "example.com/gpu": "1"},
        "requests": {"foo": "1", "requests.cpu": "1", "example.com/gpu": "2",
                     "example.com/fpga": "1"}}
    assert causes(POD, pod) == [
        f'{res}.limits[hugepages-2Mi]: Invalid value: "3Mi": 3Mi is not positive integer '
        "multiple of hugepages-2Mi",
        f'{res}.requests[foo]: Invalid value: "foo": must be a standard resource type or fully '
        "qualified",
        f'{res}.requests[foo]: Invalid value: "foo": must be a standard resource for containers',
        f'{res}.requests[requests.cpu]: Invalid value: "requests.cpu": must be a standard '
        "resource for containers",
        f'{res}.requests: Invalid value: "2": must be equal to example.com/gpu limit of 1',
        f"{res}.limits: Required value: Limit must be set for non overcommitable resources",
        f'{res}.requests[hugepages-2Mi]: Invalid value: "3Mi": 3Mi is not positive integer '
        "multiple of hugepages-2Mi",
        f"{res}: Forbidden: HugePages require cpu or memory",
    ]


def test_overhead_and_size_limit_errors():
    pod = seed_pod()
    pod["spec"]["overhead"] = {"cpu": "-0.5", "memory": "x"}
    pod["spec"]["volumes"] = [{"name": "a", "emptyDir": {"sizeLimit": "-1Gi"}},
                              {"name": "b", "emptyDir": {"sizeLimit": "zz"}}]
    pod["spec"]["containers"][0]["env"] = [{"name": "CPU", "valueFrom": {"resourceFieldRef": {
        "resource": "limits.cpu", "divisor": "1K"}}}]
    assert causes(POD, pod) == [
        "spec.volumes[0].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid "
        "resource quantity",
        f'spec.volumes[1].emptyDir.sizeLimit: Invalid value: "zz": {QUANTITY_MSG}',
        'spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: Invalid value: "1K": '
        "unable to parse quantity's suffix",
        'spec.overhead.limits[cpu]: Invalid value: "-500m": must be greater than or equal to 0',
        f'spec.overhead.limits[memory]: Invalid value: "x": {QUANTITY_MSG}',
    ]


def test_host_network_ports_and_system_priority():
    pod = pod_with(hostNetwork=True, priorityClassName="system-node-critical",
                   containers=[{"name": "c", "image": "nginx",
                                "ports": [{"containerPort": 8080}]}])
    assert pod["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080
    assert pod["spec"]["priority"] == 2000001000


def test_template_defaults_are_podspec_only():
    spec = {"containers": [{"name": "c", "image": "nginx"}]}
    default_pod_spec(spec)
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["containers"][0]["imagePullPolicy"] == "Always"
    for pod_only in ("enableServiceLinks", "serviceAccountName", "tolerations", "priority"):
        assert pod_only not in spec
    assert validate_pod_spec(spec, "spec.template.spec") == []


# --- Pod validation ---------------------------------------------------------------

LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
             "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
             "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def test_pod_field_errors():
    pod = seed_pod()
    pod["spec"]["containers"] = [
        {"name": "a"},
        {"name": "a", "image": "busybox",
         "ports": [{"containerPort": 0}, {"containerPort": 70000, "protocol": "tcp",
                                          "name": "HTTP"}]},
        {"name": "Bad_Name", "image": "x", "env": [{"name": "A=B"}],
         "volumeMounts": [{"name": "missing", "mountPath": "/m"}]},
    ]
    pod["spec"]["restartPolicy"] = "Sometimes"
    pod["spec"]["nodeSelector"] = {"disk": "ssd!"}
    got = causes(POD, pod)
    assert got == [
        "spec.containers[0].image: Required value",
        "spec.containers[1].ports[0].containerPort: Required value",
        "spec.containers[1].ports[1].name: Invalid value: \"HTTP\": must contain only "
        "alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        "spec.containers[1].ports[1].name: Invalid value: \"HTTP\": must contain at least one "
        "letter (a-z)",
        "spec.containers[1].ports[1].containerPort: Invalid value: 70000: must be between 1 and "
        "65535, inclusive",
        "spec.containers[1].ports[1].protocol: Unsupported value: \"tcp\": supported values: "
        "\"SCTP\", \"TCP\", \"UDP\"",
        "spec.containers[1].name: Duplicate value: \"a\"",
        f"spec.containers[2].name: Invalid value: \"Bad_Name\": {LABEL_MSG}",
        "spec.containers[2].env[0].name: Invalid value: \"A=B\": a valid environment variable "
        "name must consist only of printable ASCII characters other than '='",
        "spec.containers[2].volumeMounts[0].name: Not found: \"missing\"",
        "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", "
        "\"OnFailure\", \"Never\"",
        "spec.nodeSelector[disk]: Invalid value: \"ssd!\": a valid label must be an empty "
        "string or consist of alphanumeric characters, '-', '_' or '.', and must start and end "
        "with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex "
        "used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    ]


def test_pod_requires_containers_and_names_init_duplicates():
    assert causes(POD, {"metadata": {"name": "p", "namespace": "default"}, "spec": {}}) == [
        "spec.containers: Required value"]
    pod = seed_pod()
    pod["spec"]["initContainers"] = [{"name": "container-1", "image": "busybox"}]
    assert causes(POD, pod) == ["spec.initContainers[0].name: Duplicate value: \"container-1\""]


def test_pod_volumes_and_probes():
    pod = seed_pod()
    pod["spec"]["volumes"] = [{"name": "a", "emptyDir": {}, "hostPath": {"path": "/x"}},
                              {"name": "b", "emptyDir": {}}, {"name": "b", "secret": {}}]
    pod["spec"]["containers"][0]["livenessProbe"] = {"exec": {"command": ["true"]},
                                                     "tcpSocket": {"port": 80}}
    pod["spec"]["containers"][1]["readinessProbe"] = {"periodSeconds": 5}
    pod["spec"]["containers"][1]["startupProbe"] = {"tcpSocket": {"port": "http"},
                                                    "successThreshold": 2}
    assert causes(POD, pod) == [
        "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
        "spec.volumes[2].secret.secretName: Required value",
        "spec.volumes[2].name: Duplicate value: \"b\"",
        "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 "
        "handler type",
        "spec.containers[1].readinessProbe: Required value: must specify a handler type",
        "spec.containers[1].startupProbe.successThreshold: Invalid value: 2: must be 1",
    ]


def test_pod_tolerations_and_dns():
    pod = seed_pod()
    pod["spec"]["tolerations"] = [{"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 5},
                                  {"operator": "Equal", "value": "x"}]
    pod["spec"]["dnsPolicy"] = "None"
    assert causes(POD, pod) == [
        "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None",
        "spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' "
        "when `tolerationSeconds` is set",
        "spec.tolerations[1].operator: Invalid value: \"Equal\": operator must be Exists when "
        "`key` is empty, which means \"match all values and all keys\"",
    ]


SYSCTL_MSG = ("must have at most 253 characters and match regex "
              r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")


def test_pod_sysctls():
    pod = seed_pod()
    pod["spec"]["securityContext"] = {"sysctls": [
        {"name": "bad sysctl", "value": "1"}, {"name": "net.core.somaxconn", "value": "1024"},
        {"name": "kernel/shm_rmid_forced", "value": "1"}, {"name": ""},
        {"name": "net.core.somaxconn", "value": "1"}, {"name": "a" * 254}]}
    sysctls = "spec.securityContext.sysctls"
    assert causes(POD, pod) == [
        f'{sysctls}[0].name: Invalid value: "bad sysctl": {SYSCTL_MSG}',
        f"{sysctls}[3].name: Required value",
        f'{sysctls}[4].name: Duplicate value: "net.core.somaxconn"',
        f'{sysctls}[5].name: Invalid value: "{"a" * 254}": {SYSCTL_MSG}',
    ]
    pod = seed_pod()
    pod["spec"].update(hostNetwork=True, hostIPC=True, securityContext={"sysctls": [
        {"name": "net.ipv4.ip_forward"}, {"name": "kernel/shm_rmid_forced"},
        {"name": "kernel.sem"}, {"name": "fs.mqueue.*"}, {"name": "vm.swappiness"}]})
    assert causes(POD, pod) == [
        f"{sysctls}[0].name: Invalid value: \"net.ipv4.ip_forward\": may not be specified when "
        "'hostNetwork' is true",
        f"{sysctls}[1].name: Invalid value: \"kernel/shm_rmid_forced\": may not be specified "
        "when 'hostIPC' is true",
        f"{sysctls}[2].name: Invalid value: \"kernel.sem\": may not be specified when 'hostIPC' "
        "is true",
        f"{sysctls}[3].name: Invalid value: \"fs.mqueue.*\": {SYSCTL_MSG}",
        f"{sysctls}[3].name: Invalid value: \"fs.mqueue.*\": may not be specified when "
        "'hostIPC' is true",
    ]


def test_null_container_is_an_empty_one():
    pod = seed_pod()
    pod["spec"]["containers"] = [None]
    pod["spec"]["initContainers"] = [None]
    assert causes(POD, pod) == [
        "spec.containers[0].name: Required value",
        "spec.containers[0].image: Required value",
        "spec.initContainers[0].name: Required value",
        "spec.initContainers[0].image: Required value",
        'spec.initContainers[0].name: Duplicate value: ""',  # of containers[0]'s, as upstream
    ]


def with_status(**status) -> dict:
    pod = seed_pod()
    pod["status"] = status
    return defaulted(POD, pod)


def test_pod_status_ips_pair_like_the_v1_conversion():
    def ips(pod):
        return {k: pod["status"][k] for k in ("podIP", "podIPs", "hostIP", "hostIPs")
                if k in pod["status"]}

    assert ips(with_status(podIP="10.244.1.5", hostIP="10.0.0.2")) == {
        "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
        "hostIP": "10.0.0.2", "hostIPs": [{"ip": "10.0.0.2"}]}
    assert ips(with_status(podIPs=[{"ip": "10.244.1.5"}])) == {
        "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}]}
    # The single field wins over a list that disagrees, for older clients' sake.
    assert ips(with_status(podIP="10.244.1.6", podIPs=[{"ip": "10.244.1.5"},
                                                       {"ip": "fd00::5"}])) == {
        "podIP": "10.244.1.6", "podIPs": [{"ip": "10.244.1.6"}]}
    ok = with_status(podIP="10.244.1.5", podIPs=[{"ip": "10.244.1.5"}, {"ip": "fd00::5"}],
                     hostIP="10.0.0.2", hostIPs=[{"ip": "10.0.0.2"}, {"ip": "fd00::2"}])
    assert POD.validate(ok) == []


def test_pod_status_ip_errors():
    ip_msg = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
    assert [str(c) for c in POD.validate(with_status(podIP="10.0.0.256"))] == [
        f'status.podIPs[0]: Invalid value: "10.0.0.256": {ip_msg}']
    pod = with_status(podIPs=[{"ip": "10.244.1.5"}, {"ip": "x"}, {"ip": "10.244.1.5"}],
                      hostIPs=[{"ip": "10.0.0.2"}, {"ip": "10.0.0.2"}])
    assert [str(c) for c in POD.validate(pod)] == [
        f'status.podIPs[1]: Invalid value: "x": {ip_msg}',
        "status.podIPs: Internal error: failed to check for dual stack with error:ip <nil> is "
        "invalid",
        'status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:"10.244.1.5"}, '
        'core.PodIP{IP:"x"}, core.PodIP{IP:"10.244.1.5"}}: may specify no more than one IP '
        "for each IP family",
        'status.podIPs[2]: Duplicate value: core.PodIP{IP:"10.244.1.5"}',
        'status.hostIPs[0].ip: Invalid value: "10.0.0.2": must be equal to `hostIP`',
        'status.hostIPs[1]: Duplicate value: core.HostIP{IP:"10.0.0.2"}',
        'status.hostIPs: Invalid value: []core.HostIP{core.HostIP{IP:"10.0.0.2"}, '
        'core.HostIP{IP:"10.0.0.2"}}: may specify no more than one IP for each IP family',
    ]


def test_pod_name_and_image_whitespace():
    pod = seed_pod()
    pod["metadata"]["name"] = "Web"
    pod["spec"]["containers"][0]["image"] = " nginx"
    got = causes(POD, pod)
    assert got[0].startswith("metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 "
                             "subdomain must consist of")
    assert got[1] == ("spec.containers[0].image: Invalid value: \" nginx\": must not have "
                      "leading or trailing whitespace")


# --- Pod updates ------------------------------------------------------------------

POD_UPDATE_MSG = (
    "spec: Forbidden: pod updates may not change fields other than "
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
    "negative)")


def updated(kind, old: dict, change) -> list[str]:
    new = copy.deepcopy(old)
    change(new)
    kind.default(new)
    return [str(c) for c in kind.validate(new) + kind.validate_update(new, old)]


def test_pod_update_rules():
    old = defaulted(POD, seed_pod())
    assert updated(POD, old, lambda p: p["spec"]["containers"][0].update(image="nginx:1.27")) == []
    assert updated(POD, old, lambda p: p["spec"]["tolerations"].append(
        {"key": "k", "operator": "Exists"})) == []
    assert updated(POD, old, lambda p: p["spec"].update(activeDeadlineSeconds=30)) == []
    assert updated(POD, old, lambda p: p["spec"].update(restartPolicy="Never")) == [
        POD_UPDATE_MSG]
    assert updated(POD, old, lambda p: p["spec"].update(nodeName="node-1")) == [POD_UPDATE_MSG]
    assert updated(POD, old, lambda p: p["spec"]["containers"].pop()) == [
        "spec.containers: Forbidden: pod updates may not add or remove containers"]
    assert updated(POD, old, lambda p: p["spec"]["tolerations"][0].update(
        operator="Equal", value="x")) == [
        "spec.tolerations: Forbidden: existing toleration can not be modified except its "
        "tolerationSeconds"]
    assert updated(POD, old, lambda p: p["spec"]["tolerations"][0].update(tolerationSeconds=60)) \
        == []
    with_deadline = defaulted(POD, seed_pod())
    with_deadline["spec"]["activeDeadlineSeconds"] = 30
    assert updated(POD, with_deadline, lambda p: p["spec"].update(activeDeadlineSeconds=60)) == [
        "spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous "
        "value"]


# --- Pod table --------------------------------------------------------------------

def running_pod(**status) -> dict:
    pod = defaulted(POD, seed_pod())
    pod["spec"]["nodeName"] = "node-1"
    pod["status"] = {
        "phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {"name": "container-1", "ready": True, "restartCount": 0,
             "state": {"running": {"startedAt": CREATED}}},
            {"name": "container-2", "ready": True, "restartCount": 0,
             "state": {"running": {"startedAt": CREATED}}},
        ],
        **status,
    }
    return pod


def test_pod_columns():
    assert [(c.name, c.type, c.priority) for c in POD.columns] == [
        ("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0),
        ("Restarts", "string", 0), ("Age", "string", 0), ("IP", "string", 1),
        ("Node", "string", 1), ("Nominated Node", "string", 1),
        ("Readiness Gates", "string", 1)]
    assert POD.columns[0].format == "name"


def test_pod_rows():
    assert POD.row(defaulted(POD, seed_pod()), NOW) == [
        "multi-container-pod", "0/2", "Pending", "0", "5m", "<none>", "<none>", "<none>",
        "<none>"]
    assert POD.row(running_pod(), NOW) == [
        "multi-container-pod", "2/2", "Running", "0", "5m", "10.244.1.5", "node-1", "<none>",
        "<none>"]
    crashing = running_pod()
    crashing["status"]["containerStatuses"][1] = {
        "name": "container-2", "ready": False, "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:58:00Z"}}}
    assert POD.row(crashing, NOW)[1:4] == ["1/2", "CrashLoopBackOff", "3 (2m ago)"]
    done = running_pod(phase="Succeeded")
    for cs in done["status"]["containerStatuses"]:
        cs.update(ready=False, state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    assert POD.row(done, NOW)[1:3] == ["0/2", "Completed"]
    deleting = running_pod()
    deleting["metadata"]["deletionTimestamp"] = "2024-01-01T11:59:00Z"
    assert POD.row(deleting, NOW)[2] == "Terminating"


def test_pod_row_init_containers():
    pod = defaulted(POD, seed_pod())
    pod["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
    pod["status"]["initContainerStatuses"] = [
        {"name": "init", "ready": False, "restartCount": 0,
         "state": {"running": {"startedAt": CREATED}}}]
    pod["status"]["containerStatuses"] = [
        {"name": n, "ready": False, "restartCount": 0,
         "state": {"waiting": {"reason": "PodInitializing"}}}
        for n in ("container-1", "container-2")]
    assert POD.row(pod, NOW)[1:3] == ["0/2", "Init:0/1"]
    pod["status"]["initContainerStatuses"][0]["state"] = {
        "waiting": {"reason": "ImagePullBackOff"}}
    assert POD.row(pod, NOW)[2] == "Init:ImagePullBackOff"


# --- Service ----------------------------------------------------------------------

def test_service_defaults():
    svc = defaulted(SVC, service())
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert spec["ipFamilyPolicy"] == "SingleStack" and spec["ipFamilies"] == ["IPv4"]
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec and "clusterIP" not in spec
    assert svc["status"] == {"loadBalancer": {}}
    assert SVC.validate(svc) == []
    lb = defaulted(SVC, service(type="LoadBalancer", clusterIP="10.96.0.20"))["spec"]
    assert lb["externalTrafficPolicy"] == "Cluster"
    assert lb["allocateLoadBalancerNodePorts"] is True
    assert lb["clusterIPs"] == ["10.96.0.20"]
    affinity = defaulted(SVC, service(sessionAffinity="ClientIP"))["spec"]
    assert affinity["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    external = defaulted(SVC, {"metadata": {"name": "ext", "namespace": "default"}, "spec": {
        "type": "ExternalName", "externalName": "example.com"}})
    assert "ipFamilies" not in external["spec"] and "internalTrafficPolicy" not in external["spec"]
    assert SVC.validate(external) == []


def test_service_field_errors():
    svc = service(ports=[{"port": 0}, {"name": "http", "port": 80, "targetPort": "HTTP",
                                       "protocol": "HTTP", "nodePort": 30080}],
                  type="Cluster", clusterIP="10.96.0.300")
    assert causes(SVC, svc) == [
        "spec.ports[0].name: Required value",
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", "
        "\"TCP\", \"UDP\"",
        "spec.ports[1].targetPort: Invalid value: \"HTTP\": must contain only alpha-numeric "
        "characters (a-z, 0-9), and hyphens (-)",
        "spec.ports[1].targetPort: Invalid value: \"HTTP\": must contain at least one letter "
        "(a-z)",
        "spec.clusterIPs[0]: Invalid value: \"10.96.0.300\": must be a valid IP address, "
        "(e.g. 10.9.8.7 or 2001:db8::ffff)",
        "spec.type: Unsupported value: \"Cluster\": supported values: \"ClusterIP\", "
        "\"ExternalName\", \"LoadBalancer\", \"NodePort\"",
    ]


def test_service_type_rules():
    assert causes(SVC, service(ports=[{"port": 80, "nodePort": 30080}])) == [
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    assert causes(SVC, service(externalTrafficPolicy="Local")) == [
        "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for "
        "externally-accessible services"]
    assert causes(SVC, service(type="ExternalName", ports=[])) == [
        "spec.externalName: Required value"]
    assert causes(SVC, service(ports=[])) == ["spec.ports: Required value"]
    assert causes(SVC, service(ports=[], clusterIP="None")) == []  # headless needs no ports
    assert causes(SVC, {"metadata": {"name": "1web", "namespace": "default"},
                        "spec": {"ports": [{"port": 80}]}})[0].startswith(
        "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of")
    assert causes(SVC, service(ports=[{"name": "a", "port": 80}, {"name": "a", "port": 80}])) == [
        "spec.ports[1].name: Duplicate value: \"a\"",
        "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", "
        "AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, "
        "StrVal:\"\"}, NodePort:0}",
    ]


def test_service_ip_families_on_an_ipv4_cluster():
    assert causes(SVC, service(ipFamilies=["IPv6"])) == [
        'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster']
    assert causes(SVC, service(ipFamilies=["IPv4", "IPv6"], ipFamilyPolicy="PreferDualStack")) \
        == ['spec.ipFamilies[1]: Invalid value: "IPv6": not configured on this cluster']
    assert causes(SVC, service(ipFamilyPolicy="RequireDualStack")) == [
        'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not '
        "configured for dual-stack services"]
    assert causes(SVC, service(ipFamilies=["IPv4", "IPv6"])) == [
        "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or "
        "'PreferDualStack' when multiple IP families are specified"]
    assert causes(SVC, service(clusterIP="fd00::10")) == [
        'spec.clusterIPs[0]: Invalid value: []string{"fd00::10"}: IPv6 is not configured on '
        "this cluster"]
    assert causes(SVC, service(ipFamilyPolicy="PreferDualStack")) == []
    # Headless Services without a selector are the exception: they get both families.
    headless = defaulted(SVC, service(clusterIP="None", selector=None))["spec"]
    assert (headless["ipFamilyPolicy"], headless["ipFamilies"]) == (
        "RequireDualStack", ["IPv4", "IPv6"])
    assert SVC.validate(defaulted(SVC, service(clusterIP="None", selector=None))) == []
    assert causes(SVC, service(clusterIP="None", ipFamilies=["IPv6"])) == [
        'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster']


def test_service_update_keeps_cluster_ip():
    old = defaulted(SVC, service(clusterIP="10.96.0.20"))
    assert updated(SVC, old, lambda s: s["spec"].update(clusterIP="10.96.0.30",
                                                        clusterIPs=["10.96.0.30"])) == [
        "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.30\"}: may not change once set"]
    # Leaving the address out is fine: the allocator carries the old one over.
    assert updated(SVC, old, lambda s: [s["spec"].pop(k) for k in ("clusterIP", "clusterIPs")]) \
        == []
    assert updated(SVC, old, lambda s: s["spec"]["ports"].append(
        {"name": "https", "port": 443})) == ["spec.ports[0].name: Required value"]


def test_prepare_service_update_drops_type_dependent_fields():
    old = defaulted(SVC, service(type="NodePort", clusterIP="10.96.0.20"))
    old["spec"]["ports"][0]["nodePort"] = 30080
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    prepare_service_update(new, old)
    SVC.default(new)
    assert "nodePort" not in new["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in new["spec"]
    assert SVC.validate(new) + SVC.validate_update(new, old) == []
    moved = copy.deepcopy(old)
    moved["spec"]["clusterIP"] = "10.96.0.99"
    prepare_service_update(moved, old)
    assert moved["spec"]["clusterIPs"] == ["10.96.0.99"]


def test_service_rows():
    assert SVC.row(defaulted(SVC, service(clusterIP="10.96.0.20")), NOW) == [
        "web", "ClusterIP", "10.96.0.20", "<none>", "80/TCP", "5m", "app=web"]
    node_port = defaulted(SVC, service(type="NodePort", clusterIP="10.96.0.21", ports=[
        {"name": "http", "port": 80, "nodePort": 30080},
        {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]))
    assert SVC.row(node_port, NOW)[2:5] == ["10.96.0.21", "<none>", "80:30080/TCP,53:30053/UDP"]
    lb = defaulted(SVC, service(type="LoadBalancer", clusterIP="10.96.0.22"))
    assert SVC.row(lb, NOW)[3] == "<pending>"
    lb["status"]["loadBalancer"]["ingress"] = [{"ip": "192.0.2.10"}]
    assert SVC.row(lb, NOW)[3] == "192.0.2.10"
    external = defaulted(SVC, {"metadata": {"name": "ext", "creationTimestamp": CREATED},
                               "spec": {"type": "ExternalName", "externalName": "example.com"}})
    assert SVC.row(external, NOW) == ["ext", "ExternalName", "<none>", "example.com", "<none>",
                                      "5m", "<none>"]


# --- Namespace --------------------------------------------------------------------

def test_namespace_defaults_and_finalizer_only_on_create():
    ns = defaulted(NS, {"metadata": {"name": "team-a", "creationTimestamp": CREATED}})
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["status"] == {"phase": "Active"}
    assert NS.row(ns, NOW) == ["team-a", "Active", "5m"]
    finalized = copy.deepcopy(ns)
    finalized["metadata"]["resourceVersion"] = "7"
    finalized["spec"]["finalizers"] = []
    NS.default(finalized)
    assert finalized["spec"]["finalizers"] == []


def test_namespace_validation():
    assert causes(NS, {"metadata": {"name": "Team.A"}})[0].startswith(
        "metadata.name: Invalid value: \"Team.A\": a lowercase RFC 1123 label")
    assert causes(NS, {"metadata": {"name": "a"}, "spec": {"finalizers": ["custom"]}}) == [
        "spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name "
        "nor is it fully qualified"]


# --- ConfigMap and Secret ---------------------------------------------------------

def test_config_map():
    cm = {"metadata": {"name": "cfg", "namespace": "default", "creationTimestamp": CREATED},
          "data": {"a.conf": "x", "b": "y"}}
    assert causes(CM, copy.deepcopy(cm)) == []
    assert CM.row(cm, NOW) == ["cfg", 2, "5m"]
    bad = copy.deepcopy(cm)
    bad["data"]["bad key"] = "z"
    assert causes(CM, bad) == [
        "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of "
        "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
        "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]
    frozen = dict(cm, immutable=True)
    assert updated(CM, frozen, lambda c: c["data"].update(a="changed")) == [
        "data: Forbidden: field is immutable when `immutable` is set"]
    assert updated(CM, frozen, lambda c: c.update(immutable=False)) == [
        "immutable: Forbidden: field is immutable when `immutable` is set"]
    assert updated(CM, cm, lambda c: c["data"].update(a="changed")) == []


def test_secret():
    secret = defaulted(SECRET, {"metadata": {"name": "s", "namespace": "default",
                                             "creationTimestamp": CREATED},
                                "data": {"a": base64.b64encode(b"1").decode()},
                                "stringData": {"password": "hunter2"}})
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["password"]) == b"hunter2"
    assert SECRET.validate(secret) == []
    assert SECRET.row(secret, NOW) == ["s", "Opaque", 2, "5m"]
    assert [str(c) for c in SECRET.validate(dict(secret, data={"k": "not base64!"}))] == [
        "data[k]: Invalid value: \"<secret contents redacted>\": illegal base64 data at input "
        "byte 3"]
    tls = dict(secret, type="kubernetes.io/tls", data={})
    assert [str(c) for c in SECRET.validate(tls)] == ["data[tls.crt]: Required value",
                                                      "data[tls.key]: Required value"]
    assert updated(SECRET, secret, lambda s: s.update(type="kubernetes.io/tls")) == [
        "data[tls.crt]: Required value", "data[tls.key]: Required value",
        "type: Invalid value: \"kubernetes.io/tls\": field is immutable"]


# --- Endpoints, Node, Event, ServiceAccount ---------------------------------------

def test_endpoints():
    ep = {"metadata": {"name": "web", "namespace": "default", "creationTimestamp": CREATED},
          "subsets": [{"addresses": [{"ip": f"10.244.0.{i}"} for i in range(1, 4)],
                       "ports": [{"port": 80}, {"name": "metrics", "port": 9090}]}]}
    assert causes(EP, copy.deepcopy(ep)) == ["subsets[0].ports[0].name: Required value"]
    assert EP.row(defaulted(EP, ep), NOW) == [
        "web", "10.244.0.1:80,10.244.0.2:80,10.244.0.3:80 + 3 more...", "5m"]
    assert EP.row({"metadata": {"name": "none", "creationTimestamp": CREATED}}, NOW)[1] == \
        "<none>"
    loop = {"metadata": {"name": "x", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 80}]}]}
    assert causes(EP, loop) == ["subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may "
                                "not be in the loopback range (127.0.0.0/8, ::1/128)"]


def test_node_rows_and_updates():
    node = defaulted(NODE, {
        "metadata": {"name": "node-1", "creationTimestamp": CREATED,
                     "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"podCIDRs": ["10.244.1.0/24"], "unschedulable": True},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                   "capacity": {"cpu": "4"},
                   "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian"}}})
    assert node["status"]["allocatable"] == {"cpu": "4"}
    assert NODE.row(node, NOW) == [
        "node-1", "Ready,SchedulingDisabled", "control-plane", "5m", "v1.32.0",
        "192.168.1.10", "<none>", "Debian", "<unknown>", "<unknown>"]
    bare = defaulted(NODE, {"metadata": {"name": "n", "creationTimestamp": CREATED}})
    assert NODE.row(bare, NOW)[1:3] == ["Unknown", "<none>"]
    assert NODE.validate(node) == []
    assert updated(NODE, node, lambda n: n["spec"].update(podCIDR="10.244.2.0/24")) == [
        "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to "
        "valid"]
    # podCIDR wins over a podCIDRs that disagrees, so changing the list alone changes nothing.
    assert updated(NODE, node, lambda n: n["spec"].update(podCIDRs=["10.244.2.0/24"])) == []
    assert NODE.field_labels["spec.unschedulable"](node) == "true"
    assert NODE.field_labels["spec.unschedulable"](bare) == "false"


def node_with(spec: dict | None = None, status: dict | None = None) -> dict:
    return defaulted(NODE, {"metadata": {"name": "n"}, "spec": spec or {},
                            "status": status or {}})


def test_node_pod_cidrs():
    assert node_with({"podCIDR": "10.244.1.0/24"})["spec"] == {
        "podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}
    assert node_with({"podCIDRs": ["10.244.1.0/24", "fd00::/64"]})["spec"]["podCIDR"] == \
        "10.244.1.0/24"
    assert node_with({"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.1.0/24"]})["spec"][
        "podCIDRs"] == ["10.244.2.0/24"]
    assert NODE.validate(node_with({"podCIDRs": ["10.244.1.0/24", "fd00::/64"]})) == []
    cidr_msg = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
    assert [str(c) for c in NODE.validate(node_with({"podCIDR": "10.244.1/24"}))] == [
        f'spec.podCIDRs[0]: Invalid value: "10.244.1/24": {cidr_msg}']
    node = node_with({"podCIDRs": ["10.244.1.0/24", "bad", "10.244.1.0/24"]})
    assert [str(c) for c in NODE.validate(node)] == [
        f'spec.podCIDRs[1]: Invalid value: "bad": {cidr_msg}',
        "spec.podCIDRs: Internal error: invalid PodCIDRs. failed to check with dual stack with "
        'error:failed to parse cidr value:"bad" with error:invalid CIDR address: bad',
        'spec.podCIDRs: Invalid value: []string{"10.244.1.0/24", "bad", "10.244.1.0/24"}: may '
        "specify no more than one CIDR for each IP family",
        'spec.podCIDRs[2]: Duplicate value: "10.244.1.0/24"',
    ]


def test_node_capacity_and_allocatable():
    node = node_with(status={"capacity": {"cpu": "4000m", "memory": "8192Mi", "pods": 110}})
    assert node["status"]["capacity"] == {"cpu": "4", "memory": "8Gi", "pods": "110"}
    assert node["status"]["allocatable"] == node["status"]["capacity"]
    assert NODE.validate(node) == []
    node = node_with(status={"capacity": {"pods": "110.5", "memory": "-1"},
                             "allocatable": {"cpu": "lots"}})
    assert [str(c) for c in NODE.validate(node)] == [
        'status.capacity.pods: Invalid value: "110500m": must be an integer',
        'status.capacity.memory: Invalid value: "-1": must be greater than or equal to 0',
        f'status.allocatable.cpu: Invalid value: "lots": {QUANTITY_MSG}',
    ]


def test_owner_references_are_checked_on_every_kind():
    owned = {"metadata": {"name": "c", "namespace": "default", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1",
         "controller": True},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2",
         "controller": True}, {}]}}
    assert causes(CM, owned) == [
        'metadata.ownerReferences: Invalid value: [{"apiVersion":"apps/v1",'
        '"kind":"ReplicaSet","name":"a","uid":"1","controller":true},{"apiVersion":"apps/v1",'
        '"kind":"ReplicaSet","name":"b","uid":"2","controller":true},{"apiVersion":"",'
        '"kind":"","name":"","uid":""}]: Only one reference can have Controller set to true. '
        'Found "true" in references for ReplicaSet/a and ReplicaSet/b',
        'metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty',
        'metadata.ownerReferences.kind: Invalid value: "": kind must not be empty',
        'metadata.ownerReferences.name: Invalid value: "": name must not be empty',
        'metadata.ownerReferences.uid: Invalid value: "": uid must not be empty',
    ]


def test_events():
    event = defaulted(EVENT, {
        "metadata": {"name": "web.17a", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default",
                           "fieldPath": "spec.containers{web}"},
        "reason": "Pulled", "message": "Container image pulled\n", "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2024-01-01T11:50:00Z", "lastTimestamp": "2024-01-01T11:58:00Z",
        "count": 4})
    assert event["reportingComponent"] == "" and event["eventTime"] is None
    assert EVENT.validate(event) == []
    assert [c.name for c in EVENT.columns] == ["Last Seen", "Type", "Reason", "Object",
                                               "Subobject", "Source", "Message", "First Seen",
                                               "Count", "Name"]
    assert EVENT.row(event, NOW) == ["2m", "Normal", "Pulled", "pod/web", "spec.containers{web}",
                                     "kubelet, node-1", "Container image pulled", "10m", 4,
                                     "web.17a"]
    moved = copy.deepcopy(event)
    moved["involvedObject"]["namespace"] = "other"
    assert [str(c) for c in EVENT.validate(moved)] == [
        "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]
    labels = EVENT.field_labels
    assert labels["involvedObject.kind"](event) == "Pod"
    assert labels["source"](event) == "kubelet"
    assert labels["reportingComponent"](event) == ""


def test_service_account():
    sa = {"metadata": {"name": "robot", "namespace": "default", "creationTimestamp": CREATED},
          "secrets": [{"name": "robot-token"}]}
    assert causes(SA, sa) == []
    assert SA.row(sa, NOW) == ["robot", 1, "5m"]


# --- field selectors --------------------------------------------------------------

def test_pod_field_labels():
    pod = running_pod()
    labels = POD.field_labels
    assert labels["spec.nodeName"](pod) == "node-1"
    assert labels["spec.restartPolicy"](pod) == "Always"
    assert labels["spec.schedulerName"](pod) == "default-scheduler"
    assert labels["spec.serviceAccountName"](pod) == "default"
    assert labels["spec.hostNetwork"](pod) == "false"
    assert labels["status.phase"](pod) == "Running"
    assert labels["status.podIP"](pod) == "10.244.1.5"
    assert labels["status.nominatedNodeName"](pod) == ""
    assert SECRET.field_labels["type"]({"type": "Opaque"}) == "Opaque"
    assert NS.field_labels["status.phase"]({"status": {"phase": "Active"}}) == "Active"
    assert SVC.field_labels["spec.type"](defaulted(SVC, service())) == "ClusterIP"
