"""The core/v1 kinds: Namespace, Pod, Service, Endpoints, Node, ConfigMap, Secret,
Event and ServiceAccount.

Each entry carries upstream's behaviour for its kind: the defaults of
pkg/apis/core/v1/defaults.go and of the strategies' PrepareForCreate, the
admission plugins every cluster runs on Pods (ServiceAccount, Priority,
DefaultTolerationSeconds), the checks of pkg/apis/core/validation, the table
printers of pkg/printers/internalversion and the strategic-merge keys of
k8s.io/api/core/v1. PodSpec rules live in podspec.py and are re-exported here for
the workload kinds.

None of these kinds sets metadata.generation in Kubernetes 1.32, so their
spec_paths are empty.
"""
from __future__ import annotations

import base64
import binascii
import copy
import json
from datetime import datetime
from typing import Any, Callable, Iterable

from kwire.api import validation as v
from kwire.api.kinds.podspec import (
    POD_SPEC_SCHEMA, PROTOCOLS, TAINT_EFFECTS, Obj, canonical_resources, config_key_errors,
    default_pod_spec, dicts, enum, fill, pod_qos, port_num_or_name, resource_quantity,
    validate_pod_spec,
)
from kwire.api.registry import AGE_COLUMN, NAME_COLUMN, REGISTRY, Column, Kind
from kwire.api.tables import human_duration, parse_time, since
from kwire.api.validation import Cause

__all__ = ["OBJECT_META_SCHEMA", "POD_SPEC_SCHEMA", "default_pod_spec", "validate_pod_spec",
           "prepare_service_update"]

OBJECT_META_SCHEMA: Obj = {"finalizers": {"set": True}, "ownerReferences": {"key": "uid"}}
_CONDITIONS: Obj = {"conditions": {"key": "type"}}
_STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")
_MAX_DATA_SIZE = 1024 * 1024


def _schema(**fields: Obj) -> Obj:
    """A kind's strategic-merge schema: the ObjectMeta keys plus its own."""
    return {"metadata": {"fields": OBJECT_META_SCHEMA}, **fields}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") if isinstance(obj.get("spec"), dict) else {}


def _meta(obj: Obj, namespaced: bool, name_check: Callable[[str], list[str]] = v.dns1123_subdomain
          ) -> list[Cause]:
    """ValidateObjectMeta, finalizer names included."""
    meta = obj.get("metadata")
    out = v.object_meta(meta, namespaced, name_check)
    for i, name in enumerate((meta or {}).get("finalizers") or []):
        out += _finalizer(name, "metadata.finalizers", f"metadata.finalizers[{i}]")
    return out


def _finalizer(name: str, path: str, kube_path: str) -> list[Cause]:
    """A finalizer is qualified, and without a domain it must be one Kubernetes defines."""
    out = v.invalid_all(path, name, v.qualified_name(name))
    if "/" not in name and name not in _STANDARD_FINALIZERS:
        out.append(v.invalid(kube_path, name,
                             "name is neither a standard finalizer name nor is it fully qualified"))
    return out


def _go_strings(values: Iterable[str], type_name: str = "string") -> str:
    """A []string as Go's %#v prints it in field errors: []string{"a", "b"}."""
    return "[]" + type_name + "{" + ", ".join(f'"{x}"' for x in values) + "}"


def _invalid_list(path: str, values: Iterable[str], detail: str,
                  type_name: str = "string") -> Cause:
    return Cause(path, v.INVALID, f"Invalid value: {_go_strings(values, type_name)}: {detail}")


