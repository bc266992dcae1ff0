"""A container's env as the kubelet resolves it: service links, envFrom, env with
valueFrom, precedence, the kubelet's errors, and the fit with build_spec's $(VAR)
expansion (one expansion, never two)."""
import asyncio
import base64

import pytest

from kwire.node.envvars import (EnvError, FieldError, format_map, go_quote, linked_services,
                                pod_field_value, resolve_env, resource_value, service_env)
from kwire.node.runtime.spec import SandboxPaths, build_spec, container_env


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


OBJECTS = {
    ("configmaps", "default", "app"): {"metadata": {"name": "app"},
                                       "data": {"MODE": "prod", "LEVEL": "3", "REF": "$(MODE)"}},
    ("configmaps", "default", "other"): {"metadata": {"name": "other"}, "data": {"MODE": "dev"}},
    ("secrets", "default", "creds"): {"metadata": {"name": "creds"},
                                      "data": {"USER": b64("admin"), "PASS": b64("s3$$cret")}},
}


class FakeGet:
    """get(plural, namespace, name) over a dict, counting reads."""

    def __init__(self, objects=None):
        self.objects = OBJECTS if objects is None else objects
        self.calls = []

    async def __call__(self, plural, namespace, name):
        self.calls.append((plural, namespace, name))
        return self.objects.get((plural, namespace, name))


POD = {
    "metadata": {"name": "web-0", "namespace": "default", "uid": "u-1",
                 "labels": {"app": "web", "tier": "front"},
                 "annotations": {"note": 'say "hi"\n'}},
    "spec": {"nodeName": "node-1", "serviceAccountName": "robot", "enableServiceLinks": True,
             "containers": [{"name": "web", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"},
                                                          "requests": {"cpu": "250m"}}},
                            {"name": "side"}]},
}


def svc(name, ns, ip, *ports):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": list(ports)}}


KUBERNETES = svc("kubernetes", "default", "10.96.0.1", {"name": "https", "port": 443})


def resolve(container, pod=POD, get=None, **kw):
    kw.setdefault("services", [])
    return asyncio.run(resolve_env(pod, container, get or FakeGet(), pod_ip="10.244.1.5",
                                   host_ip="172.18.0.2", **kw))


def final(container, **kw):
    """What the container sees: resolve_env's list through build_spec's expansion."""
    return dict(container_env(container, resolve(container, **kw)))


# ------------------------------------------------------------------ services


def test_service_env_docker_links_format():
    env = service_env([svc("redis-master", "default", "10.96.0.11",
                           {"port": 6379}, {"name": "metrics", "port": 9121, "protocol": "UDP"})])
    assert env == [
        ("REDIS_MASTER_SERVICE_HOST", "10.96.0.11"),
        ("REDIS_MASTER_SERVICE_PORT", "6379"),
        ("REDIS_MASTER_SERVICE_PORT_METRICS", "9121"),
        ("REDIS_MASTER_PORT", "tcp://10.96.0.11:6379"),
        ("REDIS_MASTER_PORT_6379_TCP", "tcp://10.96.0.11:6379"),
        ("REDIS_MASTER_PORT_6379_TCP_PROTO", "tcp"),
        ("REDIS_MASTER_PORT_6379_TCP_PORT", "6379"),
        ("REDIS_MASTER_PORT_6379_TCP_ADDR", "10.96.0.11"),
        ("REDIS_MASTER_PORT_9121_UDP", "udp://10.96.0.11:9121"),
        ("REDIS_MASTER_PORT_9121_UDP_PROTO", "udp"),
        ("REDIS_MASTER_PORT_9121_UDP_PORT", "9121"),
        ("REDIS_MASTER_PORT_9121_UDP_ADDR", "10.96.0.11"),
    ]


def test_service_env_ipv6_brackets_and_headless_skipped():
    env = dict(service_env([svc("v6", "default", "fd00::1", {"port": 80}),
                            svc("headless", "default", "None", {"port": 80}),
                            svc("external", "default", "", {"port": 80})]))
    assert env["V6_PORT"] == "tcp://[fd00::1]:80"
    assert not [k for k in env if k.startswith(("HEADLESS", "EXTERNAL"))]


