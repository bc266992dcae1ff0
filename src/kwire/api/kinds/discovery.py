"""discovery.k8s.io/v1 EndpointSlice, as Kubernetes 1.32 serves it.

Defaults are discovery/v1 SetDefaults_EndpointPort, validation is
pkg/apis/discovery/validation and the table is pkg/printers/internalversion's. The
endpoints and ports lists are atomic upstream, so strategic merge replaces them whole;
an EndpointSlice has no spec, so its generation follows these top-level fields.
"""
from __future__ import annotations

from datetime import datetime

from kwire.api import validation as v
from kwire.api.kinds.core import OBJECT_META_SCHEMA
from kwire.api.registry import AGE_COLUMN, NAME_COLUMN, REGISTRY, Column, Kind, Obj
from kwire.api.tables import age
from kwire.api.validation import Cause

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
MAX_ENDPOINTS, MAX_ADDRESSES, MAX_PORTS, MAX_TOPOLOGY_LABELS, MAX_ZONE_HINTS = \
    1000, 100, 20000, 16, 8


def too_many(path: str, actual: int, limit: int) -> Cause:
    """field.TooMany."""
    return Cause(path, v.TOO_MANY, f"Too many: {actual}: must have at most {limit} items")


def default_endpoint_slice(obj: Obj) -> None:
    """SetDefaults_EndpointPort: an unnamed port is named "", protocol TCP."""
    for port in obj.get("ports") or []:
        port.setdefault("name", "")
        port.setdefault("protocol", "TCP")


def _endpoint_ip(path: str, address: str, version: int) -> list[Cause]:
    """IsValidIPv4Address / IsValidIPv6Address, then ValidateEndpointIP (which is
    ValidateNonSpecialIP); kwire reports both, so a bad address gets both messages."""
    ip = v.parse_ip(address)
    causes = []
    if ip is None or ip.version != version:
        causes.append(v.invalid(path, address, f"must be a valid IPv{version} address"))
    return causes + v.non_special_ip(address, path)


def _fqdn(path: str, name: str) -> list[Cause]:
    """IsFullyQualifiedDomainName: at least two labels; a trailing dot is allowed."""
    if not name:
        return [v.required(path)]
    name = name.removesuffix(".")
    errs = v.dns1123_subdomain(name)
    if errs:
        return [v.invalid(path, name, ",".join(errs))]
    labels = name.split(".")
    if len(labels) < 2:
        return [v.invalid(path, name, "should be a domain with at least two segments "
                                      "separated by dots")]
    for label in labels:
        errs = v.dns1123_label(label)
        if errs:
            return [v.invalid(path, label, ",".join(errs))]
    return []


def _validate_hints(hints: dict, path: str) -> list[Cause]:
    zones = hints.get("forZones") or []
    if len(zones) > MAX_ZONE_HINTS:
        return [too_many(f"{path}.forZones", len(zones), MAX_ZONE_HINTS)]
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, zone in enumerate(zones):
        zpath, name = f"{path}.forZones[{i}].name", zone.get("name", "")
        if name in seen:
            causes.append(v.duplicate(zpath, name))
        seen.add(name)
        causes += v.invalid_all(zpath, name, v.label_value(name))
    return causes


def _validate_endpoint(endpoint: dict, address_type: str, path: str) -> list[Cause]:
    causes: list[Cause] = []
    addresses = endpoint.get("addresses") or []
    if not addresses:
        causes.append(v.required(f"{path}.addresses", "must contain at least 1 address"))
    elif len(addresses) > MAX_ADDRESSES:
        causes.append(too_many(f"{path}.addresses", len(addresses), MAX_ADDRESSES))
    for i, address in enumerate(addresses):
        apath = f"{path}.addresses[{i}]"
        if address_type in ("IPv4", "IPv6"):
            causes += _endpoint_ip(apath, address, int(address_type[-1]))
        elif address_type == "FQDN":
            causes += _fqdn(apath, address)
    node = endpoint.get("nodeName")
    if node is not None:
        causes += v.invalid_all(f"{path}.nodeName", node, v.dns1123_subdomain(node))
    topology = endpoint.get("deprecatedTopology")
    if topology and len(topology) > MAX_TOPOLOGY_LABELS:
        causes.append(too_many(f"{path}.deprecatedTopology", len(topology), MAX_TOPOLOGY_LABELS))
    causes += v.labels(topology, f"{path}.deprecatedTopology")
    hostname = endpoint.get("hostname")
    if hostname is not None:
        causes += v.invalid_all(f"{path}.hostname", hostname, v.dns1123_label(hostname))
    if endpoint.get("hints") is not None:
        causes += _validate_hints(endpoint["hints"], f"{path}.hints")
    return causes