def _format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted k=v pairs, or <none>."""
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _col(name: str, description: str, priority: int = 0, fmt: str = "") -> Column:
    return Column(name, description=description, priority=priority, format=fmt)


def _get(obj: Obj, *path: str) -> str:
    """A field selector value: the string at path, "" when missing."""
    cur: Any = obj
    for part in path:
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def _getter(*path: str) -> Callable[[Obj], str]:
    return lambda obj: _get(obj, *path)


def _bool_getter(*path: str) -> Callable[[Obj], str]:
    return lambda obj: "true" if _get(obj, *path) == "true" else "false"


def _created(meta: Any) -> bool:
    """Whether an object being defaulted already exists: the API layer sets the
    resourceVersion of updates before defaulting and refuses it on create."""
    return bool(isinstance(meta, dict) and meta.get("resourceVersion"))


# --- Namespace --------------------------------------------------------------------

def _default_namespace(ns: Obj) -> None:
    """SetDefaults_Namespace, and the `kubernetes` finalizer PrepareForCreate adds.

    The finalizer is added on create only: the namespace controller removes it
    through /finalize, and it must stay removed.
    """
    meta = ns.setdefault("metadata", {})
    if meta.get("name"):
        labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
        meta["labels"] = {**labels, "kubernetes.io/metadata.name": meta["name"]}
    spec = ns.setdefault("spec", {})
    if not _created(meta) and "kubernetes" not in (spec.get("finalizers") or []):
        spec["finalizers"] = [*(spec.get("finalizers") or []), "kubernetes"]
    fill(ns.setdefault("status", {}), "phase", "Active")


def _validate_namespace(ns: Obj) -> list[Cause]:
    out = _meta(ns, False, v.dns1123_label)
    for name in _spec(ns).get("finalizers") or []:
        out += _finalizer(name, "spec.finalizers", "spec.finalizers")
    return out


def _namespace_row(ns: Obj, now: datetime) -> list:
    return [ns["metadata"]["name"], _get(ns, "status", "phase"), since(
        ns["metadata"].get("creationTimestamp"), now)]


# --- Pod --------------------------------------------------------------------------

_SYSTEM_PRIORITIES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
_TAINTS_TOLERATED_FOR_300S = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
_UPDATABLE_POD_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)


def _default_pod(pod: Obj) -> None:
    """SetDefaults_Pod, the admission every cluster runs, and the status: the create-time
    one, and the pod and host IPs paired as the v1 conversion pairs them."""
    spec = pod.setdefault("spec", {})
    default_pod_spec(spec)
    for c in [*dicts(spec.get("containers")), *dicts(spec.get("initContainers"))]:
        res = c.get("resources")
        if isinstance(res, dict) and isinstance(res.get("limits"), dict) and res["limits"]:
            # A limit that is no quantity is reported once, on the limit.
            requests = res.get("requests") or {}
            res["requests"] = {**requests, **{k: q for k, q in res["limits"].items()
                                              if k not in requests and v.is_quantity(q)}}
        if spec.get("hostNetwork"):
            for port in dicts(c.get("ports")):
                fill(port, "hostPort", port.get("containerPort") or 0)
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    _admit_pod(spec)
    status = pod.setdefault("status", {})
    fill(status, "phase", "Pending")
    fill(status, "qosClass", pod_qos(spec))
    _pair_status_ips(status)


def _pair_status_ips(status: Obj) -> None:
    """Convert_v1_PodStatus_To_core_PodStatus and back: podIP and hostIP win over a list
    whose first address differs and fill an empty one; podIP is then podIPs[0]. (hostIP
    is not filled from hostIPs: validation wants the two to agree.)"""
    for single, plural in (("podIP", "podIPs"), ("hostIP", "hostIPs")):
        ip = status.get(single)
        first = next(dicts(status.get(plural)), None)
        if ip and (first is None or first.get("ip") != ip):
            status[plural] = [{"ip": ip}]
    first = next(dicts(status.get("podIPs")), None)
    if first is not None and first.get("ip"):
        status["podIP"] = first["ip"]


def _admit_pod(spec: Obj) -> None:
    """The ServiceAccount, Priority and DefaultTolerationSeconds admission plugins."""
    # serviceAccount is the deprecated alias the v1 conversion keeps equal.
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = account
    # Only the built-in classes exist; a pod naming another keeps no priority.
    cls = spec.get("priorityClassName") or ""
    if spec.get("priority") is None and (not cls or cls in _SYSTEM_PRIORITIES):
        spec["priority"] = _SYSTEM_PRIORITIES.get(cls, 0)
        fill(spec, "preemptionPolicy", "PreemptLowerPriority")
    if spec.get("tolerations") is not None and not isinstance(spec["tolerations"], list):
        return
    tols = spec.setdefault("tolerations", [])
    for key in _TAINTS_TOLERATED_FOR_300S:
        if not any(t.get("key") in (key, "", None) and t.get("effect") in ("NoExecute", "", None)
                   for t in dicts(tols)):
            tols.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300})


def _validate_pod(pod: Obj) -> list[Cause]:
    spec = _spec(pod)
    out = _meta(pod, True)
    out += validate_pod_spec(spec, "spec", resource_is_pod=True)
    for key in ("containers", "initContainers"):
        for i, c in enumerate(dicts(spec.get(key))):
            image = c.get("image")
            if isinstance(image, str) and image != image.strip():
                out.append(v.invalid(f"spec.{key}[{i}].image", image,
                                     "must not have leading or trailing whitespace"))
    if spec.get("nodeName") and spec.get("schedulingGates"):
        out.append(v.forbidden("spec.nodeName",
                               "cannot be set until all schedulingGates have been cleared"))
    return out + _status_ips(pod.get("status"))


def _status_ips(status: Any) -> list[Cause]:
    """validatePodIPs and validateHostIPs, for pods/status: valid addresses, at most one
    of each family, no repeats, and hostIPs[0] is hostIP."""
    status = status if isinstance(status, dict) else {}
    out: list[Cause] = []
    pod_ips = list(dicts(status.get("podIPs")))
    for i, entry in enumerate(pod_ips):
        out += v.ip_address(entry.get("ip") or "", f"status.podIPs[{i}]")
    if len(pod_ips) > 1:
        families, repeats = _ip_list(pod_ips, "status.podIPs", "core.PodIP")
        out += families + repeats
    host_ips = list(dicts(status.get("hostIPs")))
    if host_ips and (status.get("hostIP") or "") != (host_ips[0].get("ip") or ""):
        out.append(v.invalid("status.hostIPs[0].ip", host_ips[0].get("ip") or "",
                             "must be equal to `hostIP`"))
    for i, entry in enumerate(host_ips):
        out += v.ip_address(entry.get("ip") or "", f"status.hostIPs[{i}]")
    if len(host_ips) > 1:
        families, repeats = _ip_list(host_ips, "status.hostIPs", "core.HostIP")
        out += repeats + families
    return out


def _ip_list(entries: list[Obj], path: str, go_type: str) -> tuple[list[Cause], list[Cause]]:
    """For a list of more than one status IP: the IsDualStackIPStrings causes (one address
    of each family, two at most) and the Duplicate ones, values shown as Go prints them."""
    ips = [entry.get("ip") or "" for entry in entries]
    shown = [f"{go_type}{{IP:{json.dumps(ip)}}}" for ip in ips]
    parsed = [v.parse_ip(ip) for ip in ips]
    families: list[Cause] = []
    if None in parsed:
        families.append(v.internal(path, "failed to check for dual stack with error:ip <nil> "
                                         "is invalid"))
    if None in parsed or {ip.version for ip in parsed if ip} != {4, 6} or len(ips) > 2:
        families.append(Cause(path, v.INVALID, f"Invalid value: []{go_type}{{"
                              f"{', '.join(shown)}}}: may specify no more than one IP for each "
                              "IP family"))
    repeats = [Cause(f"{path}[{i}]", v.DUPLICATE, f"Duplicate value: {shown[i]}")
               for i, ip in enumerate(ips) if ip in ips[:i]]
    return families, repeats


def _prune(value: Any) -> Any:
    """Drop empty values, which Go's semantic equality does not tell from unset ones."""
    if isinstance(value, dict):
        pruned = {k: _prune(x) for k, x in value.items()}
        return {k: x for k, x in pruned.items() if x not in (None, "", {}, [])}
    if isinstance(value, list):
        return [_prune(x) for x in value]
    return value


def _toleration_key(t: Obj) -> tuple:
    return tuple(t.get(k) or "" for k in ("key", "operator", "value", "effect"))


def _validate_pod_update(new: Obj, old: Obj) -> list[Cause]:
    """ValidatePodUpdate: a pod's spec is fixed but for images, deadline and tolerations.

    The node is set by the binding subresource, which does not come through here.
    """
    ns, os_ = _spec(new), _spec(old)
    out: list[Cause] = []
    for key in ("containers", "initContainers"):
        if len(ns.get(key) or []) != len(os_.get(key) or []):
            return [v.forbidden(f"spec.{key}", "pod updates may not add or remove containers")]
    new_deadline, old_deadline = ns.get("activeDeadlineSeconds"), os_.get("activeDeadlineSeconds")
    if new_deadline is not None:
        if not 0 <= new_deadline <= 2147483647:
            return [v.invalid("spec.activeDeadlineSeconds", new_deadline,
                              "must be between 0 and 2147483647, inclusive")]
        if old_deadline is not None and old_deadline < new_deadline:
            return [v.invalid("spec.activeDeadlineSeconds", new_deadline,
                              "must be less than or equal to previous value")]
    elif old_deadline is not None:
        out.append(v.invalid("spec.activeDeadlineSeconds", None,
                             "must not update from a positive integer to nil value"))
    new_tols = {_toleration_key(t) for t in dicts(ns.get("tolerations"))}
    if any(_toleration_key(t) not in new_tols for t in dicts(os_.get("tolerations"))):
        out.append(v.forbidden("spec.tolerations",
                               "existing toleration can not be modified except its "
                               "tolerationSeconds"))
    old_gates = {g.get("name") for g in dicts(os_.get("schedulingGates"))}
    for i, gate in enumerate(dicts(ns.get("schedulingGates"))):
        if gate.get("name") not in old_gates:
            out.append(v.forbidden(f"spec.schedulingGates[{i}].name", "only deletion is "
                                   f"allowed, but found new scheduling gate '{gate.get('name')}'"))
    munged = copy.deepcopy(ns)
    for key in ("containers", "initContainers"):
        for c, old_c in zip(dicts(munged.get(key)), dicts(os_.get(key))):
            c["image"] = old_c.get("image")
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        munged.pop(key, None)
        if key in os_:
            munged[key] = os_[key]
    old_grace = os_.get("terminationGracePeriodSeconds")
    if isinstance(old_grace, int) and old_grace < 0 and munged.get(
            "terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if _prune(munged) != _prune(os_):
        out.append(v.forbidden("spec", "pod updates may not change fields other than "
                               + ",".join(_UPDATABLE_POD_FIELDS)))
    return out


def _latest(current: datetime | None, ts: Any) -> datetime | None:
    t = parse_time(ts) if isinstance(ts, str) else None
    return t if t is not None and (current is None or t > current) else current


def _pod_row(pod: Obj, now: datetime) -> list:
    """printPod: Ready, the Status reason kubectl shows, Restarts, and the wide cells."""
    spec, status, meta = _spec(pod), pod.get("status") or {}, pod["metadata"]
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    conditions = list(dicts(status.get("conditions")))
    if any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
           for c in conditions):
        reason = "SchedulingGated"
    init_specs = {c.get("name"): c for c in dicts(spec.get("initContainers"))}
    sidecars = {n for n, c in init_specs.items() if c.get("restartPolicy") == "Always"}
    total = len(list(dicts(spec.get("containers")))) + len(sidecars)
    ready = restarts = sidecar_restarts = 0
    last_restart = last_sidecar_restart = None
    initializing = False
    for i, cs in enumerate(dicts(status.get("initContainerStatuses"))):
        state = cs.get("state") or {}
        finished = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        restarts += cs.get("restartCount") or 0
        last_restart = _latest(last_restart, finished)
        if cs.get("name") in sidecars:
            sidecar_restarts += cs.get("restartCount") or 0
            last_sidecar_restart = _latest(last_sidecar_restart, finished)
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and not terminated.get("exitCode"):
            continue
        if cs.get("name") in sidecars and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if terminated is not None:
            reason = "Init:" + terminated["reason"] if terminated.get("reason") else (
                f"Init:Signal:{terminated['signal']}" if terminated.get("signal")
                else f"Init:ExitCode:{terminated.get('exitCode', 0)}")
        elif waiting is not None and waiting.get("reason") and \
                waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    if not initializing or any(c.get("type") == "Initialized" and c.get("status") == "True"
                               for c in conditions):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(list(dicts(status.get("containerStatuses")))):
            state = cs.get("state") or {}
            restarts += cs.get("restartCount") or 0
            last_restart = _latest(last_restart, ((cs.get("lastState") or {}).get(
                "terminated") or {}).get("finishedAt"))
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                reason = f"Signal:{terminated['signal']}" if terminated.get("signal") \
                    else f"ExitCode:{terminated.get('exitCode', 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in conditions)
            reason = "Running" if pod_ready else "NotReady"
    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    shown_restarts = str(restarts)
    if restarts and last_restart is not None:
        shown_restarts += f" ({human_duration((now - last_restart).total_seconds())} ago)"
    ips = list(dicts(status.get("podIPs")))
    ip = (ips[0].get("ip") if ips else status.get("podIP")) or "<none>"
    gates = [g.get("conditionType") for g in dicts(spec.get("readinessGates"))]
    gates_cell = "<none>"
    if gates:
        true = sum(1 for g in gates if next((c.get("status") == "True" for c in conditions
                                             if c.get("type") == g), False))
        gates_cell = f"{true}/{len(gates)}"
    return [meta["name"], f"{ready}/{total}", reason, shown_restarts,
            since(meta.get("creationTimestamp"), now), ip, spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates_cell]