def test_linked_services_namespace_master_and_links_off():
    services = [KUBERNETES, svc("db", "default", "10.96.0.20", {"port": 5432}),
                svc("api", "prod", "10.96.0.30", {"port": 80}),
                svc("kubernetes", "prod", "10.96.0.31", {"port": 8443})]
    names = lambda chosen: [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in chosen]
    assert names(linked_services(services, "prod", True)) == [("prod", "api"), ("prod", "kubernetes")]
    assert names(linked_services(services, "prod", False)) == [("default", "kubernetes")]
    assert names(linked_services(services, "default", False)) == [("default", "kubernetes")]
    assert names(linked_services(services, "default", True)) == [("default", "db"),
                                                                 ("default", "kubernetes")]


def test_service_links_come_first_and_master_service_always():
    services = [KUBERNETES, svc("db", "default", "10.96.0.20", {"port": 5432})]
    env = resolve({"name": "web", "env": [{"name": "A", "value": "1"}]}, services=services)
    names = [k for k, _ in env]
    assert names[-1] == "A" and "DB_SERVICE_HOST" in names and "KUBERNETES_SERVICE_HOST" in names
    off = {**POD, "spec": {**POD["spec"], "enableServiceLinks": False}}
    env = dict(resolve({"name": "web"}, pod=off, services=services))
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and "DB_SERVICE_HOST" not in env


def test_no_service_list_gives_no_service_variables():
    assert resolve({"name": "web"}, services=None) == []


# ------------------------------------------------------------------ precedence


def test_env_overrides_envfrom_overrides_services():
    services = [svc("mode", "default", "10.96.0.9", {"port": 1})]
    c = {"name": "web",
         "envFrom": [{"configMapRef": {"name": "app"}},
                     {"configMapRef": {"name": "other"}},
                     {"prefix": "S_", "secretRef": {"name": "creds"}}],
         "env": [{"name": "LEVEL", "value": "9"},
                 {"name": "MODE_SERVICE_HOST", "value": "mine"}]}
    env = final(c, services=services)
    assert env["MODE"] == "dev"  # the later envFrom source wins
    assert env["LEVEL"] == "9"  # env wins over envFrom
    assert env["MODE_SERVICE_HOST"] == "mine"  # and over service variables
    assert env["S_USER"] == "admin"
    assert env["MODE_SERVICE_PORT"] == "1"


def test_value_expands_envfrom_earlier_env_and_services_but_not_later_env():
    services = [svc("db", "default", "10.96.0.20", {"port": 5432})]
    c = {"name": "web", "envFrom": [{"configMapRef": {"name": "app"}}],
         "env": [{"name": "URL", "value": "$(MODE)://$(DB_SERVICE_HOST):$(PORT)/$(LATER)"},
                 {"name": "PORT", "value": "80"},
                 {"name": "AGAIN", "value": "$(PORT)-$(URL)"},
                 {"name": "LATER", "value": "x"},
                 {"name": "ESC", "value": "$$(MODE)"}]}
    env = final(c, services=services)
    assert env["URL"] == "prod://10.96.0.20:$(PORT)/$(LATER)"
    assert env["AGAIN"] == "80-prod://10.96.0.20:$(PORT)/$(LATER)"
    assert env["ESC"] == "$(MODE)"


def test_values_from_objects_are_never_expanded():
    c = {"name": "web", "envFrom": [{"configMapRef": {"name": "app"}}],
         "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASS"}}},
                 {"name": "R", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "REF"}}},
                 {"name": "USE", "value": "[$(REF)]"}]}
    env = final(c)
    assert env["REF"] == "$(MODE)"  # envFrom value kept as written
    assert env["R"] == "$(MODE)"
    assert env["P"] == "s3$$cret"  # $$ in a secret is not an escape
    assert env["USE"] == "[$(MODE)]"  # a reference gives the value, not expanded again