def _validate_port(port: dict, path: str, seen: set[str]) -> list[Cause]:
    causes: list[Cause] = []
    name = port.get("name", "")
    if name:
        causes += v.invalid_all(f"{path}.name", name, v.dns1123_label(name))
    if name in seen:
        causes.append(v.duplicate(f"{path}.name", name))
    seen.add(name)
    protocol = port.get("protocol")
    if protocol is None:
        causes.append(v.required(f"{path}.protocol"))
    elif protocol not in PROTOCOLS:
        causes.append(v.not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    app_protocol = port.get("appProtocol")
    if app_protocol is not None:
        causes += v.invalid_all(f"{path}.appProtocol", app_protocol,
                                v.qualified_name(app_protocol))
    return causes


def validate_endpoint_slice(obj: Obj) -> list[Cause]:
    """ValidateEndpointSlice. Addresses are checked only for a known addressType."""
    causes = v.object_meta(obj.get("metadata"), namespaced=True)
    address_type = obj.get("addressType") or ""
    if not address_type:
        causes.append(v.required("addressType"))
    elif address_type not in ADDRESS_TYPES:
        causes.append(v.not_supported("addressType", address_type, ADDRESS_TYPES))
    endpoints = obj.get("endpoints") or []
    if len(endpoints) > MAX_ENDPOINTS:
        causes.append(too_many("endpoints", len(endpoints), MAX_ENDPOINTS))
    else:
        for i, endpoint in enumerate(endpoints):
            causes += _validate_endpoint(endpoint, address_type, f"endpoints[{i}]")
    ports = obj.get("ports") or []
    if len(ports) > MAX_PORTS:
        return causes + [too_many("ports", len(ports), MAX_PORTS)]
    seen: set[str] = set()
    for i, port in enumerate(ports):
        causes += _validate_port(port, f"ports[{i}]", seen)
    return causes


def validate_endpoint_slice_update(new: Obj, old: Obj) -> list[Cause]:
    address_type = new.get("addressType", "")
    if address_type == old.get("addressType", ""):
        return []
    return [v.immutable("addressType", address_type)]


def _first_three(items: list[str], count: int) -> str:
    """listWithMoreString: three entries, then `+ N more...`; `<unset>` for none."""
    shown = ",".join(items[:3])
    if count > 3:
        return f"{shown} + {count - 3} more..."
    return shown or "<unset>"


def endpoint_slice_row(obj: Obj, now: datetime) -> list:
    """printEndpointSlice: a port prints as its number, else its name, else `*`."""
    ports = [str(p["port"]) if p.get("port") is not None else p.get("name", "*")
             for p in obj.get("ports") or []]
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    return [obj["metadata"]["name"], obj.get("addressType", ""),
            _first_three(ports, len(ports)), _first_three(addresses, len(addresses)),
            age(obj, now)]


ENDPOINT_SLICE = REGISTRY.add(Kind(
    group="discovery.k8s.io", version="v1", kind="EndpointSlice", plural="endpointslices",
    singular="endpointslice", spec_paths=("addressType", "endpoints", "ports"),
    default=default_endpoint_slice, validate=validate_endpoint_slice,
    validate_update=validate_endpoint_slice_update,
    columns=(
        NAME_COLUMN,
        Column("AddressType", description="addressType specifies the type of address carried by "
               "this EndpointSlice. All addresses in this slice must be the same type. This "
               "field is immutable after creation. The following address types are currently "
               "supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 "
               "Address. * FQDN: Represents a Fully Qualified Domain Name."),
        Column("Ports", description="ports specifies the list of network ports exposed by each "
               "endpoint in this slice. Each port must have a unique name. When ports is empty, "
               "it indicates that there are no defined ports. When a port is defined with a nil "
               'port value, it indicates "all ports". Each slice may include a maximum of 100 '
               "ports."),
        Column("Endpoints", description="endpoints is a list of unique endpoints in this slice. "
               "Each slice may include a maximum of 1000 endpoints."),
        AGE_COLUMN,
    ),
    row=endpoint_slice_row,
    merge_schema={"metadata": {"fields": OBJECT_META_SCHEMA}},
))