def _pod_ip(pod: Obj) -> str:
    ips = list(dicts((pod.get("status") or {}).get("podIPs")))
    return (ips[0].get("ip") or "") if ips else _get(pod, "status", "podIP")


# --- Service ----------------------------------------------------------------------

_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
_IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
_MAX_AFFINITY_SECONDS = 86400


def _externally_accessible(spec: Obj) -> bool:
    return spec.get("type") in _NODE_PORT_TYPES or (
        spec.get("type") == "ClusterIP" and bool(spec.get("externalIPs")))


def _needs_health_check(spec: Obj) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _headless(spec: Obj) -> bool:
    return spec.get("clusterIPs") == ["None"]


def _default_service(svc: Obj) -> None:
    """SetDefaults_Service, the clusterIP/clusterIPs pairing of the strategy and the IP
    family fields the allocator initialises. Address allocation itself is the API layer's."""
    spec = svc.setdefault("spec", {})
    fill(spec, "type", "ClusterIP")
    fill(spec, "sessionAffinity", "None")
    client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP" and client_ip.get("timeoutSeconds") is None:
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    for port in dicts(spec.get("ports")):
        fill(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port") or 0
    if _externally_accessible(spec):
        fill(spec, "externalTrafficPolicy", "Cluster")
    if spec.get("internalTrafficPolicy") is None and spec["type"] != "ExternalName":
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    if spec["type"] != "ExternalName":
        _default_ip_families(spec)
    fill(svc.setdefault("status", {}), "loadBalancer", {})


def _default_ip_families(spec: Obj) -> None:
    """initIPFamilyFields' defaults on kwire's service network, IPv4 only: the family is
    IPv4 unless the address is IPv6 (which validation then refuses). Headless Services
    without a selector default to RequireDualStack and, the one exception a single-stack
    cluster makes, get the other family too."""
    selectorless = _headless(spec) and not spec.get("selector")
    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "RequireDualStack" if selectorless else "SingleStack"
    ip = v.parse_ip((spec.get("clusterIPs") or [""])[0])
    if not spec.get("ipFamilies") and (ip is None or ip.version == 4):
        spec["ipFamilies"] = ["IPv4"]
    families = spec.get("ipFamilies")
    if selectorless and spec["ipFamilyPolicy"] != "SingleStack" and \
            families in (["IPv4"], ["IPv6"]):
        families.append("IPv6" if families[0] == "IPv4" else "IPv4")


def prepare_service_update(new: Obj, old: Obj) -> None:
    """What the Service strategy's PrepareForUpdate does before validation, in place.

    NormalizeClusterIPs makes clusterIPs follow a changed clusterIP, and
    dropTypeDependentFields wipes what the old type needed and the new one does not
    (clusterIPs, IP families, nodePorts, traffic policy...), unless the user changed
    it. Without it, switching a NodePort Service to ClusterIP fails validation.
    """
    ns, os_ = new.setdefault("spec", {}), _spec(old)
    if ns.get("clusterIP") and ns.get("clusterIP") != os_.get("clusterIP") and \
            ns.get("clusterIPs") == os_.get("clusterIPs"):
        ns["clusterIPs"] = [ns["clusterIP"], *(ns.get("clusterIPs") or [])[1:]]
    old_type, new_type = os_.get("type") or "ClusterIP", ns.get("type") or "ClusterIP"

    def unchanged(key: str) -> bool:
        return ns.get(key) == os_.get(key)

    if old_type != "ExternalName" and new_type == "ExternalName":
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if unchanged(key):
                ns.pop(key, None)
    new_ports = list(dicts(ns.get("ports")))
    old_node_ports = {p.get("nodePort") for p in dicts(os_.get("ports")) if p.get("nodePort")}
    if old_type in _NODE_PORT_TYPES and new_type not in _NODE_PORT_TYPES and \
            {p.get("nodePort") for p in new_ports if p.get("nodePort")} <= old_node_ports:
        for port in new_ports:
            port.pop("nodePort", None)
    if _needs_health_check(os_) and not _needs_health_check(ns) and \
            unchanged("healthCheckNodePort"):
        ns.pop("healthCheckNodePort", None)
    if old_type == "LoadBalancer" and new_type != "LoadBalancer":
        for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if unchanged(key):
                ns.pop(key, None)
    if _externally_accessible(os_) and not _externally_accessible(ns) and \
            unchanged("externalTrafficPolicy"):
        ns.pop("externalTrafficPolicy", None)


def _validate_service(svc: Obj) -> list[Cause]:
    spec = _spec(svc)
    out = _meta(svc, True, v.dns1035_label)
    kind, headless = spec.get("type"), _headless(spec)
    ports = list(dicts(spec.get("ports")))
    if not ports and not headless and kind != "ExternalName":
        out.append(v.required("spec.ports"))
    if kind in _NODE_PORT_TYPES and headless:
        out.append(v.invalid("spec.clusterIPs[0]", "None",
                             f"may not be set to 'None' for {kind} services"))
    if kind == "ExternalName":
        for key in ("clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if spec.get(key):
                out.append(v.forbidden(f"spec.{key}", "may not be set for ExternalName services"))
        cname = (spec.get("externalName") or "").removesuffix(".")
        out += v.invalid_all("spec.externalName", cname, v.dns1123_subdomain(cname)) if cname \
            else [v.required("spec.externalName")]
    names: set[str] = set()
    for i, port in enumerate(ports):
        out += _service_port(port, len(ports) > 1, names, f"spec.ports[{i}]")
    out += v.labels(spec.get("selector"), "spec.selector")
    affinity = spec.get("sessionAffinity")
    out += enum(affinity, "spec.sessionAffinity", ("ClientIP", "None"))
    if affinity == "ClientIP":
        out += _client_ip_affinity(spec.get("sessionAffinityConfig"))
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        out.append(v.forbidden("spec.sessionAffinityConfig",
                               "must not be set when session affinity is None"))
    out += _cluster_ip_fields(spec) or _ip_family_fields(spec)
    for i, ip in enumerate(spec.get("externalIPs") or []):
        errs = v.ip_address(ip, f"spec.externalIPs[{i}]")
        out += errs or v.non_special_ip(ip, f"spec.externalIPs[{i}]")
    out += enum(kind, "spec.type", _SERVICE_TYPES)
    if kind == "ClusterIP":
        out += [v.forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is "
                            "'ClusterIP'") for i, p in enumerate(ports) if p.get("nodePort")]
    node_ports: set[tuple] = set()
    for i, port in enumerate(ports):
        key = (port.get("protocol"), port.get("nodePort"))
        if port.get("nodePort") and key in node_ports:
            out.append(v.duplicate(f"spec.ports[{i}].nodePort", port["nodePort"]))
        node_ports.add(key)
    seen: set[tuple] = set()
    for i, port in enumerate(ports):
        key = (port.get("protocol") or "", port.get("port") or 0)
        if key in seen:
            out.append(Cause(f"spec.ports[{i}]", v.DUPLICATE, (
                f'Duplicate value: core.ServicePort{{Name:"", Protocol:"{key[0]}", '
                f"AppProtocol:(*string)(nil), Port:{key[1]}, TargetPort:intstr.IntOrString"
                '{Type:0, IntVal:0, StrVal:""}, NodePort:0}')))
        seen.add(key)
    out += _load_balancer_fields(spec)
    out += _traffic_policies(spec)
    return out


def _service_port(port: Obj, require_name: bool, names: set[str], path: str) -> list[Cause]:
    out: list[Cause] = []
    name = port.get("name")
    if require_name and not name:
        out.append(v.required(f"{path}.name"))
    elif name:
        out += v.invalid_all(f"{path}.name", name, v.dns1123_label(name))
        if name in names:
            out.append(v.duplicate(f"{path}.name", name))
        names.add(name)
    out += v.port_number(port.get("port") or 0, f"{path}.port")
    out += enum(port.get("protocol"), f"{path}.protocol", PROTOCOLS)
    out += port_num_or_name(port.get("targetPort"), f"{path}.targetPort")
    if port.get("appProtocol") is not None:
        out += v.invalid_all(f"{path}.appProtocol", port["appProtocol"],
                             v.qualified_name(port["appProtocol"]))
    return out


def _client_ip_affinity(config: Any) -> list[Cause]:
    path = "spec.sessionAffinityConfig"
    when = "when session affinity type is ClientIP"
    if not isinstance(config, dict):
        return [v.required(path, when)]
    if not isinstance(config.get("clientIP"), dict):
        return [v.required(f"{path}.clientIP", when)]
    timeout = config["clientIP"].get("timeoutSeconds")
    if timeout is None:
        return [v.required(f"{path}.clientIP.timeoutSeconds", when)]
    if not 0 < timeout <= _MAX_AFFINITY_SECONDS:
        return [v.invalid(f"{path}.clientIP.timeoutSeconds", timeout,
                          f"must be greater than 0 and less than {_MAX_AFFINITY_SECONDS}")]
    return []


def _cluster_ip_fields(spec: Obj) -> list[Cause]:
    """ValidateServiceClusterIPsRelatedFields."""
    if spec.get("type") == "ExternalName":
        return []
    out: list[Cause] = []
    ip, ips = spec.get("clusterIP") or "", list(spec.get("clusterIPs") or [])
    if ip and not ips:
        out.append(v.required("spec.clusterIPs"))
    elif ip and ips[0] != ip:
        out.append(_invalid_list("spec.clusterIPs", ips, "first value must match `clusterIP`"))
    elif not ip and ips:
        out.append(_invalid_list("spec.clusterIPs", ips,
                                 "must be empty when `clusterIP` is not specified"))
    families = list(spec.get("ipFamilies") or [])
    for i, family in enumerate(families):
        if family not in ("IPv4", "IPv6"):
            out.append(v.not_supported(f"spec.ipFamilies[{i}]", family, ("IPv4", "IPv6")))
        if family in families[:i]:
            out.append(v.duplicate(f"spec.ipFamilies[{i}]", family))
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in _IP_FAMILY_POLICIES:
        out.append(v.not_supported("spec.ipFamilyPolicy", policy, _IP_FAMILY_POLICIES))
    bad = False
    for i, addr in enumerate(ips):
        if i == 0 and addr == "None":
            if len(ips) > 1:
                bad = True
                out.append(_invalid_list("spec.clusterIPs", ips,
                                         "'None' must be the first and only value"))
            continue
        errs = v.ip_address(addr, f"spec.clusterIPs[{i}]")
        if errs:
            bad = True
            out += errs
    if len(ips) > 2:
        out.append(_invalid_list("spec.clusterIPs", ips, "may only hold up to 2 values"))
    if bad:
        return out
    parsed = [v.parse_ip(a) for a in ips]
    if len(ips) > 1 and len({p.version for p in parsed if p is not None}) != len(ips):
        out.append(_invalid_list("spec.clusterIPs", ips,
                                 "may specify no more than one IP for each IP family"))
    if not _headless(spec):
        for i, (addr, family) in enumerate(zip(ips, families)):
            version = parsed[i].version if parsed[i] is not None else 0
            if family == "IPv4" and version == 6 or family == "IPv6" and version != 6:
                out.append(v.invalid(f"spec.clusterIPs[{i}]", addr, f"expected an {family} "
                                     f"value as indicated by `ipFamilies[{i}]`"))
    return out


def _ip_family_fields(spec: Obj) -> list[Cause]:
    """initIPFamilyFields' checks on kwire's service network, single-stack IPv4: no IPv6
    address or family, no dual-stack requirement (headless Services without a selector
    excepted). Upstream makes them when allocating, before validation."""
    if spec.get("type") == "ExternalName":
        return []
    policy, ips = spec.get("ipFamilyPolicy"), list(spec.get("clusterIPs") or [])
    families = list(spec.get("ipFamilies") or [])
    out: list[Cause] = []
    if policy == "SingleStack":
        for values, what in ((ips, "cluster IPs"), (families, "IP families")):
            if len(values) == 2:
                out.append(v.invalid("spec.ipFamilyPolicy", policy, "must be 'RequireDualStack' "
                                     f"or 'PreferDualStack' when multiple {what} are specified"))
    for i, ip in enumerate(ips):
        if ip == "None":
            break
        address = v.parse_ip(ip)
        if i >= len(families) and address is not None and address.version == 6:
            out.append(_invalid_list(f"spec.clusterIPs[{i}]", ips,
                                     "IPv6 is not configured on this cluster"))
    if out or (_headless(spec) and not spec.get("selector")):
        return out
    if policy == "RequireDualStack":
        out.append(v.invalid("spec.ipFamilyPolicy", policy,
                             "this cluster is not configured for dual-stack services"))
    return out + [v.invalid(f"spec.ipFamilies[{i}]", family, "not configured on this cluster")
                  for i, family in enumerate(families) if family != "IPv4"]


def _load_balancer_fields(spec: Obj) -> list[Cause]:
    out: list[Cause] = []
    lb = spec.get("type") == "LoadBalancer"
    ranges = spec.get("loadBalancerSourceRanges") or []
    if ranges and not lb:
        out.append(v.forbidden("spec.LoadBalancerSourceRanges",
                               "may only be used when `type` is 'LoadBalancer'"))
    for i, cidr in enumerate(ranges):
        cidr = cidr.strip() if isinstance(cidr, str) else cidr
        out += v.cidr(cidr, f"spec.LoadBalancerSourceRanges[{i}]")
    if spec.get("allocateLoadBalancerNodePorts") is not None and not lb:
        out.append(v.forbidden("spec.allocateLoadBalancerNodePorts",
                               "may only be used when `type` is 'LoadBalancer'"))
    if lb and spec.get("allocateLoadBalancerNodePorts") is None:
        out.append(v.required("allocateLoadBalancerNodePorts"))
    cls = spec.get("loadBalancerClass")
    if cls is not None:
        out += v.invalid_all("spec.loadBalancerClass", cls, v.qualified_name(cls)) if lb else [
            v.forbidden("spec.loadBalancerClass", "may only be used when `type` is "
                                                  "'LoadBalancer'")]
    return out


def _traffic_policies(spec: Obj) -> list[Cause]:
    """External/internal traffic policy and trafficDistribution. healthCheckNodePort is
    not required here: the API layer allocates after validating."""
    out: list[Cause] = []
    etp = spec.get("externalTrafficPolicy")
    if not _externally_accessible(spec):
        if etp:
            out.append(v.invalid("spec.externalTrafficPolicy", etp,
                                 "may only be set for externally-accessible services"))
    else:
        out += enum(etp, "spec.externalTrafficPolicy", ("Cluster", "Local"))
    hc = spec.get("healthCheckNodePort")
    if hc:
        if not _needs_health_check(spec):
            out.append(v.invalid("spec.healthCheckNodePort", hc, "may only be set when `type` "
                                 "is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
        else:
            out += v.port_number(hc, "spec.healthCheckNodePort")
    itp = spec.get("internalTrafficPolicy")
    if itp is None and spec.get("type") in ("ClusterIP", *_NODE_PORT_TYPES):
        out.append(v.required("spec.internalTrafficPolicy"))
    elif itp is not None and itp not in ("Cluster", "Local"):
        out.append(v.not_supported("spec.internalTrafficPolicy", itp, ("Cluster", "Local")))
    dist = spec.get("trafficDistribution")
    if dist is not None and dist != "PreferClose":
        out.append(v.not_supported("spec.trafficDistribution", dist, ("PreferClose",)))
    return out


def _validate_service_update(new: Obj, old: Obj) -> list[Cause]:
    """The address fields keep their first value. An update that leaves them empty is
    fine: the allocator carries the old values over, as upstream's REST layer does."""
    ns, os_ = _spec(new), _spec(old)
    out: list[Cause] = []
    if "ExternalName" in (ns.get("type"), os_.get("type")):
        return out
    new_ips, old_ips = ns.get("clusterIPs") or [], os_.get("clusterIPs") or []
    if new_ips and old_ips and not (_headless(ns) and _headless(os_)) and \
            new_ips[0] != old_ips[0]:
        out.append(_invalid_list("spec.clusterIPs[0]", new_ips, "may not change once set"))
    new_fam, old_fam = ns.get("ipFamilies") or [], os_.get("ipFamilies") or []
    if new_fam and old_fam and _headless(ns) == _headless(os_) and not _headless(ns) and \
            new_fam[0] != old_fam[0]:
        out.append(_invalid_list("spec.ipFamilies[0]", new_fam, "may not change once set",
                                 "core.IPFamily"))
    both_lb = ns.get("type") == os_.get("type") == "LoadBalancer"
    if both_lb and ns.get("loadBalancerClass") != os_.get("loadBalancerClass"):
        out.append(v.invalid("spec.loadBalancerClass", ns.get("loadBalancerClass"),
                             "may not change once set"))
    if _needs_health_check(ns) and _needs_health_check(os_) and ns.get("healthCheckNodePort") and \
            ns.get("healthCheckNodePort") != os_.get("healthCheckNodePort"):
        out.append(v.forbidden("spec.healthCheckNodePort", "field is immutable"))
    return out


def _load_balancer_ips(status: Obj) -> list[str]:
    ingress = ((status.get("loadBalancer") or {}).get("ingress")) or []
    return sorted({i.get("ip") or i.get("hostname") for i in dicts(ingress)
                   if i.get("ip") or i.get("hostname")})


def _service_row(svc: Obj, now: datetime) -> list:
    """printService, as the server renders it (always wide: no clipping)."""
    spec, meta = _spec(svc), svc["metadata"]
    kind = spec.get("type") or ""
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    external = spec.get("externalIPs") or []
    if kind in ("ClusterIP", "NodePort"):
        shown_external = ",".join(external) or "<none>"
    elif kind == "LoadBalancer":
        shown_external = ",".join([*_load_balancer_ips(svc.get("status") or {}), *external]) \
            or "<pending>"
    elif kind == "ExternalName":
        shown_external = spec.get("externalName") or ""
    else:
        shown_external = "<unknown>"
    ports = ",".join(
        f"{p.get('port', 0)}:{p['nodePort']}/{p.get('protocol', '')}" if p.get("nodePort")
        else f"{p.get('port', 0)}/{p.get('protocol', '')}" for p in dicts(spec.get("ports")))
    return [meta["name"], kind, ips[0] if ips else "<none>", shown_external, ports or "<none>",
            since(meta.get("creationTimestamp"), now), _format_labels(spec.get("selector"))]


# --- Endpoints --------------------------------------------------------------------

def _default_endpoints(ep: Obj) -> None:
    for subset in dicts(ep.get("subsets")):
        for port in dicts(subset.get("ports")):
            fill(port, "protocol", "TCP")


def _validate_endpoints(ep: Obj) -> list[Cause]:
    out = _meta(ep, True)
    for i, subset in enumerate(dicts(ep.get("subsets"))):
        p = f"subsets[{i}]"
        if not subset.get("addresses") and not subset.get("notReadyAddresses"):
            out.append(v.required(p, "must specify `addresses` or `notReadyAddresses`"))
        for key in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(dicts(subset.get(key))):
                out += _endpoint_address(addr, f"{p}.{key}[{j}]")
        ports = list(dicts(subset.get("ports")))
        for j, port in enumerate(ports):
            pp = f"{p}.ports[{j}]"
            name = port.get("name")
            if len(ports) > 1 and not name:
                out.append(v.required(f"{pp}.name"))
            elif name:
                out += v.invalid_all(f"{pp}.name", name, v.dns1123_label(name))
            out += v.port_number(port.get("port") or 0, f"{pp}.port")
            out += enum(port.get("protocol"), f"{pp}.protocol", PROTOCOLS)
            if port.get("appProtocol") is not None:
                out += v.invalid_all(f"{pp}.appProtocol", port["appProtocol"],
                                     v.qualified_name(port["appProtocol"]))
    return out


def _endpoint_address(addr: Obj, path: str) -> list[Cause]:
    ip = addr.get("ip") or ""
    out = v.ip_address(ip, f"{path}.ip")
    if addr.get("hostname"):
        out += v.invalid_all(f"{path}.hostname", addr["hostname"],
                             v.dns1123_label(addr["hostname"]))
    if addr.get("nodeName") is not None:
        out += v.invalid_all(f"{path}.nodeName", addr["nodeName"],
                             v.dns1123_subdomain(addr["nodeName"]))
    return out + v.non_special_ip(ip, f"{path}.ip")


def _endpoints_cell(ep: Obj) -> str:
    """formatEndpoints: the first three ip:port pairs, then "+ N more..."."""
    subsets = list(dicts(ep.get("subsets")))
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    for subset in subsets:
        addrs = [a.get("ip") or "" for a in dicts(subset.get("addresses"))]
        ports = list(dicts(subset.get("ports")))
        for port in ports or [None]:
            count += len(addrs)
            for ip in addrs:
                if len(shown) == 3:
                    break
                if port is None:
                    shown.append(ip)
                else:
                    host = f"[{ip}]" if ":" in ip else ip
                    shown.append(f"{host}:{port.get('port', 0)}")
    cell = ",".join(shown)
    return f"{cell} + {count - 3} more..." if count > 3 else cell


def _endpoints_row(ep: Obj, now: datetime) -> list:
    return [ep["metadata"]["name"], _endpoints_cell(ep),
            since(ep["metadata"].get("creationTimestamp"), now)]


# --- Node -------------------------------------------------------------------------

def _default_node(node: Obj) -> None:
    """SetDefaults_NodeStatus (allocatable starts as the capacity), canonical quantities,
    and podCIDR paired with podCIDRs as the v1 conversion pairs them: podCIDR wins over
    a list starting elsewhere and fills an empty one, then is podCIDRs[0]."""
    spec, status = node.setdefault("spec", {}), node.setdefault("status", {})
    if status.get("allocatable") is None and status.get("capacity") is not None:
        status["allocatable"] = copy.deepcopy(status["capacity"])
    canonical_resources(status.get("capacity"))
    canonical_resources(status.get("allocatable"))
    cidr, cidrs = spec.get("podCIDR"), spec.get("podCIDRs")
    if cidr and (not cidrs or cidrs[0] != cidr):
        spec["podCIDRs"] = [cidr]
    if spec.get("podCIDRs"):
        spec["podCIDR"] = spec["podCIDRs"][0]


def _validate_node(node: Obj) -> list[Cause]:
    spec = _spec(node)
    out = _meta(node, False)
    for i, taint in enumerate(dicts(spec.get("taints"))):
        p = f"spec.taints[{i}]"
        out += v.invalid_all(f"{p}.key", taint.get("key") or "",
                             v.qualified_name(taint.get("key") or ""))
        if taint.get("value"):
            out += v.invalid_all(f"{p}.value", taint["value"], v.label_value(taint["value"]))
        out += enum(taint.get("effect"), f"{p}.effect", TAINT_EFFECTS)
    out += _node_resources(node.get("status"))
    return out + _pod_cidrs(spec.get("podCIDRs"))


def _node_resources(status: Any) -> list[Cause]:
    """ValidateNodeResources: capacity and allocatable quantities (the resource is a
    child of the path there, not a key)."""
    status = status if isinstance(status, dict) else {}
    out: list[Cause] = []
    for key in ("capacity", "allocatable"):
        values = status.get(key) if isinstance(status.get(key), dict) else {}
        for name, raw in values.items():
            path = f"status.{key}.{name}"
            q = v.parsed_quantity(raw, path, out)
            if q is not None:
                out += resource_quantity(name, q, path)
    return out


def _pod_cidrs(cidrs: Any) -> list[Cause]:
    """ValidateNode's podCIDRs: valid, at most one of each family, no repeats."""
    cidrs = cidrs if isinstance(cidrs, list) else []
    out: list[Cause] = []
    for i, cidr in enumerate(cidrs):
        out += v.cidr(cidr, f"spec.podCIDRs[{i}]")
    if len(cidrs) <= 1:
        return out
    nets = [v.parse_cidr(c) if isinstance(c, str) else None for c in cidrs]
    bad = next((c for c, net in zip(cidrs, nets) if net is None), None)
    if bad is not None:
        out.append(v.internal("spec.podCIDRs", "invalid PodCIDRs. failed to check with dual "
                              f"stack with error:failed to parse cidr value:{json.dumps(bad)} "
                              f"with error:invalid CIDR address: {bad}"))
    if bad is not None or {n.version for n in nets if n} != {4, 6} or len(cidrs) > 2:
        out.append(_invalid_list("spec.podCIDRs", cidrs,
                                 "may specify no more than one CIDR for each IP family"))
    return out + [v.duplicate(f"spec.podCIDRs[{i}]", c) for i, c in enumerate(cidrs)
                  if c in cidrs[:i]]


def _validate_node_update(new: Obj, old: Obj) -> list[Cause]:
    """The pod CIDRs and provider ID can be set once, by the controller manager."""
    ns, os_ = _spec(new), _spec(old)
    out: list[Cause] = []
    if os_.get("podCIDRs") and ns.get("podCIDRs") != os_["podCIDRs"]:
        out.append(v.forbidden("spec.podCIDRs",
                               "node updates may not change podCIDR except from \"\" to valid"))
    if os_.get("providerID") and ns.get("providerID") != os_["providerID"]:
        out.append(v.forbidden("spec.providerID",
                               "node updates may not change providerID except from \"\" to valid"))
    return out


def _node_row(node: Obj, now: datetime) -> list:
    """printNode: Ready/NotReady/Unknown, cordon, roles from node-role labels, versions."""
    spec, status, meta = _spec(node), node.get("status") or {}, node["metadata"]
    ready = next((c for c in dicts(status.get("conditions")) if c.get("type") == "Ready"), None)
    shown = ["Unknown" if ready is None else "Ready" if ready.get("status") == "True"
             else "NotReady"]
    if spec.get("unschedulable"):
        shown.append("SchedulingDisabled")
    roles = set()
    for key, value in (meta.get("labels") or {}).items():
        role = key.removeprefix("node-role.kubernetes.io/")
        if role != key and role:
            roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    info = status.get("nodeInfo") or {}
    addresses = list(dicts(status.get("addresses")))

    def address(kind: str) -> str:
        return next((a.get("address") for a in addresses if a.get("type") == kind), "<none>")

    return [meta["name"], ",".join(shown), ",".join(sorted(roles)) or "<none>",
            since(meta.get("creationTimestamp"), now), info.get("kubeletVersion") or "",
            address("InternalIP"), address("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


# --- ConfigMap and Secret ---------------------------------------------------------

_B64 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _base64_error(value: Any) -> str | None:
    """Why Go's base64 decoder refuses value (a []byte field), or None."""
    if not isinstance(value, str):
        return "illegal base64 data at input byte 0"
    bad = next((i for i, ch in enumerate(value) if ch not in _B64 and ch not in "\r\n"), None)
    if bad is not None:
        return f"illegal base64 data at input byte {bad}"
    try:
        base64.b64decode(value, validate=False)
        return None if len(value.replace("\r", "").replace("\n", "")) % 4 == 0 else \
            f"illegal base64 data at input byte {len(value)}"
    except binascii.Error:
        return f"illegal base64 data at input byte {len(value)}"


def _data_causes(data: Any, path: str, binary: bool) -> tuple[list[Cause], int]:
    """Keys are config keys; []byte values must be base64. Returns causes and size."""
    out: list[Cause] = []
    size = 0
    for key, value in (data if isinstance(data, dict) else {}).items():
        out += v.invalid_all(f"{path}[{key}]", key, config_key_errors(key))
        if binary:
            problem = _base64_error(value)
            if problem:
                out.append(v.invalid(f"{path}[{key}]", "<secret contents redacted>", problem))
                continue
            size += len(base64.b64decode(value))
        else:
            size += len(value.encode()) if isinstance(value, str) else 0
    return out, size


def _validate_config_map(cm: Obj) -> list[Cause]:
    out = _meta(cm, True)
    data_causes, size = _data_causes(cm.get("data"), "data", False)
    out += data_causes
    binary = cm.get("binaryData") if isinstance(cm.get("binaryData"), dict) else {}
    out += [v.invalid(f"data[{k}]", k, "duplicate of key present in binaryData")
            for k in (cm.get("data") or {}) if k in binary]
    binary_causes, binary_size = _data_causes(binary, "binaryData", True)
    out += binary_causes
    if size + binary_size > _MAX_DATA_SIZE:
        out.append(v.too_long("", _MAX_DATA_SIZE))
    return out


def _immutable_data(new: Obj, old: Obj, keys: Iterable[str]) -> list[Cause]:
    """Once `immutable: true`, the flag and the data stay as they are."""
    if old.get("immutable") is not True:
        return []
    out = [] if new.get("immutable") is True else [
        v.forbidden("immutable", "field is immutable when `immutable` is set")]
    return out + [v.forbidden(k, "field is immutable when `immutable` is set")
                  for k in keys if (new.get(k) or {}) != (old.get(k) or {})]


def _default_secret(secret: Obj) -> None:
    """SetDefaults_Secret, and the v1 conversion that folds stringData into data."""
    fill(secret, "type", "Opaque")
    strings = secret.pop("stringData", None)
    if isinstance(strings, dict) and strings:
        data = secret.get("data") if isinstance(secret.get("data"), dict) else {}
        secret["data"] = {**data, **{k: base64.b64encode(str(x).encode()).decode()
                                     for k, x in strings.items()}}


# Keys each built-in Secret type must carry (ValidateSecret).
_SECRET_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def _validate_secret(secret: Obj) -> list[Cause]:
    out = _meta(secret, True)
    data = secret.get("data") if isinstance(secret.get("data"), dict) else {}
    data_causes, size = _data_causes(data, "data", True)
    out += data_causes
    if size > _MAX_DATA_SIZE:
        out.append(v.too_long("data", _MAX_DATA_SIZE))
    kind = secret.get("type")
    if kind == "kubernetes.io/service-account-token":
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            out.append(v.required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif kind == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
        out += [v.required("data[username]"), v.required("data[password]")]
    elif kind == "kubernetes.io/ssh-auth" and not data.get("ssh-privatekey"):
        out.append(v.required("data[ssh-privatekey]"))
    out += [v.required(f"data[{k}]") for k in _SECRET_KEYS.get(kind, ()) if k not in data]
    return out


def _validate_secret_update(new: Obj, old: Obj) -> list[Cause]:
    out = [v.immutable("type", new.get("type"))] if new.get("type") != old.get("type") else []
    return out + _immutable_data(new, old, ("data",))


def _config_map_row(cm: Obj, now: datetime) -> list:
    return [cm["metadata"]["name"], len(cm.get("data") or {}) + len(cm.get("binaryData") or {}),
            since(cm["metadata"].get("creationTimestamp"), now)]


def _service_account_row(sa: Obj, now: datetime) -> list:
    return [sa["metadata"]["name"], len(sa.get("secrets") or []),
            since(sa["metadata"].get("creationTimestamp"), now)]


def _secret_row(secret: Obj, now: datetime) -> list:
    return [secret["metadata"]["name"], secret.get("type") or "", len(secret.get("data") or {}),
            since(secret["metadata"].get("creationTimestamp"), now)]


# --- Event ------------------------------------------------------------------------

def _default_event(event: Obj) -> None:
    """The zero values a v1 Event always shows: these fields have no omitempty."""
    for key in ("eventTime", "firstTimestamp", "lastTimestamp"):
        event.setdefault(key, None)
    event.setdefault("source", {})
    event.setdefault("reportingComponent", "")
    event.setdefault("reportingInstance", "")


def _path_segment_errors(name: str) -> list[str]:
    """Event names are only checked as a URL path segment."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{ch}'" for ch in "/%" if ch in name]


def _validate_event(event: Obj) -> list[Cause]:
    """legacyValidateEvent: an old-style Event (no eventTime) lives in its object's
    namespace; a new-style one names its reporting controller and action."""
    out = _meta(event, True, _path_segment_errors)
    namespace = (event.get("metadata") or {}).get("namespace") or ""
    involved = (event.get("involvedObject") or {}).get("namespace") or ""
    mismatch = v.invalid("involvedObject.namespace", involved, "does not match event.namespace")
    if not event.get("eventTime"):
        if (not involved and namespace not in ("", "default")) or (
                involved and namespace != involved):
            out.append(mismatch)
    else:
        if not involved and namespace not in ("default", "kube-system"):
            out.append(mismatch)
        controller = event.get("reportingComponent") or ""
        if not controller:
            out.append(v.required("reportingComponent"))
        out += v.invalid_all("reportingComponent", controller, v.qualified_name(controller))
        for key, limit, required in (("reportingInstance", 128, True), ("action", 128, True),
                                     ("reason", 128, True), ("message", 1024, False)):
            value = event.get(key) or ""
            if required and not value:
                out.append(v.required(key))
            if len(value) > limit:
                out.append(v.invalid(key, "", f"can have at most {limit} characters"))
    return out + v.invalid_all("namespace", namespace, v.dns1123_subdomain(namespace))


def _event_row(event: Obj, now: datetime) -> list:
    """printEvent (wide): last/first seen fall back to eventTime, series count wins."""
    first = since(event["firstTimestamp"], now) if event.get("firstTimestamp") else \
        since(event.get("eventTime"), now)
    last = since(event["lastTimestamp"], now) if event.get("lastTimestamp") else first
    count = event.get("count") or 0
    series = event.get("series")
    if isinstance(series, dict):
        last, count = since(series.get("lastObservedTime"), now), series.get("count") or 0
    elif not count:
        count = 1
    involved = event.get("involvedObject") or {}
    target = (involved.get("kind") or "").lower()
    if involved.get("name"):
        target += "/" + involved["name"]
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    host = source.get("host") or event.get("reportingInstance") or ""
    return [last, event.get("type") or "", event.get("reason") or "", target,
            involved.get("fieldPath") or "", f"{component}, {host}" if host else component,
            (event.get("message") or "").strip(), first, count, event["metadata"]["name"]]


# --- registration -----------------------------------------------------------------

REGISTRY.add(Kind(
    group="", version="v1", kind="Namespace", plural="namespaces", singular="namespace",
    namespaced=False, short_names=("ns",), subresources=("status", "finalize"),
    status_subresource=True, spec_paths=(),
    default=_default_namespace, validate=_validate_namespace,
    columns=(NAME_COLUMN, _col("Status", "The status of the namespace"), AGE_COLUMN),
    row=_namespace_row,
    merge_schema=_schema(status={"fields": _CONDITIONS}),
    field_labels={"status.phase": _getter("status", "phase")},
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
))

REGISTRY.add(Kind(
    group="", version="v1", kind="Pod", plural="pods", singular="pod",
    short_names=("po",), categories=("all",),
    subresources=("status", "binding", "log", "exec", "attach", "portforward", "eviction"),
    status_subresource=True, spec_paths=(), return_deleted_object=True,
    default=_default_pod, validate=_validate_pod, validate_update=_validate_pod_update,
    columns=(
        NAME_COLUMN,
        _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        _col("Status", "The aggregate status of the containers in this pod."),
        _col("Restarts", "The number of times the containers in this pod have been restarted "
                         "and when the last container in this pod has restarted."),
        AGE_COLUMN,
        _col("IP", "podIP address allocated to the pod. Routable at least within the cluster. "
                   "Empty if not yet allocated.", 1),
        _col("Node", "NodeName indicates in which node this pod is scheduled.", 1),
        _col("Nominated Node", "nominatedNodeName is set only when this pod preempts other "
                               "pods on the node, but it cannot be scheduled right away.", 1),
        _col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod "
                                "readiness.", 1),
    ),
    row=_pod_row,
    merge_schema=_schema(
        spec={"fields": POD_SPEC_SCHEMA},
        status={"fields": {**_CONDITIONS, "podIPs": {"key": "ip"}, "hostIPs": {"key": "ip"},
                           "resourceClaimStatuses": {"key": "name", "retainKeys": True}}}),
    field_labels={
        "spec.nodeName": _getter("spec", "nodeName"),
        "spec.restartPolicy": _getter("spec", "restartPolicy"),
        "spec.schedulerName": _getter("spec", "schedulerName"),
        "spec.serviceAccountName": _getter("spec", "serviceAccountName"),
        "spec.hostNetwork": _bool_getter("spec", "hostNetwork"),
        "status.phase": _getter("status", "phase"),
        "status.podIP": _pod_ip,
        "status.nominatedNodeName": _getter("status", "nominatedNodeName"),
    },
))

REGISTRY.add(Kind(
    group="", version="v1", kind="Service", plural="services", singular="service",
    short_names=("svc",), categories=("all",), subresources=("status", "proxy"),
    status_subresource=True, spec_paths=(), return_deleted_object=True,
    default=_default_service, prepare_update=prepare_service_update,
    validate=_validate_service,
    validate_update=_validate_service_update,
    columns=(
        NAME_COLUMN,
        _col("Type", "type determines how the Service is exposed."),
        _col("Cluster-IP", "clusterIP is the IP address of the service."),
        _col("External-IP", "externalIPs is a list of IP addresses for which nodes in the "
                            "cluster will also accept traffic for this service."),
        _col("Port(s)", "The list of ports that are exposed by this service."),
        AGE_COLUMN,
        _col("Selector", "Route service traffic to pods with label keys and values matching "
                         "this selector.", 1),
    ),
    row=_service_row,
    merge_schema=_schema(spec={"fields": {"ports": {"key": "port"}}},
                         status={"fields": _CONDITIONS}),
    field_labels={"spec.clusterIP": _getter("spec", "clusterIP"),
                  "spec.type": _getter("spec", "type")},
))

REGISTRY.add(Kind(
    group="", version="v1", kind="Endpoints", plural="endpoints", singular="endpoints",
    short_names=("ep",), spec_paths=(),
    default=_default_endpoints, validate=_validate_endpoints,
    columns=(NAME_COLUMN, _col("Endpoints", "The set of all endpoints is the union of all "
                                            "subsets."), AGE_COLUMN),
    row=_endpoints_row,
    merge_schema=_schema(),
))

REGISTRY.add(Kind(
    group="", version="v1", kind="Node", plural="nodes", singular="node",
    namespaced=False, short_names=("no",), subresources=("status",),
    status_subresource=True, keep_status_on_create=True, spec_paths=(),
    default=_default_node, validate=_validate_node, validate_update=_validate_node_update,
    columns=(
        NAME_COLUMN,
        _col("Status", "The status of the node"),
        _col("Roles", "The roles of the node"),
        AGE_COLUMN,
        _col("Version", "Kubelet Version reported by the node."),
        _col("Internal-IP", "List of addresses reachable to the node.", 1),
        _col("External-IP", "List of addresses reachable to the node.", 1),
        _col("OS-Image", "OS Image reported by the node from /etc/os-release.", 1),
        _col("Kernel-Version", "Kernel Version reported by the node from 'uname -r'.", 1),
        _col("Container-Runtime", "ContainerRuntime Version reported by the node through "
                                  "runtime remote API.", 1),
    ),
    row=_node_row,
    merge_schema=_schema(spec={"fields": {"podCIDRs": {"set": True}}},
                         status={"fields": {**_CONDITIONS, "addresses": {"key": "type"}}}),
    field_labels={"spec.unschedulable": _bool_getter("spec", "unschedulable")},
))

REGISTRY.add(Kind(
    group="", version="v1", kind="ConfigMap", plural="configmaps", singular="configmap",
    short_names=("cm",), spec_paths=(),
    validate=_validate_config_map,
    validate_update=lambda new, old: _immutable_data(new, old, ("data", "binaryData")),
    columns=(NAME_COLUMN, _col("Data", "Data contains the configuration data."), AGE_COLUMN),
    row=_config_map_row,
    merge_schema=_schema(),
))

REGISTRY.add(Kind(
    group="", version="v1", kind="Secret", plural="secrets", singular="secret",
    spec_paths=(),
    default=_default_secret, validate=_validate_secret, validate_update=_validate_secret_update,
    columns=(NAME_COLUMN, _col("Type", "Used to facilitate programmatic handling of secret "
                                       "data."),
             _col("Data", "Data contains the secret data."), AGE_COLUMN),
    row=_secret_row,
    merge_schema=_schema(),
    field_labels={"type": _getter("type")},
))

REGISTRY.add(Kind(
    group="", version="v1", kind="Event", plural="events", singular="event",
    short_names=("ev",), spec_paths=(),
    default=_default_event, validate=_validate_event,
    columns=(
        _col("Last Seen", "The time at which the most recent occurrence of this event was "
                          "recorded."),
        _col("Type", "Type of this event (Normal, Warning), new types could be added in the "
                     "future"),
        _col("Reason", "This should be a short, machine understandable string that gives the "
                       "reason for the transition into the object's current status."),
        _col("Object", "The object that this event is about."),
        _col("Subobject", "If referring to a piece of an object instead of an entire object, "
                          "this string should contain a valid JSON/Go field access statement.",
             1),
        _col("Source", "The component reporting this event.", 1),
        _col("Message", "A human-readable description of the status of this operation."),
        _col("First Seen", "The time at which the event was first recorded.", 1),
        _col("Count", "The number of times this event has occurred.", 1),
        _col("Name", NAME_COLUMN.description, 1, "name"),
    ),
    row=_event_row,
    merge_schema=_schema(),
    field_labels={
        **{f"involvedObject.{k}": _getter("involvedObject", k)
           for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
                     "fieldPath")},
        "reason": _getter("reason"),
        "reportingComponent": _getter("reportingComponent"),
        "source": lambda e: _get(e, "source", "component") or _get(e, "reportingComponent"),
        "type": _getter("type"),
    },
))

REGISTRY.add(Kind(
    group="", version="v1", kind="ServiceAccount", plural="serviceaccounts",
    singular="serviceaccount", short_names=("sa",), spec_paths=(), return_deleted_object=True,
    validate=lambda sa: _meta(sa, True),
    columns=(NAME_COLUMN, _col("Secrets", "Secrets is a list of the secrets in the same "
                                          "namespace that pods running using this "
                                          "ServiceAccount are allowed to use."), AGE_COLUMN),
    row=_service_account_row,
    merge_schema=_schema(secrets={"key": "name"}),
))