def test_resolved_list_keeps_value_templates_and_escapes_literals():
    c = {"name": "web", "env": [{"name": "T", "value": "$(X)"},
                                {"name": "P", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                             "key": "PASS"}}}]}
    assert resolve(c) == [("T", "$(X)"), ("P", "s3$$$$cret")]


def test_objects_read_once_per_call():
    get = FakeGet()
    c = {"name": "web", "envFrom": [{"configMapRef": {"name": "app"}}],
         "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "MODE"}}},
                 {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "LEVEL"}}}]}
    resolve(c, get=get)
    assert get.calls == [("configmaps", "default", "app")]


def test_envfrom_invalid_names_skipped():
    get = FakeGet({("configmaps", "default", "bad"): {"data": {"OK": "1", "A=B": "2"}}})
    env = resolve({"name": "web", "envFrom": [{"configMapRef": {"name": "bad"}}]}, get=get)
    assert env == [("OK", "1")]


# ------------------------------------------------------------------ optional and errors


def test_optional_missing_sources_are_skipped():
    c = {"name": "web",
         "envFrom": [{"configMapRef": {"name": "nope", "optional": True}},
                     {"secretRef": {"name": "nope", "optional": True}}],
         "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k",
                                                                 "optional": True}}},
                 {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "nokey",
                                                                 "optional": True}}},
                 {"name": "C", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nokey",
                                                              "optional": True}}}]}
    assert resolve(c) == []


def test_optional_missing_key_leaves_earlier_value():
    c = {"name": "web", "envFrom": [{"configMapRef": {"name": "app"}}],
         "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "x",
                                                                    "optional": True}}}]}
    assert final(c)["MODE"] == "prod"


@pytest.mark.parametrize("container, message", [
    ({"envFrom": [{"configMapRef": {"name": "x"}}]}, 'configmap "x" not found'),
    ({"envFrom": [{"secretRef": {"name": "x"}}]}, 'secret "x" not found'),
    ({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}]},
     'configmap "x" not found'),
    ({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "k"}}}]},
     "couldn't find key k in ConfigMap default/app"),
    ({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]},
     "couldn't find key k in Secret default/creds"),
    ({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]},
     'secret "gone" not found'),
    ({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.foo"}}}]},
     "field label not supported: spec.foo"),
    ({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}]},
     "unsupported fieldPath: status.phase"),
    ({"env": [{"name": "A", "valueFrom": {"fieldRef": {"apiVersion": "v2",
                                                       "fieldPath": "metadata.name"}}}]},
     "unsupported pod version: v2"),
    ({"env": [{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu",
                                                               "containerName": "nope"}}}]},
     "container nope not found"),
])
def test_errors_carry_kubelet_messages(container, message):
    with pytest.raises(EnvError) as e:
        resolve({"name": "web", **container})
    assert str(e.value) == message


# ------------------------------------------------------------------ downward API


@pytest.mark.parametrize("path, value", [
    ("metadata.name", "web-0"), ("metadata.namespace", "default"), ("metadata.uid", "u-1"),
    ("metadata.labels['app']", "web"), ("metadata.labels['none']", ""),
    ("metadata.annotations['note']", 'say "hi"\n'),
    ("metadata.labels", 'app="web"\ntier="front"'),
    ("metadata.annotations", 'note="say \\"hi\\"\\n"'),
    ("spec.nodeName", "node-1"), ("spec.serviceAccountName", "robot"),
    ("spec.host", "node-1"),
    ("status.podIP", "10.244.1.5"), ("status.podIPs", "10.244.1.5,fd00::5"),
    ("status.hostIP", "172.18.0.2"), ("status.hostIPs", "172.18.0.2"),
])
def test_field_refs(path, value):
    assert pod_field_value(POD, {"apiVersion": "v1", "fieldPath": path},
                           pod_ips=["10.244.1.5", "fd00::5"], host_ips=["172.18.0.2"]) == value


