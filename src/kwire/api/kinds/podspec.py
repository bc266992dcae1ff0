"""PodSpec rules shared by Pods and by every kind that embeds a pod template.

Upstream keeps these in pkg/apis/core/v1/defaults.go (SetDefaults_PodSpec,
SetDefaults_Container, SetDefaults_Probe...) and pkg/apis/core/validation
(ValidatePodSpec). Deployments, ReplicaSets and DaemonSets hold the same PodSpec,
so their kinds reuse default_pod_spec, validate_pod_spec and POD_SPEC_SCHEMA
(imported through kwire.api.kinds.core). Messages and field paths are upstream's,
because kubectl prints them verbatim.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator

from kwire.api import validation as v
from kwire.api.validation import Cause

Obj = dict[str, Any]

# --- strategic merge keys (patchMergeKey / patchStrategy of k8s.io/api/core/v1) -----

_CONTAINER_SCHEMA: Obj = {
    "ports": {"key": "containerPort"},
    "env": {"key": "name"},
    "volumeMounts": {"key": "mountPath"},
    "volumeDevices": {"key": "devicePath"},
}

POD_SPEC_SCHEMA: Obj = {
    "containers": {"key": "name", "fields": _CONTAINER_SCHEMA},
    "initContainers": {"key": "name", "fields": _CONTAINER_SCHEMA},
    "ephemeralContainers": {"key": "name", "fields": _CONTAINER_SCHEMA},
    "volumes": {"key": "name", "retainKeys": True},
    "imagePullSecrets": {"key": "name"},
    "hostAliases": {"key": "ip"},
    "topologySpreadConstraints": {"key": "topologyKey"},
    "resourceClaims": {"key": "name", "retainKeys": True},
    "schedulingGates": {"key": "name"},
}

# In the order validateVolumeSource checks them: the second one found is the error.
_VOLUME_SOURCES = (
    "emptyDir", "hostPath", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore", "secret",
    "nfs", "iscsi", "glusterfs", "flocker", "persistentVolumeClaim", "rbd", "cinder", "cephfs",
    "quobyte", "downwardAPI", "fc", "flexVolume", "configMap", "azureFile", "vsphereVolume",
    "photonPersistentDisk", "portworxVolume", "azureDisk", "storageos", "projected", "scaleIO",
    "csi", "ephemeral", "image",
)

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("SCTP", "TCP", "UDP")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

_NON_NEGATIVE = "must be greater than or equal to 0"
_FILE_MODE = "must be a number between 0 and 0777 (octal), both inclusive"
_ID_RANGE = "must be between 0 and 2147483647, inclusive"
_MAX_INT32 = 2147483647
_MAX_INT64 = 2 ** 63 - 1


def _not_found(path: str, value: Any) -> Cause:
    return Cause(path, "FieldValueNotFound", f"Not found: {json.dumps(value)}")


def dicts(items: Any) -> Iterator[Obj]:
    """The dict entries of a list; anything else was refused when decoding."""
    return (i for i in (items if isinstance(items, list) else []) if isinstance(i, dict))


def fill(obj: Obj, key: str, value: Any) -> None:
    """Set a default the way Go does for a zero value ("", 0, nil)."""
    if not obj.get(key):
        obj[key] = value


def enum(value: Any, path: str, allowed: Iterable[str]) -> list[Cause]:
    """Required when empty, NotSupported when not one of allowed (in upstream's order)."""
    if not value:
        return [v.required(path)]
    if value not in allowed:
        return [v.not_supported(path, value, allowed)]
    return []


# --- names and ports ---------------------------------------------------------------

def port_num_or_name(port: Any, path: str) -> list[Cause]:
    """An IntOrString port: a number is range-checked, a string is a port name."""
    if isinstance(port, str):
        return v.invalid_all(path, port, v.port_name(port))
    return v.port_number(port or 0, path)


def config_key_errors(key: str) -> list[str]:
    """IsConfigMapKey, for ConfigMap/Secret keys and key selectors."""
    errs = []
    if len(key) > 253:
        errs.append("must be no more than 253 characters")
    if not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
        errs.append(v.regex_error("a valid config key must consist of alphanumeric characters, "
                                  "'-', '_' or '.'", "[-._a-zA-Z0-9]+",
                                  "key.name", "KEY_NAME", "key-name"))
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _env_name_errors(name: str) -> list[str]:
    """IsRelaxedEnvVarName (RelaxedEnvironmentVariableValidation is on by default in 1.32)."""
    if any(not 32 <= ord(ch) <= 126 or ch == "=" for ch in name):
        return ["a valid environment variable name must consist only of printable ASCII "
                "characters other than '='"]
    return []


# --- quantities -------------------------------------------------------------------

def _amount(value: Any) -> Decimal | None:
    """A quantity's value, None when it is not one (validation reports it)."""
    try:
        return v.quantity(value).amount
    except ValueError:
        return None


def pod_qos(spec: Obj) -> str:
    """qos.ComputePodQOS: BestEffort, Burstable or Guaranteed from cpu/memory resources."""
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    for c in [*dicts(spec.get("containers")), *dicts(spec.get("initContainers"))]:
        res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        for total, values in ((requests, res.get("requests")), (limits, res.get("limits"))):
            for name, raw in (values or {}).items():
                q = _amount(raw)
                if name in ("cpu", "memory") and q is not None and q > 0:
                    total[name] = total.get(name, Decimal(0)) + q
        found = {n for n, raw in (res.get("limits") or {}).items()
                 if n in ("cpu", "memory") and (_amount(raw) or 0) > 0}
        if found != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"


# --- defaults ---------------------------------------------------------------------

def _image_tag(image: str) -> str:
    """The tag parsers.ParseImageName reports: "latest" when there is neither tag nor digest."""
    if not image:
        return ""
    name, at, _ = image.partition("@")
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[colon + 1:]
    return "" if at else "latest"


def default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec plus the defaults of everything a PodSpec holds, in place.

    Only what every PodSpec gets: Pod-only defaults (enableServiceLinks, hostPorts
    under hostNetwork, admission) are the Pod kind's, as pod templates do not show them.
    Quantities take their canonical form, as decoding and SetDefaults_ResourceList
    leave them.
    """
    for key in ("initContainers", "containers", "ephemeralContainers"):
        if isinstance(spec.get(key), list):  # Go decodes a null entry as an empty one
            spec[key] = [{} if c is None else c for c in spec[key]]
    canonical_resources(spec.get("overhead"))
    fill(spec, "dnsPolicy", "ClusterFirst")
    fill(spec, "restartPolicy", "Always")
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    fill(spec, "schedulerName", "default-scheduler")
    for c in _all_containers(spec):
        _default_container(c)
    for vol in dicts(spec.get("volumes")):
        _default_volume(vol)


def canonical_resources(values: Any) -> None:
    """SetDefaults_ResourceList on a decoded ResourceList: canonical, rounded up to milli."""
    if isinstance(values, dict):
        for name, raw in values.items():
            values[name] = v.canonical_quantity(raw, v.MILLI)


def _all_containers(spec: Obj) -> list[Obj]:
    return [*dicts(spec.get("initContainers")), *dicts(spec.get("containers")),
            *dicts(spec.get("ephemeralContainers"))]


def _default_container(c: Obj) -> None:
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = "Always" if _image_tag(c.get("image") or "") == "latest" \
            else "IfNotPresent"
    fill(c, "terminationMessagePath", "/dev/termination-log")
    fill(c, "terminationMessagePolicy", "File")
    if c.get("resources") is None:
        c["resources"] = {}
    if isinstance(c["resources"], dict):
        canonical_resources(c["resources"].get("limits"))
        canonical_resources(c["resources"].get("requests"))
    for port in dicts(c.get("ports")):
        fill(port, "protocol", "TCP")
    for env in dicts(c.get("env")):
        source = env.get("valueFrom")
        if isinstance(source, dict):
            _default_field_ref(source.get("fieldRef"))
            ref = source.get("resourceFieldRef")
            if isinstance(ref, dict):
                ref["divisor"] = v.canonical_quantity(ref.get("divisor", "0"))
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(c.get(key), dict):
            _default_probe(c[key])
    lifecycle = c.get("lifecycle")
    for key in ("postStart", "preStop"):
        if isinstance(lifecycle, dict) and isinstance(lifecycle.get(key), dict):
            _default_handler(lifecycle[key])


def _default_field_ref(ref: Any) -> None:
    if isinstance(ref, dict):
        fill(ref, "apiVersion", "v1")


def _default_handler(handler: Obj) -> None:
    if isinstance(handler.get("httpGet"), dict):
        fill(handler["httpGet"], "path", "/")
        fill(handler["httpGet"], "scheme", "HTTP")
    if isinstance(handler.get("grpc"), dict):
        handler["grpc"].setdefault("service", "")


def _default_probe(probe: Obj) -> None:
    _default_handler(probe)
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        fill(probe, key, value)


def _default_volume(vol: Obj) -> None:
    if all(vol.get(k) is None for k in _VOLUME_SOURCES):
        vol["emptyDir"] = {}
    empty_dir = vol.get("emptyDir")
    if isinstance(empty_dir, dict) and empty_dir.get("sizeLimit") is not None:
        empty_dir["sizeLimit"] = v.canonical_quantity(empty_dir["sizeLimit"])
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        source = vol.get(key)
        if isinstance(source, dict) and source.get("defaultMode") is None:
            source["defaultMode"] = 420
    if isinstance(vol.get("hostPath"), dict) and vol["hostPath"].get("type") is None:
        vol["hostPath"]["type"] = ""
    for item in dicts((vol.get("downwardAPI") or {}).get("items")):
        _default_field_ref(item.get("fieldRef"))
    for source in dicts((vol.get("projected") or {}).get("sources")):
        token = source.get("serviceAccountToken")
        if isinstance(token, dict) and token.get("expirationSeconds") is None:
            token["expirationSeconds"] = 3600
        for item in dicts((source.get("downwardAPI") or {}).get("items")):
            _default_field_ref(item.get("fieldRef"))
    claim = ((vol.get("ephemeral") or {}).get("volumeClaimTemplate") or {}).get("spec")
    if isinstance(claim, dict) and claim.get("volumeMode") is None:
        claim["volumeMode"] = "Filesystem"


# --- validation -------------------------------------------------------------------

def validate_pod_spec(spec: Obj, path: str, *, resource_is_pod: bool = False) -> list[Cause]:
    """ValidatePodSpec. resource_is_pod is upstream's opts.ResourceIsPod (a Pod, not a
    template): it makes hostPort mandatory under hostNetwork."""
    out: list[Cause] = []
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is None:
        out.append(v.required(f"{path}.terminationGracePeriodSeconds"))
    volumes, vol_causes = _volumes(spec.get("volumes"), f"{path}.volumes")
    out += vol_causes
    out += _containers(spec, volumes, path, grace)
    out += _init_containers(spec, volumes, path, grace)
    out += _ephemeral_containers(spec, volumes, path, grace)
    out += _host_network_ports(spec, path, resource_is_pod)
    out += enum(spec.get("restartPolicy"), f"{path}.restartPolicy", _RESTART_POLICIES)
    out += enum(spec.get("dnsPolicy"), f"{path}.dnsPolicy", _DNS_POLICIES)
    out += v.labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    out += _pod_security_context(spec, f"{path}.securityContext")
    out += _dns_config(spec, path)
    for i, gate in enumerate(dicts(spec.get("readinessGates"))):
        p = f"{path}.readinessGates[{i}].conditionType"
        out += v.invalid_all(p, gate.get("conditionType", ""),
                             v.qualified_name(gate.get("conditionType") or ""))
    seen: set[str] = set()
    for i, gate in enumerate(dicts(spec.get("schedulingGates"))):
        name = gate.get("name") or ""
        out += v.invalid_all(f"{path}.schedulingGates[{i}]", name, v.qualified_name(name))
        if name in seen:
            out.append(v.duplicate(f"{path}.schedulingGates[{i}]", name))
        seen.add(name)
    for key in ("serviceAccountName", "nodeName"):
        if spec.get(key):
            out += v.invalid_all(f"{path}.{key}", spec[key], v.dns1123_subdomain(spec[key]))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= _MAX_INT32:
        out.append(v.invalid(f"{path}.activeDeadlineSeconds", deadline,
                             f"must be between 1 and {_MAX_INT32}, inclusive"))
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            out += v.invalid_all(f"{path}.{key}", spec[key], v.dns1123_label(spec[key]))
    out += _tolerations(spec.get("tolerations"), f"{path}.tolerations")
    for i, alias in enumerate(dicts(spec.get("hostAliases"))):
        p = f"{path}.hostAliases[{i}]"
        out += v.ip_address(alias.get("ip", ""), f"{p}.ip")
        for j, host in enumerate(alias.get("hostnames") or []):
            out += v.invalid_all(f"{p}.hostnames[{j}]", host, v.dns1123_subdomain(host))
    if spec.get("priorityClassName"):
        out += v.invalid_all(f"{path}.priorityClassName", spec["priorityClassName"],
                             v.dns1123_subdomain(spec["priorityClassName"]))
    if spec.get("preemptionPolicy") is not None:
        out += enum(spec["preemptionPolicy"], f"{path}.preemptionPolicy",
                    ("PreemptLowerPriority", "Never"))
    if spec.get("overhead") is not None:  # validateOverhead: checked as container limits
        out += _resources({"limits": spec["overhead"]}, f"{path}.overhead")
    os_ = spec.get("os")
    if isinstance(os_, dict):
        if not os_.get("name"):
            out.append(v.required(f"{path}.os.name", "cannot be empty"))
        elif os_["name"] not in ("linux", "windows"):
            out.append(v.not_supported(f"{path}.os", os_["name"], ("linux", "windows")))
    return out


def _volumes(vols: Any, path: str) -> tuple[dict[str, Obj], list[Cause]]:
    """ValidateVolumes: the valid volumes by name (for mounts to refer to) and causes."""
    by_name: dict[str, Obj] = {}
    out: list[Cause] = []
    for i, vol in enumerate(dicts(vols)):
        p = f"{path}[{i}]"
        errs = _volume_source(vol, p)
        name = vol.get("name")
        if not name:
            errs.append(v.required(f"{p}.name"))
        else:
            errs += v.invalid_all(f"{p}.name", name, v.dns1123_label(name))
        if name in by_name:
            errs.append(v.duplicate(f"{p}.name", name))
        if errs:
            out += errs
        else:
            by_name[name] = vol
    return by_name, out


_HOST_PATH_TYPES = ("", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File",
                    "FileOrCreate", "Socket")


def _volume_source(vol: Obj, path: str) -> list[Cause]:
    out: list[Cause] = []
    found = [k for k in _VOLUME_SOURCES if vol.get(k) is not None]
    out += [v.forbidden(f"{path}.{k}", "may not specify more than 1 volume type")
            for k in found[1:]]
    if not found:
        return out + [v.required(path, "must specify a volume type")]
    key = found[0]
    src = vol[key] if isinstance(vol[key], dict) else {}
    p = f"{path}.{key}"
    if key == "emptyDir" and src.get("sizeLimit") is not None:
        size = v.parsed_quantity(src["sizeLimit"], f"{p}.sizeLimit", out)
        if size is not None and size.amount < 0:
            out.append(v.forbidden(f"{p}.sizeLimit",
                                   "SizeLimit field must be a valid resource quantity"))
    required = {"secret": "secretName", "configMap": "name", "persistentVolumeClaim": "claimName",
                "hostPath": "path", "nfs": "server"}.get(key)
    if required and not src.get(required):
        out.append(v.required(f"{p}.{required}"))
    if key == "hostPath" and src.get("path"):
        if ".." in src["path"].split("/"):
            out.append(v.invalid(f"{p}.path", src["path"], "must not contain '..'"))
        if src.get("type") not in _HOST_PATH_TYPES:
            out.append(v.not_supported(f"{p}.type", src.get("type"), _HOST_PATH_TYPES))
    if key == "nfs":
        if not src.get("path"):
            out.append(v.required(f"{p}.path"))
        if not str(src.get("path") or "").startswith("/"):
            out.append(v.invalid(f"{p}.path", src.get("path") or "", "must be an absolute path"))
    mode = src.get("defaultMode")
    if isinstance(mode, int) and not 0 <= mode <= 0o777:
        out.append(v.invalid(f"{p}.defaultMode", mode, _FILE_MODE))
    if key in ("secret", "configMap"):
        for i, item in enumerate(dicts(src.get("items"))):
            ip = f"{p}.items[{i}]"
            for field in ("key", "path"):
                if not item.get(field):
                    out.append(v.required(f"{ip}.{field}"))
            if isinstance(item.get("mode"), int) and not 0 <= item["mode"] <= 0o777:
                out.append(v.invalid(f"{ip}.mode", item["mode"], _FILE_MODE))
    return out


def _container_common(c: Obj, path: str, volumes: dict[str, Obj]) -> list[Cause]:
    """validateContainerCommon: what regular, init and ephemeral containers share."""
    out: list[Cause] = []
    name = c.get("name")
    if not name:
        out.append(v.required(f"{path}.name"))
    else:
        out += v.invalid_all(f"{path}.name", name, v.dns1123_label(name))
    if not c.get("image"):
        out.append(v.required(f"{path}.image"))
    out += enum(c.get("terminationMessagePolicy"), f"{path}.terminationMessagePolicy",
                ("File", "FallbackToLogsOnError"))
    out += _container_ports(c.get("ports"), f"{path}.ports")
    out += _env(c.get("env"), f"{path}.env")
    out += _env_from(c.get("envFrom"), f"{path}.envFrom")
    out += _volume_mounts(c.get("volumeMounts"), volumes, f"{path}.volumeMounts")
    out += enum(c.get("imagePullPolicy"), f"{path}.imagePullPolicy", _PULL_POLICIES)
    out += _resources(c.get("resources"), f"{path}.resources")
    sc = c.get("securityContext")
    if isinstance(sc, dict):
        out += _ids(sc, f"{path}.securityContext", ("runAsUser", "runAsGroup"))
    return out


def _containers(spec: Obj, volumes: dict[str, Obj], path: str, grace: Any) -> list[Cause]:
    p = f"{path}.containers"
    containers = list(dicts(spec.get("containers")))
    if not containers:
        return [v.required(p)]
    out: list[Cause] = []
    names: set[str] = set()
    for i, c in enumerate(containers):
        cp = f"{p}[{i}]"
        out += _container_common(c, cp, volumes)
        name = c.get("name") or ""
        if name in names:
            out.append(v.duplicate(f"{cp}.name", name))
        names.add(name)
        out += _lifecycle_and_probes(c, cp, grace)
        if c.get("restartPolicy") is not None:
            out.append(v.forbidden(f"{cp}.restartPolicy", "may not be set for non-init containers"))
    return out + _host_port_conflicts(containers, p)


def _init_containers(spec: Obj, volumes: dict[str, Obj], path: str, grace: Any) -> list[Cause]:
    p = f"{path}.initContainers"
    names = {c.get("name") or "" for c in dicts(spec.get("containers"))}
    out: list[Cause] = []
    for i, c in enumerate(dicts(spec.get("initContainers"))):
        cp = f"{p}[{i}]"
        out += _container_common(c, cp, volumes)
        restart = c.get("restartPolicy")
        if restart is not None and restart != "Always":
            out.append(v.not_supported(f"{cp}.restartPolicy", restart, ("Always",)))
        name = c.get("name") or ""
        if name in names:
            out.append(v.duplicate(f"{cp}.name", name))
        elif name:
            names.add(name)
        out += _host_port_conflicts([c], p, first=i)
        if restart == "Always":
            out += _lifecycle_and_probes(c, cp, grace)
            continue
        for key in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
            if c.get(key) is not None:
                out.append(v.forbidden(f"{cp}.{key}", "may not be set for init containers "
                                                      "without restartPolicy=Always"))
    return out


def _ephemeral_containers(spec: Obj, volumes: dict[str, Obj], path: str,
                          grace: Any) -> list[Cause]:
    p = f"{path}.ephemeralContainers"
    others = {c.get("name") or "" for key in ("containers", "initContainers")
              for c in dicts(spec.get(key))}
    names = set(others)
    out: list[Cause] = []
    for i, c in enumerate(dicts(spec.get("ephemeralContainers"))):
        cp = f"{p}[{i}]"
        out += _container_common(c, cp, volumes)
        name = c.get("name") or ""
        if name in names:
            out.append(v.duplicate(f"{cp}.name", name))
        names.add(name)
        target = c.get("targetContainerName")
        if target and target not in others:
            out.append(_not_found(f"{cp}.targetContainerName", target))
    return out


def _host_port_conflicts(containers: list[Obj], path: str, first: int = 0) -> list[Cause]:
    """AccumulateUniqueHostPorts: one hostPort per protocol and host IP."""
    seen: set[str] = set()
    out = []
    for ci, c in enumerate(containers, start=first):
        for pi, port in enumerate(dicts(c.get("ports"))):
            if not port.get("hostPort"):
                continue
            key = f"{port.get('protocol', '')}/{port.get('hostIP', '')}/{port['hostPort']}"
            if key in seen:
                out.append(v.duplicate(f"{path}[{ci}].ports[{pi}].hostPort", key))
            seen.add(key)
    return out


def _host_network_ports(spec: Obj, path: str, resource_is_pod: bool) -> list[Cause]:
    """Under hostNetwork a hostPort must equal its containerPort (templates may omit it)."""
    if not spec.get("hostNetwork"):
        return []
    out = []
    for ci, c in enumerate(dicts(spec.get("containers"))):
        for pi, port in enumerate(dicts(c.get("ports"))):
            hp, cp = port.get("hostPort") or 0, port.get("containerPort") or 0
            if (resource_is_pod or hp) and hp != cp:
                out.append(v.invalid(f"{path}.containers[{ci}].ports[{pi}].hostPort", hp,
                                     "must match `containerPort` when `hostNetwork` is true"))
    return out


def _container_ports(ports: Any, path: str) -> list[Cause]:
    out: list[Cause] = []
    names: set[str] = set()
    for i, port in enumerate(dicts(ports)):
        p = f"{path}[{i}]"
        name = port.get("name")
        if name:
            errs = v.port_name(name)
            if errs:
                out += v.invalid_all(f"{p}.name", name, errs)
            elif name in names:
                out.append(v.duplicate(f"{p}.name", name))
            names.add(name)
        if not port.get("containerPort"):
            out.append(v.required(f"{p}.containerPort"))
        else:
            out += v.port_number(port["containerPort"], f"{p}.containerPort")
        if port.get("hostPort"):
            out += v.port_number(port["hostPort"], f"{p}.hostPort")
        out += enum(port.get("protocol"), f"{p}.protocol", PROTOCOLS)
    return out


_ENV_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                    "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                    "status.podIPs")
# What ConvertDownwardAPIFieldLabel accepts for v1 before the env-specific check.
_DOWNWARD_FIELD_LABELS = {"metadata.annotations", "metadata.labels", "spec.restartPolicy",
                          "spec.schedulerName", "status.phase", *_ENV_FIELD_PATHS}
_RESOURCE_FIELD_PATHS = ("limits.cpu", "limits.ephemeral-storage", "limits.memory",
                         "requests.cpu", "requests.ephemeral-storage", "requests.memory")


def _env(envs: Any, path: str) -> list[Cause]:
    out: list[Cause] = []
    for i, env in enumerate(dicts(envs)):
        p = f"{path}[{i}]"
        name = env.get("name")
        if not name:
            out.append(v.required(f"{p}.name"))
        else:
            out += v.invalid_all(f"{p}.name", name, _env_name_errors(name))
        if isinstance(env.get("valueFrom"), dict):
            out += _value_from(env, f"{p}.valueFrom")
    return out


def _value_from(env: Obj, path: str) -> list[Cause]:
    source = env["valueFrom"]
    checks: dict[str, Callable[[Obj, str], list[Cause]]] = {
        "fieldRef": _field_ref, "resourceFieldRef": _resource_field_ref,
        "configMapKeyRef": _key_ref, "secretKeyRef": _key_ref}
    out: list[Cause] = []
    present = [k for k in checks if isinstance(source.get(k), dict)]
    for key in present:
        out += checks[key](source[key], f"{path}.{key}")
    if not present:
        out.append(v.invalid(path, "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                       "`configMapKeyRef` or `secretKeyRef`"))
    elif env.get("value"):
        out.append(v.invalid(path, "", "may not be specified when `value` is not empty"))
    elif len(present) > 1:
        out.append(v.invalid(path, "", "may not have more than one field specified at a time"))
    return out


def _field_ref(ref: Obj, path: str) -> list[Cause]:
    if not ref.get("apiVersion"):
        return [v.required(f"{path}.apiVersion")]
    field_path = ref.get("fieldPath")
    if not field_path:
        return [v.required(f"{path}.fieldPath")]
    m = re.fullmatch(r"(metadata\.(?:labels|annotations))\['(.*)'\]", field_path)
    if m:
        key = m.group(2).lower() if m.group(1) == "metadata.annotations" else m.group(2)
        return v.invalid_all(path, key, v.qualified_name(key))
    if field_path not in _DOWNWARD_FIELD_LABELS:
        return [v.invalid(f"{path}.fieldPath", field_path, "error converting fieldPath: field "
                          f"label not supported: {field_path}")]
    if field_path not in _ENV_FIELD_PATHS:
        return [v.not_supported(f"{path}.fieldPath", field_path, _ENV_FIELD_PATHS)]
    return []


def _resource_field_ref(ref: Obj, path: str) -> list[Cause]:
    out: list[Cause] = []
    v.parsed_quantity(ref.get("divisor", "0"), f"{path}.divisor", out)
    resource = ref.get("resource")
    if not resource:
        return out + [v.required(f"{path}.resource")]
    if resource not in _RESOURCE_FIELD_PATHS and \
            not resource.startswith(("requests.hugepages-", "limits.hugepages-")):
        return out + [v.not_supported(f"{path}.resource", resource, _RESOURCE_FIELD_PATHS)]
    return out


def _key_ref(ref: Obj, path: str) -> list[Cause]:
    name = ref.get("name") or ""
    out = v.invalid_all(f"{path}.name", name, v.dns1123_subdomain(name))
    if not ref.get("key"):
        return out + [v.required(f"{path}.key")]
    return out + v.invalid_all(f"{path}.key", ref["key"], config_key_errors(ref["key"]))


def _env_from(sources: Any, path: str) -> list[Cause]:
    out: list[Cause] = []
    for i, source in enumerate(dicts(sources)):
        p = f"{path}[{i}]"
        if source.get("prefix"):
            out += v.invalid_all(f"{p}.prefix", source["prefix"],
                                 _env_name_errors(source["prefix"]))
        present = [k for k in ("configMapRef", "secretRef") if isinstance(source.get(k), dict)]
        for key in present:
            name = source[key].get("name")
            if not name:
                out.append(v.required(f"{p}.{key}.name"))
            else:
                out += v.invalid_all(f"{p}.{key}.name", name, v.dns1123_subdomain(name))
        if not present:
            out.append(v.invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif len(present) > 1:
            out.append(v.invalid(path, "", "may not have more than one field specified at a time"))
    return out


def _volume_mounts(mounts: Any, volumes: dict[str, Obj], path: str) -> list[Cause]:
    out: list[Cause] = []
    paths: set[str] = set()
    for i, mount in enumerate(dicts(mounts)):
        p = f"{path}[{i}]"
        name = mount.get("name") or ""
        if not name:
            out.append(v.required(f"{p}.name"))
        if name not in volumes:
            out.append(_not_found(f"{p}.name", name))
        mount_path = mount.get("mountPath") or ""
        if not mount_path:
            out.append(v.required(f"{p}.mountPath"))
        if mount_path in paths:
            out.append(v.invalid(f"{p}.mountPath", mount_path, "must be unique"))
        paths.add(mount_path)
    return out


# helper.IsStandardResourceName, IsStandardContainerResourceName, IsIntegerResourceName.
_STANDARD_RESOURCES = {
    "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage",
    "pods", "resourcequotas", "services", "replicationcontrollers", "secrets", "configmaps",
    "persistentvolumeclaims", "storage", "requests.storage", "services.nodeports",
    "services.loadbalancers"}
_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_INTEGER_RESOURCES = {"pods", "resourcequotas", "services", "replicationcontrollers", "secrets",
                      "configmaps", "persistentvolumeclaims", "services.nodeports",
                      "services.loadbalancers"}
_HUGEPAGES = "hugepages-"


def _native(name: str) -> bool:
    """IsNativeResource: unprefixed, or in a kubernetes.io domain."""
    return "/" not in name or "kubernetes.io/" in name


def _extended(name: str) -> bool:
    """IsExtendedResourceName: a resource of another domain that quota can name."""
    return not _native(name) and not name.startswith("requests.") and \
        not v.qualified_name("requests." + name)


def _resource_name(name: str, path: str) -> list[Cause]:
    """validateContainerResourceName."""
    out = v.invalid_all(path, name, v.qualified_name(name))
    if not out and "/" not in name and name not in _STANDARD_RESOURCES and \
            not name.startswith((_HUGEPAGES, "requests." + _HUGEPAGES)):
        out.append(v.invalid(path, name, "must be a standard resource type or fully qualified"))
    if "/" not in name:
        if name not in _CONTAINER_RESOURCES and not name.startswith(_HUGEPAGES):
            out.append(v.invalid(path, name, "must be a standard resource for containers"))
    elif not _native(name) and not _extended(name):
        out.append(v.invalid(path, name, "doesn't follow extended resource name standard"))
    return out


def _is_integer(q: v.Quantity) -> bool:
    """MilliValue() % 1000 == 0: whole once rounded up to milli units."""
    milli = q.round_up(v.MILLI)
    return milli.scale >= 0 or milli.unscaled % 10 ** -milli.scale == 0


def resource_quantity(name: str, q: v.Quantity, path: str) -> list[Cause]:
    """ValidateResourceQuantityValue: not negative, whole for integer resources. (1.32
    shows the integer error's value as the Go struct, later versions as its string.)"""
    out: list[Cause] = []
    if q.amount < 0:
        out.append(v.invalid(path, str(q), _NON_NEGATIVE))
    if (name in _INTEGER_RESOURCES or _extended(name)) and not _is_integer(q):
        out.append(v.invalid(path, str(q), "must be an integer"))
    return out


def _hugepages_error(name: str, q: v.Quantity, path: str) -> list[Cause]:
    """validateResourceQuantityHugePageValue: a whole number of pages, the page size
    being what the name ends with."""
    try:
        page = v.parse_quantity(name.removeprefix(_HUGEPAGES))
    except ValueError:
        page = v.Quantity(0, 0)
    if 0 < page.amount <= _MAX_INT64 and _is_integer(page):
        size, whole = int(page.round_up(0).amount), q.round_up(0)
        if whole.unscaled * pow(10, whole.scale, size) % size == 0:
            return []
    return [v.invalid(path, str(q), f"{q} is not positive integer multiple of {name}")]


def _overcommit_allowed(name: str) -> bool:
    return _native(name) and not name.startswith(_HUGEPAGES)


def _resources(res: Any, path: str) -> list[Cause]:
    """validateResourceRequirements, for container resources and pod overhead."""
    if not isinstance(res, dict):
        return []
    out: list[Cause] = []
    lists = {g: res[g] if isinstance(res.get(g), dict) else {} for g in ("limits", "requests")}
    limits: dict[str, v.Quantity] = {}
    for group, values in lists.items():
        for name, raw in values.items():
            p = f"{path}.{group}[{name}]"
            out += _resource_name(name, p)
            q = v.parsed_quantity(raw, p, out)
            if q is None:
                continue
            out += resource_quantity(name, q, p)
            if group == "limits":
                limits[name] = q
            else:
                out += _request_within_limit(name, q, lists["limits"], limits, path)
            if name.startswith(_HUGEPAGES):
                out += _hugepages_error(name, q, p)
    names = {*lists["limits"], *lists["requests"]}
    if any(n.startswith(_HUGEPAGES) for n in names) and not names & {"cpu", "memory"}:
        out.append(v.forbidden(path, "HugePages require cpu or memory"))
    return out


def _request_within_limit(name: str, request: v.Quantity, limits: Obj,
                          parsed: dict[str, v.Quantity], path: str) -> list[Cause]:
    """A request may not exceed its limit; one that cannot be overcommitted must equal it.
    limits are the names given, parsed the quantities among them."""
    if name not in limits:
        if _overcommit_allowed(name):
            return []
        return [v.required(f"{path}.limits", "Limit must be set for non overcommitable resources")]
    limit = parsed.get(name)
    if limit is None:
        return []
    if request.amount != limit.amount and not _overcommit_allowed(name):
        return [v.invalid(f"{path}.requests", str(request),
                          f"must be equal to {name} limit of {limit}")]
    if request.amount > limit.amount:
        return [v.invalid(f"{path}.requests", str(request),
                          f"must be less than or equal to {name} limit of {limit}")]
    return []


def _ids(sc: Obj, path: str, keys: Iterable[str]) -> list[Cause]:
    """UIDs and GIDs are 0..MaxInt32 (IsValidUserID / IsValidGroupID)."""
    return [v.invalid(f"{path}.{k}", sc[k], _ID_RANGE) for k in keys
            if isinstance(sc.get(k), int) and not 0 <= sc[k] <= _MAX_INT32]


def _pod_security_context(spec: Obj, path: str) -> list[Cause]:
    sc = spec.get("securityContext")
    if not isinstance(sc, dict):
        return []
    out = _ids(sc, path, ("fsGroup", "runAsUser", "runAsGroup"))
    for i, gid in enumerate(sc.get("supplementalGroups") or []):
        if isinstance(gid, int) and not 0 <= gid <= _MAX_INT32:
            out.append(v.invalid(f"{path}.supplementalGroups[{i}]", gid, _ID_RANGE))
    return out + _sysctls(sc.get("sysctls"), spec, f"{path}.sysctls")


_SYSCTL_SEGMENT = "[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
_SYSCTL_FMT = "(" + _SYSCTL_SEGMENT + r"[\./])*" + _SYSCTL_SEGMENT
_SYSCTL_MSG = f"must have at most 253 characters and match regex ^{_SYSCTL_FMT}$"


def _sysctls(sysctls: Any, spec: Obj, path: str) -> list[Cause]:
    """validateSysctls: valid, unique names, none of the namespace a pod shares with its
    host (ValidateHostSysctl)."""
    out: list[Cause] = []
    seen: set[str] = set()
    for i, sysctl in enumerate(dicts(sysctls)):
        p = f"{path}[{i}].name"
        name = sysctl.get("name") or ""
        if not name:
            out.append(v.required(p))
        elif len(name) > 253 or not re.fullmatch(_SYSCTL_FMT, name):
            out.append(v.invalid(p, name, _SYSCTL_MSG))
        elif name in seen:
            out.append(v.duplicate(p, name))
        namespace = _sysctl_namespace(name)
        if spec.get("hostNetwork") and namespace == "net":
            out.append(v.invalid(p, name, "may not be specified when 'hostNetwork' is true"))
        elif spec.get("hostIPC") and namespace == "ipc":
            out.append(v.invalid(p, name, "may not be specified when 'hostIPC' is true"))
        seen.add(name)
    return out


def _sysctl_namespace(name: str) -> str:
    """sysctl.GetNamespace: "net", "ipc" or "" for the kernel namespace of a sysctl (or
    of a prefix ending in *), slash-separated names read as dotted ones."""
    separator = re.search(r"[./]", name)
    if separator and separator.group() == "/":
        name = name.translate(str.maketrans("./", "/."))
    name = name.partition("*")[0]
    if name == "kernel.sem" or name.startswith(("kernel.shm", "kernel.msg", "fs.mqueue.")):
        return "ipc"
    return "net" if name.startswith("net.") else ""


def _dns_config(spec: Obj, path: str) -> list[Cause]:
    p = f"{path}.dnsConfig"
    config = spec.get("dnsConfig")
    if spec.get("dnsPolicy") == "None":
        if not isinstance(config, dict):
            return [v.required(p, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not config.get("nameservers"):
            return [v.required(f"{p}.nameservers", "must provide at least one DNS nameserver "
                                                   "when `dnsPolicy` is None")]
    if not isinstance(config, dict):
        return []
    out: list[Cause] = []
    servers = config.get("nameservers") or []
    if len(servers) > 3:
        out.append(v.invalid(f"{p}.nameservers", servers, "must not have more than 3 nameservers"))
    for i, server in enumerate(servers):
        out += v.ip_address(server, f"{p}.nameservers[{i}]")
    for i, search in enumerate(config.get("searches") or []):
        search = search[:-1] if search.endswith(".") else search
        out += v.invalid_all(f"{p}.searches[{i}]", search, v.dns1123_subdomain(search))
    for i, option in enumerate(dicts(config.get("options"))):
        if not option.get("name"):
            out.append(v.required(f"{p}.options[{i}]", "must not be empty"))
    return out


def _tolerations(items: Any, path: str) -> list[Cause]:
    """ValidateTolerations."""
    out: list[Cause] = []
    for i, t in enumerate(dicts(items)):
        p = f"{path}[{i}]"
        key, op, effect = t.get("key") or "", t.get("operator") or "", t.get("effect") or ""
        if key:
            out += v.invalid_all(f"{p}.key", key, v.qualified_name(key))
        if not key and op != "Exists":
            out.append(v.invalid(f"{p}.operator", op, "operator must be Exists when `key` is "
                                 "empty, which means \"match all values and all keys\""))
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            out.append(v.invalid(f"{p}.effect", effect,
                                 "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        value = t.get("value") or ""
        if op in ("Equal", ""):
            errs = v.label_value(value)
            if errs:
                out.append(v.invalid(f"{p}.operator", value, ";".join(errs)))
        elif op == "Exists":
            if value:
                out.append(v.invalid(f"{p}.operator", value,
                                     "value must be empty when `operator` is 'Exists'"))
        else:
            out.append(v.not_supported(f"{p}.operator", op, ("Equal", "Exists")))
        if effect and effect not in TAINT_EFFECTS:
            out.append(v.not_supported(f"{p}.effect", effect, TAINT_EFFECTS))
    return out


# --- probes and lifecycle handlers -------------------------------------------------

def _lifecycle_and_probes(c: Obj, path: str, grace: Any) -> list[Cause]:
    out: list[Cause] = []
    lifecycle = c.get("lifecycle")
    for hook in ("postStart", "preStop"):
        if isinstance(lifecycle, dict) and isinstance(lifecycle.get(hook), dict):
            out += _handler(lifecycle[hook], f"{path}.lifecycle.{hook}", grace,
                            ("exec", "httpGet", "tcpSocket", "sleep"))
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(c.get(key), dict):
            out += _probe(c[key], f"{path}.{key}", grace, key)
    return out


def _probe(probe: Obj, path: str, grace: Any, kind: str) -> list[Cause]:
    out = _handler(probe, path, grace, ("exec", "httpGet", "tcpSocket", "grpc"))
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                "failureThreshold"):
        out += v.nonnegative(probe.get(key), f"{path}.{key}")
    tgps = probe.get("terminationGracePeriodSeconds")
    if tgps is not None and tgps <= 0:
        out.append(v.invalid(f"{path}.terminationGracePeriodSeconds", tgps,
                             "must be greater than 0"))
    if kind == "readinessProbe":
        if tgps is not None:
            out.append(v.invalid(f"{path}.terminationGracePeriodSeconds", tgps,
                                 "must not be set for readinessProbes"))
    elif probe.get("successThreshold", 1) != 1:
        out.append(v.invalid(f"{path}.successThreshold", probe["successThreshold"], "must be 1"))
    return out


def _handler(handler: Obj, path: str, grace: Any, kinds: tuple[str, ...]) -> list[Cause]:
    """validateHandler: exactly one action, each checked on its own."""
    out: list[Cause] = []
    count = 0
    for key in kinds:
        action = handler.get(key)
        if action is None:
            continue
        if count:
            out.append(v.forbidden(f"{path}.{key}", "may not specify more than 1 handler type"))
            continue
        count += 1
        if isinstance(action, dict):
            out += _action(key, action, f"{path}.{key}", grace)
    if not count:
        out.append(v.required(path, "must specify a handler type"))
    return out


def _action(kind: str, action: Obj, path: str, grace: Any) -> list[Cause]:
    if kind == "exec":
        return [] if action.get("command") else [v.required(f"{path}.command")]
    if kind == "httpGet":
        out = [] if action.get("path") else [v.required(f"{path}.path")]
        out += port_num_or_name(action.get("port"), f"{path}.port")
        if action.get("scheme") not in ("HTTP", "HTTPS"):
            out.append(v.not_supported(f"{path}.scheme", action.get("scheme", ""),
                                       ("HTTP", "HTTPS")))
        for header in dicts(action.get("httpHeaders")):
            name = header.get("name") or ""
            if not re.fullmatch(r"[-A-Za-z0-9]+", name):
                out.append(v.invalid(f"{path}.httpHeaders", name, v.regex_error(
                    "a valid HTTP header must consist of alphanumeric characters or '-'",
                    "[-A-Za-z0-9]+", "X-Header-Name")))
        return out
    if kind == "sleep":
        seconds = action.get("seconds") or 0
        if isinstance(grace, int) and not 0 < seconds <= grace:
            return [v.invalid(path, seconds, "must be greater than 0 and less than "
                              f"terminationGracePeriodSeconds ({grace}). Enable "
                              "AllowPodLifecycleSleepActionZeroValue feature gate for zero "
                              "sleep.")]
        return []
    return port_num_or_name(action.get("port"), f"{path}.port")
