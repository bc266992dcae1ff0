"""networking.k8s.io/v1: Ingress, IngressClass and NetworkPolicy, as Kubernetes 1.32 serves them.

Defaults are networking/v1 SetDefaults_*, validation is pkg/apis/networking/validation and
the table columns are pkg/printers/internalversion's. Every list in these types is atomic
(`+listType=atomic`, no patch strategy), so strategic merge replaces them whole.
"""
from __future__ import annotations

import re
from datetime import datetime

from kwire.api import validation as v
from kwire.api.kinds.apps import format_label_selector, go_invalid, go_strings
from kwire.api.kinds.core import OBJECT_META_SCHEMA
from kwire.api.registry import AGE_COLUMN, NAME_COLUMN, REGISTRY, Column, Kind, Obj
from kwire.api.selectors import validate_label_selector
from kwire.api.tables import age
from kwire.api.validation import Cause, parse_cidr, parse_ip

# --- names (k8s.io/apimachinery/pkg/api/validation/path) ---------------------------------


def path_segment_name(name: str) -> list[str]:
    """IsValidPathSegmentName: the name can be used in a URL path."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in name]


def _hostname(path: str, host: str) -> list[Cause]:
    """A rule or TLS host: a DNS subdomain, or a wildcard one when it holds a `*`."""
    check = v.wildcard_dns1123_subdomain if "*" in host else v.dns1123_subdomain
    return v.invalid_all(path, host, check(host))


# --- Ingress ------------------------------------------------------------------------------

_PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
_INVALID_PATH_SEQUENCES = ["//", "/./", "/../", "%2f", "%2F"]
_INVALID_PATH_SUFFIXES = ["/..", "/."]
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def _validate_local_ref(ref: dict, path: str) -> list[Cause]:
    """validateIngressTypedLocalObjectReference: apiGroup, kind and name of a reference."""
    causes: list[Cause] = []
    if ref.get("apiGroup") is not None:
        causes += v.invalid_all(f"{path}.apiGroup", ref["apiGroup"],
                                v.dns1123_subdomain(ref["apiGroup"]))
    for field in ("kind", "name"):
        value = ref.get(field) or ""
        if not value:
            causes.append(v.required(f"{path}.{field}", f"{field} is required"))
        else:
            causes += v.invalid_all(f"{path}.{field}", value, path_segment_name(value))
    return causes


def _validate_backend(backend: dict, path: str) -> list[Cause]:
    """validateIngressBackend: exactly one of a resource or a service with one port."""
    resource, service = backend.get("resource"), backend.get("service")
    if resource is not None and service is not None:
        return [v.invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        return _validate_local_ref(resource, f"{path}.resource")
    if service is None:
        return [v.invalid(path, "", "resource or service backend is required")]
    causes: list[Cause] = []
    name = service.get("name") or ""
    if not name:
        causes.append(v.required(f"{path}.service.name"))
    else:
        causes += v.invalid_all(f"{path}.service.name", name, v.dns1035_label(name))
    port = service.get("port") or {}
    pname, pnumber = port.get("name") or "", port.get("number") or 0
    if pname and pnumber:
        causes.append(v.invalid(path, "", "cannot set both port name & port number"))
    elif pname:
        causes += v.invalid_all(f"{path}.service.port.name", pname, v.port_name(pname))
    elif pnumber:
        causes += v.port_number(pnumber, f"{path}.service.port.number")
    else:
        causes.append(v.required(path, "port name or number is required"))
    return causes


def _validate_http_path(item: dict, path: str) -> list[Cause]:
    """validateHTTPIngressPath. networking/v1 has no pathType default: it must be given."""
    path_type = item.get("pathType")
    if path_type is None:
        return [v.required(f"{path}.pathType", "pathType must be specified")]
    url = item.get("path") or ""
    causes: list[Cause] = []
    if path_type in ("Exact", "Prefix"):
        if not url.startswith("/"):
            causes.append(v.invalid(f"{path}.path", url, "must be an absolute path"))
        causes += [v.invalid(f"{path}.path", url, f"must not contain '{seq}'")
                   for seq in _INVALID_PATH_SEQUENCES if seq in url]
        causes += [v.invalid(f"{path}.path", url, f"cannot end with '{suffix}'")
                   for suffix in _INVALID_PATH_SUFFIXES if url.endswith(suffix)]
    elif path_type == "ImplementationSpecific":
        if url and not url.startswith("/"):
            causes.append(v.invalid(f"{path}.path", url, "must be an absolute path"))
    else:
        causes.append(v.not_supported(f"{path}.pathType", path_type, _PATH_TYPES))
    return causes + _validate_backend(item.get("backend") or {}, f"{path}.backend")


def _validate_rule(rule: dict, path: str) -> list[Cause]:
    causes: list[Cause] = []
    host = rule.get("host") or ""
    if host:
        if parse_ip(host) is not None:
            causes.append(v.invalid(f"{path}.host", host, "must be a DNS name, not an IP address"))
        causes += _hostname(f"{path}.host", host)
    http = rule.get("http")
    if http is not None:
        paths = http.get("paths") or []
        if not paths:
            causes.append(v.required(f"{path}.http.paths"))
        for i, item in enumerate(paths):
            causes += _validate_http_path(item, f"{path}.http.paths[{i}]")
    return causes


def _validate_ingress_status(status: dict) -> list[Cause]:
    """ValidateIngressLoadBalancerStatus, for writes to /status."""
    causes: list[Cause] = []
    for i, point in enumerate((status.get("loadBalancer") or {}).get("ingress") or []):
        path = f"status.loadBalancer.ingress[{i}]"
        ip, hostname = point.get("ip") or "", point.get("hostname") or ""
        if ip:
            causes += v.ip_address(ip, f"{path}.ip")
        if hostname:
            causes += v.invalid_all(f"{path}.hostname", hostname, v.dns1123_subdomain(hostname))
            if parse_ip(hostname) is not None:
                causes.append(v.invalid(f"{path}.hostname", hostname,
                                        "must be a DNS name, not an IP address"))
    return causes


def validate_ingress(obj: Obj) -> list[Cause]:
    """ValidateIngressCreate. Upstream checks the class annotation on create only; kwire
    checks it on every write."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    causes = v.object_meta(meta, namespaced=True)
    rules = spec.get("rules")
    if not rules and spec.get("defaultBackend") is None:
        causes.append(go_invalid("spec", "[]networking.IngressRule(nil)" if rules is None
                                 else "[]networking.IngressRule{}",
                                 "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        causes += _validate_backend(spec["defaultBackend"], "spec.defaultBackend")
    for i, rule in enumerate(rules or []):
        causes += _validate_rule(rule, f"spec.rules[{i}]")
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate(tls.get("hosts") or []):
            causes += _hostname(f"spec.tls[{i}].hosts[{j}]", host)
        secret = tls.get("secretName") or ""
        if secret:
            causes += v.invalid_all(f"spec.tls[{i}].secretName", secret,
                                    v.dns1123_subdomain(secret))
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        causes += v.invalid_all("spec.ingressClassName", class_name,
                                v.dns1123_subdomain(class_name))
    annotation = (meta.get("annotations") or {}).get(INGRESS_CLASS_ANNOTATION)
    if annotation is not None and class_name is not None and annotation != class_name:
        causes.append(v.invalid(f"annotations.{INGRESS_CLASS_ANNOTATION}", annotation,
                                "must match `ingressClassName` when both are specified"))
    return causes + _validate_ingress_status(obj.get("status") or {})


def _format_hosts(rules: list[dict]) -> str:
    """formatHosts: up to three hosts, `*` when no rule names one."""
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        if not more and rule.get("host"):
            hosts.append(rule["host"])
    if not hosts:
        return "*"
    return ",".join(hosts) + (f" + {len(rules) - 3} more..." if more else "")


def ingress_row(obj: Obj, now: datetime) -> list:
    """printIngress; the server prints wide, so the address is never truncated."""
    spec = obj.get("spec") or {}
    points = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    address = ",".join(sorted({p.get("ip") or p.get("hostname") for p in points
                               if p.get("ip") or p.get("hostname")}))
    return [obj["metadata"]["name"], spec.get("ingressClassName", "<none>"),
            _format_hosts(spec.get("rules") or []), address,
            "80, 443" if spec.get("tls") else "80", age(obj, now)]


INGRESS = REGISTRY.add(Kind(
    group="networking.k8s.io", version="v1", kind="Ingress", plural="ingresses",
    singular="ingress", short_names=("ing",), subresources=("status",),
    status_subresource=True, validate=validate_ingress,
    columns=(
        NAME_COLUMN,
        Column("Class", description="The name of the IngressClass resource that should be used "
               "for additional configuration"),
        Column("Hosts", description="Hosts that incoming requests are matched against before "
               "the ingress rule"),
        Column("Address", description="Address is a list containing ingress points for the "
               "load-balancer"),
        Column("Ports", description="Ports of TLS configurations that open"),
        AGE_COLUMN,
    ),
    row=ingress_row,
    merge_schema={"metadata": {"fields": OBJECT_META_SCHEMA}},
))


# --- IngressClass -------------------------------------------------------------------------

_HTTP_PATH_FMT = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
_HTTP_PATH_RE = re.compile("^" + _HTTP_PATH_FMT + "$")
_SCOPES = ["Cluster", "Namespace"]


def default_ingress_class(obj: Obj) -> None:
    """SetDefaults_IngressClass: parameters are cluster-scoped unless said otherwise."""
    params = (obj.get("spec") or {}).get("parameters")
    if params is not None:
        params.setdefault("scope", "Cluster")


def _domain_prefixed_path(path: str, value: str) -> list[Cause]:
    """IsDomainPrefixedPath: `example.com/some/path`."""
    if not value:
        return [v.required(path)]
    host, slash, rest = value.partition("/")
    if not slash or not host or not rest:
        return [v.invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    causes = v.invalid_all(path, host, v.dns1123_subdomain(host))
    if not _HTTP_PATH_RE.match(rest):
        causes.append(v.invalid(path, rest, v.regex_error("Invalid path", _HTTP_PATH_FMT)))
    return causes


def _validate_parameters(params: dict) -> list[Cause]:
    """validateIngressClassParametersReference."""
    path = "spec.parameters"
    causes = _validate_local_ref(params, path)
    scope = params.get("scope")
    if scope is None:
        return causes + [v.required(f"{path}.scope")]
    if scope not in _SCOPES:
        return causes + [v.not_supported(f"{path}.scope", scope, _SCOPES)]
    namespace = params.get("namespace")
    if scope == "Namespace":
        if namespace is None:
            causes.append(v.required(f"{path}.namespace",
                                     "`parameters.scope` is set to 'Namespace'"))
        else:
            causes += v.invalid_all(f"{path}.namespace", namespace, v.dns1123_label(namespace))
    elif namespace is not None:
        causes.append(v.forbidden(f"{path}.namespace", "`parameters.scope` is set to 'Cluster'"))
    return causes


def validate_ingress_class(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    controller = spec.get("controller") or ""
    causes = v.object_meta(obj.get("metadata"), namespaced=False)
    if len(controller) > 250:
        causes.append(v.too_long("spec.controller", 250))
    causes += _domain_prefixed_path("spec.controller", controller)
    if spec.get("parameters") is not None:
        causes += _validate_parameters(spec["parameters"])
    return causes


def validate_ingress_class_update(new: Obj, old: Obj) -> list[Cause]:
    controller = (new.get("spec") or {}).get("controller", "")
    if controller == (old.get("spec") or {}).get("controller", ""):
        return []
    return [v.immutable("spec.controller", controller)]


def ingress_class_row(obj: Obj, now: datetime) -> list:
    """printIngressClass: parameters as Kind[.apiGroup]/name."""
    spec = obj.get("spec") or {}
    params = spec.get("parameters")
    shown = "<none>"
    if params is not None:
        group = params.get("apiGroup")
        shown = params.get("kind", "") + ("" if group is None else "." + group) \
            + "/" + params.get("name", "")
    return [obj["metadata"]["name"], spec.get("controller", ""), shown, age(obj, now)]


INGRESS_CLASS = REGISTRY.add(Kind(
    group="networking.k8s.io", version="v1", kind="IngressClass", plural="ingressclasses",
    singular="ingressclass", namespaced=False,
    default=default_ingress_class, validate=validate_ingress_class,
    validate_update=validate_ingress_class_update,
    columns=(
        NAME_COLUMN,
        Column("Controller", description="Controller that is responsible for handling this class"),
        Column("Parameters", description="A reference to a resource with additional parameters"),
        AGE_COLUMN,
    ),
    row=ingress_class_row,
    merge_schema={"metadata": {"fields": OBJECT_META_SCHEMA}},
))


# --- NetworkPolicy ------------------------------------------------------------------------

_PROTOCOLS = ["TCP", "UDP", "SCTP"]
_POLICY_TYPES = ["Ingress", "Egress"]


def default_network_policy(obj: Obj) -> None:
    """SetDefaults_NetworkPolicy and SetDefaults_NetworkPolicyPort: policyTypes from the
    rules present (always Ingress), port protocols TCP."""
    spec = obj.setdefault("spec", {})
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
        for port in rule.get("ports") or []:
            port.setdefault("protocol", "TCP")


def _validate_policy_port(port: dict, path: str) -> list[Cause]:
    """ValidateNetworkPolicyPort: a numbered port may open a range up to endPort."""
    causes: list[Cause] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in _PROTOCOLS:
        causes.append(v.not_supported(f"{path}.protocol", protocol, _PROTOCOLS))
    number, end = port.get("port"), port.get("endPort")
    if isinstance(number, int):
        causes += v.port_number(number, f"{path}.port")
        if end is not None:
            if end < number:
                causes.append(v.invalid(f"{path}.endPort", number,
                                        "must be greater than or equal to `port`"))
            causes += v.port_number(end, f"{path}.endPort")
    elif isinstance(number, str):
        if end is not None:
            causes.append(v.invalid(f"{path}.endPort", end,
                                    "may not be specified when `port` is non-numeric"))
        causes += v.invalid_all(f"{path}.port", number, v.port_name(number))
    elif number is not None:
        causes.append(v.invalid(f"{path}.port", number, "must be an integer or a port name"))
    elif end is not None:
        causes.append(v.invalid(f"{path}.endPort", end,
                                "may not be specified when `port` is not specified"))
    return causes


def _validate_ip_block(block: dict, path: str) -> list[Cause]:
    """ValidateIPBlock: except entries must be strict subsets of cidr. As upstream, the
    first unparsable except entry ends the checks."""
    cidr = block.get("cidr") or ""
    if not cidr:
        return [v.required(f"{path}.cidr")]
    network = parse_cidr(cidr)
    if network is None:
        return [v.invalid(f"{path}.cidr", cidr, "not a valid CIDR")]
    causes: list[Cause] = []
    for i, text in enumerate(block.get("except") or []):
        excluded = parse_cidr(text)
        if excluded is None:
            return causes + [v.invalid(f"{path}.except[{i}]", text, "not a valid CIDR")]
        if excluded.version != network.version \
                or excluded.network_address not in network \
                or network.prefixlen >= excluded.prefixlen:
            causes.append(v.invalid(f"{path}.except[{i}]", text,
                                    "must be a strict subset of `cidr`"))
    return causes


def _validate_peer(peer: dict, path: str) -> list[Cause]:
    """ValidateNetworkPolicyPeer: pod and namespace selectors combine; ipBlock stands alone."""
    causes: list[Cause] = []
    present = 0
    for field in ("podSelector", "namespaceSelector"):
        if peer.get(field) is not None:
            present += 1
            causes += validate_label_selector(peer[field], f"{path}.{field}")
    if peer.get("ipBlock") is not None:
        present += 1
        causes += _validate_ip_block(peer["ipBlock"], f"{path}.ipBlock")
    if present == 0:
        causes.append(v.required(path, "must specify a peer"))
    elif present > 1 and peer.get("ipBlock") is not None:
        causes.append(v.forbidden(path, "may not specify both ipBlock and another peer"))
    return causes


def validate_network_policy(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = v.object_meta(obj.get("metadata"), namespaced=True)
    causes += validate_label_selector(spec.get("podSelector") or {}, "spec.podSelector")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            path = f"spec.{direction}[{i}]"
            for j, port in enumerate(rule.get("ports") or []):
                causes += _validate_policy_port(port, f"{path}.ports[{j}]")
            for j, peer in enumerate(rule.get(peers) or []):
                causes += _validate_peer(peer, f"{path}.{peers}[{j}]")
    types = spec.get("policyTypes") or []
    if len(types) > len(_POLICY_TYPES):
        return causes + [go_invalid("spec.policyTypes",
                                    go_strings(types, "[]networking.PolicyType"),
                                    "may not specify more than two policyTypes")]
    return causes + [v.not_supported(f"spec.policyTypes[{i}]", t, _POLICY_TYPES)
                     for i, t in enumerate(types) if t not in _POLICY_TYPES]


def network_policy_row(obj: Obj, now: datetime) -> list:
    pod_selector = (obj.get("spec") or {}).get("podSelector") or {}
    return [obj["metadata"]["name"], format_label_selector(pod_selector), age(obj, now)]


NETWORK_POLICY = REGISTRY.add(Kind(
    group="networking.k8s.io", version="v1", kind="NetworkPolicy", plural="networkpolicies",
    singular="networkpolicy", short_names=("netpol",),
    default=default_network_policy, validate=validate_network_policy,
    columns=(
        NAME_COLUMN,
        Column("Pod-Selector", description="Selects the pods to which this NetworkPolicy object "
               "applies.  The array of ingress rules is applied to any pods selected by this "
               "field. Multiple network policies can select the same set of pods.  In this "
               "case, the ingress rules for each are combined additively. This field is NOT "
               "optional and follows standard label selector semantics. An empty podSelector "
               "matches all pods in this namespace."),
        AGE_COLUMN,
    ),
    row=network_policy_row,
    merge_schema={"metadata": {"fields": OBJECT_META_SCHEMA}},
))
