"""A container's environment as the kubelet resolves it (makeEnvironmentVariables),
and the downward API values the env and the downwardAPI volumes share.

The pure parts take API objects in: ``service_env`` (the docker-links variables of
Services), ``field_value`` and ``pod_field_value`` (fieldRef), ``resource_value``
(resourceFieldRef). ``resolve_env`` only adds the reading of ConfigMaps and Secrets
through an injected ``get(plural, namespace, name) -> dict | None``, so this module
needs no API client.

How the list fits ``spec.build_spec``: the kubelet expands ``$(VAR)`` in each
``value`` with the envFrom variables, the earlier env entries and the service
variables, and never in values taken from a ConfigMap, a Secret or the downward
API. ``spec.container_env`` expands every value of the list it gets with the
entries before it, a later one of the same name winning. So ``resolve_env`` hands
over the sources lowest precedence first (service variables, then envFrom, then env
in order), keeps a ``value`` as written, and doubles every ``$`` of the other
values, which ``$$`` then turns back: one expansion, the kubelet's, and none twice.
A name may appear more than once; the last one wins, as in the kubelet's map, and
build_spec's merge keeps one entry per name.
"""
from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Any

from kwire.api import validation as v

Getter = Callable[[str, str, str], Awaitable[dict | None]]
"""get(plural, namespace, name): the object, or None when it does not exist."""

MASTER_SERVICES = ("kubernetes",)
"""Services of the default namespace every pod gets variables for, links or not."""


class EnvError(Exception):
    """The container's env cannot be built (the agent's CreateContainerConfigError);
    the message is the kubelet's."""


class FieldError(ValueError):
    """A downward API reference that does not resolve; the message is upstream's."""


# ------------------------------------------------------------------ downward API


