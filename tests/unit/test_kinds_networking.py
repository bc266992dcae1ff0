"""networking.k8s.io, discovery.k8s.io and coordination.k8s.io kinds, as in Kubernetes 1.32."""
from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from kwire.api.kinds.coordination import LEASE
from kwire.api.kinds.discovery import ENDPOINT_SLICE
from kwire.api.kinds.networking import INGRESS, INGRESS_CLASS, NETWORK_POLICY, parse_cidr, parse_ip
from kwire.api.validation import Cause

NOW = datetime(2024, 1, 1, 3, 0, tzinfo=timezone.utc)
CREATED = "2024-01-01T00:00:00Z"


def meta(name: str = "web", namespace: str | None = "default") -> dict:
    m = {"name": name, "creationTimestamp": CREATED}
    if namespace:
        m["namespace"] = namespace
    return m


def causes(kind, obj: dict) -> list[str]:
    kind.default(obj)
    return [str(c) for c in kind.validate(obj)]


def columns(kind) -> list[tuple[str, str, int]]:
    return [(c.name, c.type, c.priority) for c in kind.columns]


@pytest.mark.parametrize("kind, group, plural, short, namespaced, subresources", [
    (INGRESS, "networking.k8s.io", "ingresses", ("ing",), True, ("status",)),
    (INGRESS_CLASS, "networking.k8s.io", "ingressclasses", (), False, ()),
    (NETWORK_POLICY, "networking.k8s.io", "networkpolicies", ("netpol",), True, ()),
    (ENDPOINT_SLICE, "discovery.k8s.io", "endpointslices", (), True, ()),
    (LEASE, "coordination.k8s.io", "leases", (), True, ()),
])
def test_registration(kind, group, plural, short, namespaced, subresources):
    assert (kind.group, kind.version, kind.plural, kind.short_names, kind.namespaced,
            kind.subresources, kind.status_subresource, kind.categories, kind.field_labels) == \
        (group, "v1", plural, short, namespaced, subresources, bool(subresources), (), {})
    assert set(kind.merge_schema) == {"metadata"}


def test_generation_paths():
    assert ENDPOINT_SLICE.spec_paths == ("addressType", "endpoints", "ports")
    assert LEASE.spec_paths == ()
    assert INGRESS.spec_paths == NETWORK_POLICY.spec_paths == INGRESS_CLASS.spec_paths == ("spec",)


# --- Ingress ------------------------------------------------------------------------------