def test_field_ref_bad_subscripts():
    with pytest.raises(FieldError, match="field label does not support subscript: spec.x\\['a'\\]"):
        pod_field_value(POD, {"fieldPath": "spec.x['a']"}, pod_ips=[], host_ips=[])
    with pytest.raises(FieldError, match="invalid key subscript in metadata.labels"):
        pod_field_value(POD, {"fieldPath": "metadata.labels['a b']"}, pod_ips=[], host_ips=[])


def test_field_ref_in_env_is_a_literal():
    pod = {**POD, "metadata": {**POD["metadata"], "labels": {"x": "$(MODE)"}}}
    c = {"name": "web", "envFrom": [{"configMapRef": {"name": "app"}}],
         "env": [{"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['x']"}}},
                 {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}
    env = final(c, pod=pod)
    assert env["L"] == "$(MODE)" and env["IP"] == "10.244.1.5"


def test_go_quote_and_format_map():
    assert go_quote('a"b\\c\td\x01é\u200b') == '"a\\"b\\\\c\\td\\x01é\\u200b"'
    assert format_map({"b": "2", "a": "1"}) == 'a="1"\nb="2"'
    assert format_map(None) == ""


WEB = POD["spec"]["containers"][0]


@pytest.mark.parametrize("selector, value", [
    ({"resource": "limits.cpu"}, "1"),  # 500m rounds up to 1 core
    ({"resource": "limits.cpu", "divisor": "1m"}, "500"),
    ({"resource": "requests.cpu", "divisor": "100m"}, "3"),  # 2.5 rounds up
    ({"resource": "limits.memory"}, str(64 * 1024 * 1024)),
    ({"resource": "limits.memory", "divisor": "1Mi"}, "64"),
    ({"resource": "limits.memory", "divisor": "1M"}, "68"),
    ({"resource": "requests.memory"}, "0"),
    ({"resource": "limits.ephemeral-storage", "divisor": "1Gi"}, "10"),  # node allocatable
    ({"resource": "limits.hugepages-2Mi"}, "0"),
    ({"resource": "limits.cpu", "divisor": "0"}, "1"),
])
def test_resource_values(selector, value):
    allocatable = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "10Gi"}
    assert resource_value(WEB, selector, allocatable) == value


def test_unset_limits_are_the_node_allocatable():
    side = POD["spec"]["containers"][1]
    assert resource_value(side, {"resource": "limits.cpu"}, {"cpu": "4"}) == "4"
    assert resource_value(side, {"resource": "limits.memory", "divisor": "1Gi"},
                          {"memory": "8Gi"}) == "8"
    assert resource_value(side, {"resource": "limits.cpu"}, None) == "0"
    with pytest.raises(FieldError, match="unsupported container resource : limits.gpu"):
        resource_value(side, {"resource": "limits.gpu"})


def test_resource_field_ref_env_defaults_to_own_container_or_names_one():
    c = {"name": "side",
         "env": [{"name": "OWN", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                 {"name": "WEB", "valueFrom": {"resourceFieldRef": {
                     "resource": "limits.memory", "divisor": "1Mi", "containerName": "web"}}}]}
    env = final(c, allocatable={"cpu": "2", "memory": "1Gi"})
    assert env == {"OWN": "2", "WEB": "64"}


def test_build_spec_gets_the_kubelet_values_once_expanded():
    c = {"name": "web", "image": "busybox", "command": ["echo", "$(P)", "$(URL)"],
         "envFrom": [{"configMapRef": {"name": "app"}}],
         "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASS"}}},
                 {"name": "URL", "value": "$(MODE)/$(REF)"}]}
    sandbox = SandboxPaths(netns="/n", utsns="/u", ipcns="/i", hostname="web-0")
    spec = build_spec(POD, c, {"Env": ["MODE=image"]}, rootfs="/r", sandbox=sandbox,
                      env=resolve(c))
    env = spec["process"]["env"]
    assert "P=s3$$cret" in env and "REF=$(MODE)" in env and "URL=prod/$(MODE)" in env
    assert "MODE=prod" in env and "MODE=image" not in env
    assert spec["process"]["args"] == ["echo", "s3$$cret", "prod/$(MODE)"]