def go_quote(text: str) -> str:
    """Go's %q of a string (strconv.Quote), which the kubelet uses for label values."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def format_map(m: Mapping[str, str] | None) -> str:
    """fieldpath.FormatMap: ``key="value"`` lines in key order, no final newline."""
    return "\n".join(f"{k}={go_quote(str(m[k]))}" for k in sorted(m or {}))


def _subscripted(path: str) -> tuple[str, str] | None:
    """SplitMaybeSubscriptedPath: ``metadata.labels['k']`` as (path, key)."""
    if not path.endswith("']"):
        return None
    head, sep, key = path[:-2].partition("['")
    return (head, key) if sep and head else None


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """fieldpath.ExtractFieldPathAsString: the metadata fields a downwardAPI volume
    (and, through pod_field_value, the env) may name."""
    meta = pod.get("metadata") or {}
    split = _subscripted(path)
    if split:
        head, key = split
        if head not in ("metadata.annotations", "metadata.labels"):
            raise FieldError(f'fieldPath "{path}" does not support subscript')
        errors = v.qualified_name(key.lower() if head == "metadata.annotations" else key)
        if errors:
            raise FieldError(f"invalid key subscript in {path}: {';'.join(errors)}")
        return (meta.get(head.split(".")[1]) or {}).get(key, "")
    if path in ("metadata.annotations", "metadata.labels"):
        return format_map(meta.get(path.split(".")[1]))
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return meta.get(path.split(".")[1]) or ""
    raise FieldError(f"unsupported fieldPath: {path}")


_FIELD_LABELS = frozenset((
    "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
    "metadata.uid", "spec.nodeName", "spec.restartPolicy", "spec.serviceAccountName",
    "spec.schedulerName", "status.phase", "status.hostIP", "status.hostIPs", "status.podIP",
    "status.podIPs"))


def pod_field_value(pod: Mapping[str, Any], selector: Mapping[str, Any], *,
                    pod_ips: Sequence[str], host_ips: Sequence[str]) -> str:
    """podFieldSelectorRuntimeValue: an env fieldRef, with the pod's and the node's
    addresses as the agent knows them (they may not be in the pod's status yet)."""
    version = selector.get("apiVersion") or "v1"
    path = selector.get("fieldPath") or ""
    if version != "v1":
        raise FieldError(f"unsupported pod version: {version}")
    split = _subscripted(path)
    if split and split[0] not in ("metadata.annotations", "metadata.labels"):
        raise FieldError(f"field label does not support subscript: {path}")
    if path == "spec.host":  # what old v1 clients sent
        path = "spec.nodeName"
    if not split and path not in _FIELD_LABELS:
        raise FieldError(f"field label not supported: {path}")
    spec = pod.get("spec") or {}
    if path == "spec.nodeName":
        return spec.get("nodeName") or ""
    if path == "spec.serviceAccountName":
        return spec.get("serviceAccountName") or ""
    if path == "status.hostIP":
        return host_ips[0] if host_ips else ""
    if path == "status.hostIPs":
        return ",".join(host_ips)
    if path == "status.podIP":
        return pod_ips[0] if pod_ips else ""
    if path == "status.podIPs":
        return ",".join(pod_ips)
    return field_value(pod, path)


def ceil_int(amount: Decimal) -> int:
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


def find_container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    spec = pod.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if c.get("name") == name:
            return c
    raise FieldError(f"container {name} not found")


_DEFAULTED_LIMITS = ("cpu", "memory", "ephemeral-storage")


def resource_value(container: Mapping[str, Any], selector: Mapping[str, Any],
                   allocatable: Mapping[str, Any] | None = None) -> str:
    """ExtractContainerResourceValue after MergeContainerResourceLimits: a limit the
    container leaves unset (or zero) is the node's allocatable, as the kubelet gives
    it; the value is divided by ``divisor`` (default 1) and rounded up."""
    resources = container.get("resources") or {}
    limits = dict(resources.get("limits") or {})
    for name in _DEFAULTED_LIMITS:
        current = limits.get(name)
        if (current is None or v.quantity(current).amount == 0) and allocatable \
                and name in allocatable:
            limits[name] = allocatable[name]
    requests = resources.get("requests") or {}
    divisor = v.quantity(selector.get("divisor") or "0")
    if divisor.amount == 0:
        divisor = v.quantity("1")
    kind, _, name = (selector.get("resource") or "").partition(".")
    source = {"limits": limits, "requests": requests}.get(kind)
    if source is None or not (name in _DEFAULTED_LIMITS or name.startswith("hugepages-")):
        raise FieldError(f"unsupported container resource : {selector.get('resource')}")
    amount = v.quantity(source.get(name) or "0").amount
    if name == "cpu":
        return str(-(-ceil_int(amount * 1000) // ceil_int(divisor.amount * 1000)))
    return str(-(-ceil_int(amount) // ceil_int(divisor.amount)))


def container_resource_value(pod: Mapping[str, Any], container: Mapping[str, Any],
                             selector: Mapping[str, Any],
                             allocatable: Mapping[str, Any] | None = None) -> str:
    """An env resourceFieldRef: of ``selector.containerName`` when given, else of
    ``container``, the env's own."""
    name = selector.get("containerName")
    target = find_container(pod, name) if name else container
    return resource_value(target, selector, allocatable)


# ------------------------------------------------------------------ services


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _service_ip_set(svc: Mapping[str, Any]) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def service_env(services: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """envvars.FromServices: for each Service with a cluster IP, ``<NAME>_SERVICE_HOST``,
    ``<NAME>_SERVICE_PORT`` (+ ``_<PORTNAME>`` per named port) and the docker-links
    ``<NAME>_PORT``, ``<NAME>_PORT_<port>_<PROTO>`` (+ ``_PROTO``, ``_PORT``, ``_ADDR``)."""
    out: list[tuple[str, str]] = []
    for svc in services:
        if not _service_ip_set(svc):
            continue
        prefix = _env_name(svc["metadata"]["name"])
        ip = svc["spec"]["clusterIP"]
        ports = svc["spec"].get("ports") or []
        out.append((f"{prefix}_SERVICE_HOST", ip))
        if ports:
            out.append((f"{prefix}_SERVICE_PORT", str(ports[0]["port"])))
        for port in ports:
            if port.get("name"):
                out.append((f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}", str(port["port"])))
        for i, port in enumerate(ports):
            proto = port.get("protocol") or "TCP"
            url = f"{proto.lower()}://{_host_port(ip, port['port'])}"
            if i == 0:
                out.append((f"{prefix}_PORT", url))
            port_prefix = f"{prefix}_PORT_{port['port']}_{proto.upper()}"
            out += [(port_prefix, url), (f"{port_prefix}_PROTO", proto.lower()),
                    (f"{port_prefix}_PORT", str(port["port"])), (f"{port_prefix}_ADDR", ip)]
    return out


def linked_services(services: Iterable[Mapping[str, Any]], namespace: str,
                    enable_service_links: bool) -> list[Mapping[str, Any]]:
    """getServiceEnvVarMap's choice: the master Services of the default namespace
    always, and the pod's namespace's Services when links are enabled (one per name;
    the kubelet's map order is random, this one sorts by name)."""
    chosen: dict[str, Mapping[str, Any]] = {}
    for svc in services:
        if not _service_ip_set(svc):
            continue
        meta = svc["metadata"]
        name, ns = meta["name"], meta.get("namespace")
        if ns == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    return [chosen[name] for name in sorted(chosen)]


# ------------------------------------------------------------------ the env


def literal(value: str) -> str:
    """``value`` written so that spec.container_env's expansion leaves it as it is."""
    return value.replace("$", "$$")


def _env_name_ok(name: str) -> bool:
    """IsRelaxedEnvVarName, so that ``NAME=value`` stays one well-formed entry."""
    return bool(name) and all(32 <= ord(ch) <= 126 and ch != "=" for ch in name)


def secret_bytes(secret: Mapping[str, Any], key: str) -> bytes | None:
    value = (secret.get("data") or {}).get(key)
    return None if value is None else base64.b64decode(value)


class _Objects:
    """ConfigMaps and Secrets read once per call, as the kubelet's per-call maps."""

    def __init__(self, get: Getter, namespace: str):
        self.get, self.namespace = get, namespace
        self.cache: dict[tuple[str, str], dict | None] = {}

    async def fetch(self, plural: str, name: str, optional: bool) -> dict | None:
        """The object; None when it is missing and optional, else EnvError."""
        key = (plural, name)
        if key not in self.cache:
            self.cache[key] = await self.get(plural, self.namespace, name)
        obj = self.cache[key]
        if obj is None and not optional:
            raise EnvError(f'{plural[:-1]} "{name}" not found')
        return obj


async def resolve_env(pod: Mapping[str, Any], container: Mapping[str, Any], get: Getter, *,
                      pod_ip: str, host_ip: str,
                      services: Sequence[Mapping[str, Any]] | None,
                      pod_ips: Sequence[str] | None = None,
                      host_ips: Sequence[str] | None = None,
                      allocatable: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """The container's env for ``build_spec(env=...)``; see the module doc for the order
    and the ``$`` convention (``spec.container_env`` of the result gives the values).

    ``services``: every Service the agent knows (any namespace); None when it has no
    Service list, which gives no service variables, as a kubelet without a master.
    ``pod_ips``/``host_ips`` default to ``[pod_ip]``/``[host_ip]``; ``allocatable`` is
    the Node's status.allocatable, which stands in for unset limits.
    Raises EnvError with the kubelet's message."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    pod_ips = list(pod_ips if pod_ips is not None else [pod_ip] if pod_ip else [])
    host_ips = list(host_ips if host_ips is not None else [host_ip] if host_ip else [])
    links = spec.get("enableServiceLinks") is not False
    out = [(k, literal(val)) for k, val in
           service_env(linked_services(services or [], namespace, links))]
    objects = _Objects(get, namespace)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if "configMapRef" in source:
            ref = source["configMapRef"]
            cm = await objects.fetch("configmaps", ref["name"], bool(ref.get("optional")))
            items = list(((cm or {}).get("data") or {}).items())
        else:
            ref = source["secretRef"]
            secret = await objects.fetch("secrets", ref["name"], bool(ref.get("optional")))
            items = [(k, secret_bytes(secret, k).decode(errors="replace"))
                     for k in (secret or {}).get("data") or {}]
        out += [(prefix + k, literal(val)) for k, val in items if _env_name_ok(prefix + k)]
    for item in container.get("env") or []:
        value = await _env_value(pod, container, item, objects, pod_ips=pod_ips,
                                 host_ips=host_ips, allocatable=allocatable)
        if value is not None:
            out.append((item["name"], value))
    return out


async def _env_value(pod: Mapping[str, Any], container: Mapping[str, Any],
                     item: Mapping[str, Any], objects: _Objects, *, pod_ips: Sequence[str],
                     host_ips: Sequence[str], allocatable: Mapping[str, Any] | None) -> str | None:
    """One env entry as the list carries it; None when an optional source is missing."""
    source = item.get("valueFrom")
    if item.get("value") or not source:
        return item.get("value") or ""
    try:
        if "fieldRef" in source:
            return literal(pod_field_value(pod, source["fieldRef"], pod_ips=pod_ips,
                                           host_ips=host_ips))
        if "resourceFieldRef" in source:
            return container_resource_value(pod, container, source["resourceFieldRef"],
                                            allocatable)
    except FieldError as e:
        raise EnvError(str(e)) from None
    namespace = objects.namespace
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        optional = bool(ref.get("optional"))
        cm = await objects.fetch("configmaps", ref["name"], optional)
        if cm is None:
            return None
        value = (cm.get("data") or {}).get(ref["key"])
        if value is None:
            if optional:
                return None
            raise EnvError(f"couldn't find key {ref['key']} in ConfigMap {namespace}/{ref['name']}")
        return literal(value)
    ref = source["secretKeyRef"]
    optional = bool(ref.get("optional"))
    secret = await objects.fetch("secrets", ref["name"], optional)
    if secret is None:
        return None
    data = secret_bytes(secret, ref["key"])
    if data is None:
        if optional:
            return None
        raise EnvError(f"couldn't find key {ref['key']} in Secret {namespace}/{ref['name']}")
    return literal(data.decode(errors="replace"))