def ingress(**spec) -> dict:
    rule = {"host": "example.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix",
         "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}
    body = {"rules": [rule]}
    body.update(spec)
    return {"metadata": meta(), "spec": body}


def http_path(**item) -> dict:
    return ingress(rules=[{"http": {"paths": [item]}}])


def test_valid_ingress_has_no_defaults():
    obj = ingress(ingressClassName="nginx", tls=[{"hosts": ["*.example.com"], "secretName": "tls"}])
    before = copy.deepcopy(obj)
    assert causes(INGRESS, obj) == []
    assert obj == before


def test_ingress_needs_rules_or_default_backend():
    assert causes(INGRESS, {"metadata": meta(), "spec": {}}) == [
        "spec: Invalid value: []networking.IngressRule(nil): "
        "either `defaultBackend` or `rules` must be specified"]
    assert causes(INGRESS, {"metadata": meta(), "spec": {"rules": []}})[0].startswith(
        "spec: Invalid value: []networking.IngressRule{}: ")


def test_path_type_is_required_in_v1():
    assert causes(INGRESS, http_path(path="/", backend={"service": {"name": "web"}})) == [
        "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"]


def test_paths():
    backend = {"service": {"name": "web", "port": {"name": "http"}}}
    assert causes(INGRESS, http_path(path="api//v1/.", pathType="Exact", backend=backend)) == [
        'spec.rules[0].http.paths[0].path: Invalid value: "api//v1/.": must be an absolute path',
        "spec.rules[0].http.paths[0].path: Invalid value: \"api//v1/.\": must not contain '//'",
        "spec.rules[0].http.paths[0].path: Invalid value: \"api//v1/.\": cannot end with '/.'"]
    assert causes(INGRESS, http_path(pathType="ImplementationSpecific", backend=backend)) == []
    assert causes(INGRESS, http_path(path="/", pathType="Regex", backend=backend)) == [
        'spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": '
        'supported values: "Exact", "ImplementationSpecific", "Prefix"']


@pytest.mark.parametrize("backend, expected", [
    ({}, ['spec.rules[0].http.paths[0].backend: Invalid value: "": '
          "resource or service backend is required"]),
    ({"service": {"name": "web", "port": {"number": 80}},
      "resource": {"kind": "Bucket", "name": "b"}},
     ['spec.rules[0].http.paths[0].backend: Invalid value: "": '
      "cannot set both resource and service backends"]),
    ({"service": {"name": "Web", "port": {"name": "http", "number": 80}}},
     ['spec.rules[0].http.paths[0].backend.service.name: Invalid value: "Web": a DNS-1035 '
      "label must consist of lower case alphanumeric characters or '-', start with an "
      "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
      "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
      'spec.rules[0].http.paths[0].backend: Invalid value: "": '
      "cannot set both port name & port number"]),
    ({"service": {"port": {"number": 70000}}},
     ["spec.rules[0].http.paths[0].backend.service.name: Required value",
      "spec.rules[0].http.paths[0].backend.service.port.number: Invalid value: 70000: "
      "must be between 1 and 65535, inclusive"]),
    ({"service": {"name": "web", "port": {"name": "HTTP"}}},
     ['spec.rules[0].http.paths[0].backend.service.port.name: Invalid value: "HTTP": '
      "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
      'spec.rules[0].http.paths[0].backend.service.port.name: Invalid value: "HTTP": '
      "must contain at least one letter (a-z)"]),
    ({"service": {"name": "web"}},
     ["spec.rules[0].http.paths[0].backend: Required value: port name or number is required"]),
    ({"resource": {"apiGroup": "k8s.example.com", "name": "a/b"}},
     ["spec.rules[0].http.paths[0].backend.resource.kind: Required value: kind is required",
      "spec.rules[0].http.paths[0].backend.resource.name: Invalid value: \"a/b\": "
      "may not contain '/'"]),
])
def test_backends(backend, expected):
    assert causes(INGRESS, http_path(path="/", pathType="Prefix", backend=backend)) == expected


def test_hosts():
    obj = ingress()
    obj["spec"]["rules"][0]["host"] = "10.0.0.1"
    obj["spec"]["rules"].append({"host": "*.*.example.com"})
    obj["spec"]["rules"].append({"host": "a.example.com", "http": {}})
    assert causes(INGRESS, obj) == [
        'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address',
        'spec.rules[1].host: Invalid value: "*.*.example.com": a wildcard DNS-1123 subdomain '
        "must start with '*.', followed by a valid DNS subdomain, which must consist of lower "
        "case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. "
        "'*.example.com', regex used for validation is "
        "'\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        "spec.rules[2].http.paths: Required value"]


def test_class_annotation_must_match_class_name():
    obj = ingress(ingressClassName="nginx")
    obj["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "traefik"}
    assert causes(INGRESS, obj) == [
        'annotations.kubernetes.io/ingress.class: Invalid value: "traefik": '
        "must match `ingressClassName` when both are specified"]


def test_ingress_status():
    obj = ingress()
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.300"}, {"hostname": "1.2.3.4"}]}}
    assert causes(INGRESS, obj) == [
        'status.loadBalancer.ingress[0].ip: Invalid value: "10.0.0.300": '
        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        'status.loadBalancer.ingress[1].hostname: Invalid value: "1.2.3.4": '
        "must be a DNS name, not an IP address"]


def test_ingress_table():
    assert columns(INGRESS) == [("Name", "string", 0), ("Class", "string", 0),
                                ("Hosts", "string", 0), ("Address", "string", 0),
                                ("Ports", "string", 0), ("Age", "string", 0)]
    obj = ingress()
    assert INGRESS.row(obj, NOW) == ["web", "<none>", "example.com", "", "80", "3h"]
    obj["spec"].update(ingressClassName="nginx", tls=[{"hosts": ["example.com"]}])
    obj["spec"]["rules"] += [{"host": f"h{i}.example.com"} for i in range(4)]
    obj["status"] = {"loadBalancer": {"ingress": [
        {"ip": "192.168.10.20"}, {"hostname": "lb.example.com"}, {"ip": "10.0.0.1"}]}}
    assert INGRESS.row(obj, NOW) == [
        "web", "nginx", "example.com,h0.example.com,h1.example.com + 2 more...",
        "10.0.0.1,192.168.10.20,lb.example.com", "80, 443", "3h"]
    default_only = {"metadata": meta(), "spec": {"defaultBackend": {"service": {"name": "web"}}}}
    assert INGRESS.row(default_only, NOW)[2] == "*"


# --- IngressClass -------------------------------------------------------------------------


def ingress_class(**spec) -> dict:
    body = {"controller": "example.com/ingress"}
    body.update(spec)
    return {"metadata": meta("nginx", None), "spec": body}


def test_ingress_class_defaults_parameter_scope():
    obj = ingress_class(parameters={"kind": "Params", "name": "p"})
    assert causes(INGRESS_CLASS, obj) == []
    assert obj["spec"]["parameters"] == {"kind": "Params", "name": "p", "scope": "Cluster"}


def test_ingress_class_controller():
    assert causes(INGRESS_CLASS, ingress_class(controller="")) == \
        ["spec.controller: Required value"]
    assert causes(INGRESS_CLASS, ingress_class(controller="nginx")) == [
        'spec.controller: Invalid value: "nginx": must be a domain-prefixed path '
        '(such as "acme.io/foo")']
    assert causes(INGRESS_CLASS, ingress_class(controller="example.com/a b")) == [
        "spec.controller: Invalid value: \"a b\": Invalid path (regex used for validation is "
        "'[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')"]
    assert causes(INGRESS_CLASS, ingress_class(controller="example.com/" + "a" * 240)) == [
        "spec.controller: Too long: may not be more than 250 bytes"]


def test_ingress_class_parameters():
    namespaced = {"kind": "P", "name": "p", "scope": "Namespace"}
    assert causes(INGRESS_CLASS, ingress_class(parameters=namespaced)) == [
        "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]
    cluster = {"kind": "P", "name": "p", "namespace": "default"}
    assert causes(INGRESS_CLASS, ingress_class(parameters=cluster)) == [
        "spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]
    assert causes(INGRESS_CLASS, ingress_class(parameters={"kind": "P", "name": "p",
                                                           "scope": "Global"})) == [
        'spec.parameters.scope: Unsupported value: "Global": '
        'supported values: "Cluster", "Namespace"']


def test_ingress_class_metadata_is_cluster_scoped():
    obj = ingress_class()
    obj["metadata"]["namespace"] = "default"
    assert causes(INGRESS_CLASS, obj) == ["metadata.namespace: Forbidden: not allowed on this type"]


def test_ingress_class_controller_is_immutable():
    old = ingress_class()
    new = ingress_class(controller="example.com/other")
    assert INGRESS_CLASS.validate_update(new, old) == [Cause(
        "spec.controller", "FieldValueInvalid",
        'Invalid value: "example.com/other": field is immutable')]
    assert INGRESS_CLASS.validate_update(copy.deepcopy(old), old) == []


def test_ingress_class_table():
    assert columns(INGRESS_CLASS) == [("Name", "string", 0), ("Controller", "string", 0),
                                      ("Parameters", "string", 0), ("Age", "string", 0)]
    assert INGRESS_CLASS.row(ingress_class(), NOW) == ["nginx", "example.com/ingress",
                                                       "<none>", "3h"]
    params = {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external"}
    assert INGRESS_CLASS.row(ingress_class(parameters=params), NOW)[2] == \
        "IngressParameters.k8s.example.com/external"


# --- NetworkPolicy ------------------------------------------------------------------------


def policy(**spec) -> dict:
    return {"metadata": meta("deny"), "spec": {"podSelector": {}, **spec}}


def test_network_policy_defaults():
    obj = policy(ingress=[{"ports": [{"port": 80}]}])
    assert causes(NETWORK_POLICY, obj) == []
    assert obj["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"],
                           "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}
    egress = policy(egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}])
    NETWORK_POLICY.default(egress)
    assert egress["spec"]["policyTypes"] == ["Ingress", "Egress"]
    explicit = policy(egress=[{}], policyTypes=["Egress"])
    NETWORK_POLICY.default(explicit)
    assert explicit["spec"]["policyTypes"] == ["Egress"]


def test_network_policy_ports():
    ports = [{"port": 0}, {"port": 100, "endPort": 90}, {"port": "http", "endPort": 90},
             {"endPort": 90}, {"port": 1, "protocol": "ICMP"}]
    assert causes(NETWORK_POLICY, policy(ingress=[{"ports": ports}])) == [
        "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.ingress[0].ports[1].endPort: Invalid value: 100: "
        "must be greater than or equal to `port`",
        "spec.ingress[0].ports[2].endPort: Invalid value: 90: "
        "may not be specified when `port` is non-numeric",
        "spec.ingress[0].ports[3].endPort: Invalid value: 90: "
        "may not be specified when `port` is not specified",
        'spec.ingress[0].ports[4].protocol: Unsupported value: "ICMP": '
        'supported values: "TCP", "UDP", "SCTP"']


def test_network_policy_peers():
    peers = [{}, {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}},
             {"podSelector": {}, "namespaceSelector": {"matchLabels": {"team": "a"}}},
             {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "192.168.0.0/16",
                                                             "10.0.0.0/8", "bad", "10.2.0.0/16"]}},
             {"ipBlock": {"cidr": "10.0.0.0/33"}}, {"ipBlock": {}}]
    assert causes(NETWORK_POLICY, policy(egress=[{"to": peers}])) == [
        "spec.egress[0].to[0]: Required value: must specify a peer",
        "spec.egress[0].to[1]: Forbidden: may not specify both ipBlock and another peer",
        'spec.egress[0].to[3].ipBlock.except[1]: Invalid value: "192.168.0.0/16": '
        "must be a strict subset of `cidr`",
        'spec.egress[0].to[3].ipBlock.except[2]: Invalid value: "10.0.0.0/8": '
        "must be a strict subset of `cidr`",
        'spec.egress[0].to[3].ipBlock.except[3]: Invalid value: "bad": not a valid CIDR',
        'spec.egress[0].to[4].ipBlock.cidr: Invalid value: "10.0.0.0/33": not a valid CIDR',
        "spec.egress[0].to[5].ipBlock.cidr: Required value"]


def test_network_policy_types_and_selector():
    obj = policy(policyTypes=["Ingress", "Egress", "Ingress"])
    assert causes(NETWORK_POLICY, obj) == [
        'spec.policyTypes: Invalid value: []networking.PolicyType{"Ingress", "Egress", '
        '"Ingress"}: may not specify more than two policyTypes']
    obj = policy(policyTypes=["Inbound"])
    obj["spec"]["podSelector"] = {"matchExpressions": [{"key": "app", "operator": "In"}]}
    assert causes(NETWORK_POLICY, obj) == [
        "spec.podSelector.matchExpressions[0].values: Required value: "
        "must be specified when `operator` is 'In' or 'NotIn'",
        'spec.policyTypes[0]: Unsupported value: "Inbound": supported values: "Ingress", "Egress"']


def test_network_policy_table():
    assert columns(NETWORK_POLICY) == [("Name", "string", 0), ("Pod-Selector", "string", 0),
                                       ("Age", "string", 0)]
    assert NETWORK_POLICY.row(policy(), NOW) == ["deny", "<none>", "3h"]
    obj = policy(podSelector={"matchLabels": {"role": "db", "app": "pg"}})
    assert NETWORK_POLICY.row(obj, NOW)[1] == "app=pg,role=db"
    assert NETWORK_POLICY.row({"metadata": meta("x"), "spec": {}}, NOW)[1] == "<none>"


# --- EndpointSlice ------------------------------------------------------------------------


def slice_(address_type: str = "IPv4", endpoints=None, ports=None) -> dict:
    obj = {"metadata": meta("web-abc12"), "addressType": address_type,
           "endpoints": endpoints if endpoints is not None else [{"addresses": ["10.0.0.5"]}]}
    if ports is not None:
        obj["ports"] = ports
    return obj


def test_endpoint_slice_port_defaults():
    obj = slice_(ports=[{"port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}])
    assert causes(ENDPOINT_SLICE, obj) == []
    assert obj["ports"] == [{"port": 80, "name": "", "protocol": "TCP"},
                            {"name": "dns", "port": 53, "protocol": "UDP"}]


def test_endpoint_slice_address_type():
    obj = slice_()
    del obj["addressType"]
    assert causes(ENDPOINT_SLICE, obj) == ["addressType: Required value"]
    assert causes(ENDPOINT_SLICE, slice_("IP")) == [
        'addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6"']


def test_endpoint_slice_addresses():
    endpoints = [{"addresses": []},
                 {"addresses": ["10.0.0.256", "127.0.0.1", "0.0.0.0", "169.254.1.1",
                                "224.0.0.5", "fd00::1", "::ffff:10.0.0.1"]}]
    assert causes(ENDPOINT_SLICE, slice_(endpoints=endpoints)) == [
        "endpoints[0].addresses: Required value: must contain at least 1 address",
        'endpoints[1].addresses[0]: Invalid value: "10.0.0.256": must be a valid IPv4 address',
        'endpoints[1].addresses[0]: Invalid value: "10.0.0.256": must be a valid IP address',
        'endpoints[1].addresses[1]: Invalid value: "127.0.0.1": '
        "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        'endpoints[1].addresses[2]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
        'endpoints[1].addresses[3]: Invalid value: "169.254.1.1": '
        "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        'endpoints[1].addresses[4]: Invalid value: "224.0.0.5": '
        "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        'endpoints[1].addresses[5]: Invalid value: "fd00::1": must be a valid IPv4 address']
    too_many = [{"addresses": [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(101)]}]
    assert causes(ENDPOINT_SLICE, slice_(endpoints=too_many)) == [
        "endpoints[0].addresses: Too many: 101: must have at most 100 items"]


def test_endpoint_slice_fqdn_and_fields():
    endpoints = [{"addresses": ["db.example.com.", "localhost", "a_b.example.com"]},
                 {"addresses": ["x.example.com"], "hostname": "X", "nodeName": "node_1",
                  "hints": {"forZones": [{"name": "a"}, {"name": "a"}]}}]
    assert causes(ENDPOINT_SLICE, slice_("FQDN", endpoints)) == [
        'endpoints[0].addresses[1]: Invalid value: "localhost": '
        "should be a domain with at least two segments separated by dots",
        'endpoints[0].addresses[2]: Invalid value: "a_b.example.com": a lowercase RFC 1123 '
        "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
        "start and end with an alphanumeric character (e.g. 'example.com', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        'endpoints[1].nodeName: Invalid value: "node_1": a lowercase RFC 1123 subdomain must '
        "consist of lower case alphanumeric characters, '-' or '.', and must start and end "
        "with an alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        'endpoints[1].hostname: Invalid value: "X": a lowercase RFC 1123 label must consist of '
        "lower case alphanumeric characters or '-', and must start and end with an "
        "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        'endpoints[1].hints.forZones[1].name: Duplicate value: "a"']


def test_endpoint_slice_ports():
    ports = [{"name": "http", "port": 80}, {"name": "http", "port": 81, "protocol": "ICMP"},
             {"name": "Bad", "appProtocol": "a/b/c"}]
    assert causes(ENDPOINT_SLICE, slice_(ports=ports)) == [
        'ports[1].name: Duplicate value: "http"',
        'ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
        'ports[2].name: Invalid value: "Bad": a lowercase RFC 1123 label must consist of lower '
        "case alphanumeric characters or '-', and must start and end with an alphanumeric "
        "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        'ports[2].appProtocol: Invalid value: "a/b/c": a qualified name must consist of '
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and "
        "'/' (e.g. 'example.com/MyName')"]


def test_endpoint_slice_address_type_is_immutable():
    old = slice_()
    new = slice_("IPv6", endpoints=[{"addresses": ["fd00::5"]}])
    assert ENDPOINT_SLICE.validate_update(new, old) == [Cause(
        "addressType", "FieldValueInvalid", 'Invalid value: "IPv6": field is immutable')]
    assert ENDPOINT_SLICE.validate_update(copy.deepcopy(old), old) == []


def test_endpoint_slice_table():
    assert columns(ENDPOINT_SLICE) == [("Name", "string", 0), ("AddressType", "string", 0),
                                       ("Ports", "string", 0), ("Endpoints", "string", 0),
                                       ("Age", "string", 0)]
    assert ENDPOINT_SLICE.row(slice_(endpoints=[]), NOW) == \
        ["web-abc12", "IPv4", "<unset>", "<unset>", "3h"]
    obj = slice_(endpoints=[{"addresses": ["10.0.0.1", "10.0.0.2"]},
                            {"addresses": ["10.0.0.3", "10.0.0.4", "10.0.0.5"]}],
                 ports=[{"port": 80}, {"name": "metrics"}, {}, {"port": 443}])
    assert ENDPOINT_SLICE.row(obj, NOW)[2:4] == [
        "80,metrics,* + 1 more...", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."]
    ENDPOINT_SLICE.default(obj)
    # once defaulted an unnamed, numberless port has the name "", as upstream prints it
    assert ENDPOINT_SLICE.row(obj, NOW)[2] == "80,metrics, + 1 more..."


# --- Lease --------------------------------------------------------------------------------


def lease(**spec) -> dict:
    return {"metadata": meta("node-1", "kube-node-lease"), "spec": spec}


def test_lease_validation():
    assert causes(LEASE, lease(holderIdentity="node-1", leaseDurationSeconds=40)) == []
    assert causes(LEASE, lease(leaseDurationSeconds=0, leaseTransitions=-1)) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
        "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"]


def test_lease_drops_gated_fields():
    obj = lease(holderIdentity="a", strategy="OldestEmulationVersion", preferredHolder="b")
    LEASE.default(obj)
    assert obj["spec"] == {"holderIdentity": "a"}


def test_lease_table():
    assert columns(LEASE) == [("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)]
    assert LEASE.row(lease(holderIdentity="node-1"), NOW) == ["node-1", "node-1", "3h"]
    assert LEASE.row(lease(), NOW) == ["node-1", "", "3h"]


# --- address parsing ------------------------------------------------------------------------


def test_sloppy_parsing():
    assert str(parse_ip("010.001.0.1")) == "10.1.0.1"
    assert str(parse_ip("::ffff:10.0.0.1")) == "10.0.0.1"
    assert parse_ip("10.0.0") is None
    assert str(parse_cidr("10.1.2.3/8")) == "10.0.0.0/8"
    assert parse_cidr("10.0.0.0") is None and parse_cidr("10.0.0.0/x") is None
