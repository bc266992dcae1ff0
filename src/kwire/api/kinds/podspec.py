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
from decimal import Decimal, InvalidOperation
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

_SUFFIXES = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))([eE][+-]?[0-9]+|[a-zA-Z]*)")


def _quantity(value: Any) -> Decimal | None:
    """A resource.Quantity ("500m", "1Gi", "1e3", 2) as a number; None if malformed."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    m = _QUANTITY.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        return None
    try:
        number, suffix = Decimal(m.group(1)), m.group(2)
        if suffix[:1] in ("e", "E"):
            return number * Decimal(10) ** int(suffix[1:])
        return number * _SUFFIXES[suffix] if suffix in _SUFFIXES else None
    except InvalidOperation:
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
                q = _quantity(raw)
                if name in ("cpu", "memory") and q is not None and q > 0:
                    total[name] = total.get(name, Decimal(0)) + q
        found = {n for n, raw in (res.get("limits") or {}).items()
                 if n in ("cpu", "memory") and (_quantity(raw) or 0) > 0}
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
    """
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
    for port in dicts(c.get("ports")):
        fill(port, "protocol", "TCP")
    for env in dicts(c.get("env")):
        source = env.get("valueFrom")
        if isinstance(source, dict):
            _default_field_ref(source.get("fieldRef"))
            if isinstance(source.get("resourceFieldRef"), dict):
                source["resourceFieldRef"].setdefault("divisor", "0")
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
    out += _pod_security_context(spec.get("securityContext"), f"{path}.securityContext")
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
    names: set[Any] = set()
    for i, c in enumerate(containers):
        cp = f"{p}[{i}]"
        out += _container_common(c, cp, volumes)
        if c.get("name") in names:
            out.append(v.duplicate(f"{cp}.name", c.get("name")))
        names.add(c.get("name"))
        out += _lifecycle_and_probes(c, cp, grace)
        if c.get("restartPolicy") is not None:
            out.append(v.forbidden(f"{cp}.restartPolicy", "may not be set for non-init containers"))
    return out + _host_port_conflicts(containers, p)


def _init_containers(spec: Obj, volumes: dict[str, Obj], path: str, grace: Any) -> list[Cause]:
    p = f"{path}.initContainers"
    names = {c.get("name") for c in dicts(spec.get("containers"))}
    out: list[Cause] = []
    for i, c in enumerate(dicts(spec.get("initContainers"))):
        cp = f"{p}[{i}]"
        out += _container_common(c, cp, volumes)
        restart = c.get("restartPolicy")
        if restart is not None and restart != "Always":
            out.append(v.not_supported(f"{cp}.restartPolicy", restart, ("Always",)))
        if c.get("name") in names:
            out.append(v.duplicate(f"{cp}.name", c.get("name")))
        elif c.get("name"):
            names.add(c["name"])
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
    others = {c.get("name") for key in ("containers", "initContainers")
              for c in dicts(spec.get(key))}
    names = set(others)
    out: list[Cause] = []
    for i, c in enumerate(dicts(spec.get("ephemeralContainers"))):
        cp = f"{p}[{i}]"
        out += _container_common(c, cp, volumes)
        if c.get("name") in names:
            out.append(v.duplicate(f"{cp}.name", c.get("name")))
        names.add(c.get("name"))
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
    resource = ref.get("resource")
    if not resource:
        return [v.required(f"{path}.resource")]
    if resource not in _RESOURCE_FIELD_PATHS and \
            not resource.startswith(("requests.hugepages-", "limits.hugepages-")):
        return [v.not_supported(f"{path}.resource", resource, _RESOURCE_FIELD_PATHS)]
    return []


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


_STANDARD_RESOURCES = {"cpu", "memory", "ephemeral-storage", "storage", "pods", "services",
                       "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
                       "persistentvolumeclaims", "services.nodeports",
                       "services.loadbalancers"}


def _resource_name(name: str, path: str) -> list[Cause]:
    """validateContainerResourceName: a qualified name; unprefixed ones must be standard."""
    out = v.invalid_all(path, name, v.qualified_name(name))
    if out or "/" in name:
        return out
    hugepages = name.startswith("hugepages-")
    if name not in _STANDARD_RESOURCES and not hugepages:
        out.append(v.invalid(path, name, "must be a standard resource type or fully qualified"))
    if name not in ("cpu", "memory", "ephemeral-storage") and not hugepages:
        out.append(v.invalid(path, name, "must be a standard resource for containers"))
    return out


def _overcommit_allowed(name: str) -> bool:
    native = "/" not in name or "kubernetes.io/" in name
    return native and not name.startswith("hugepages-")


def _resources(res: Any, path: str) -> list[Cause]:
    if not isinstance(res, dict):
        return []
    limits = res.get("limits") if isinstance(res.get("limits"), dict) else {}
    requests = res.get("requests") if isinstance(res.get("requests"), dict) else {}
    out: list[Cause] = []
    for group, values in (("limits", limits), ("requests", requests)):
        for name, raw in values.items():
            p = f"{path}.{group}[{name}]"
            out += _resource_name(name, p)
            q = _quantity(raw)
            if q is not None and q < 0:
                out.append(v.invalid(p, str(raw), _NON_NEGATIVE))
    for name, raw in requests.items():
        req, lim = _quantity(raw), _quantity(limits.get(name))
        if name not in limits:
            if not _overcommit_allowed(name):
                out.append(v.required(f"{path}.limits",
                                      "Limit must be set for non overcommitable resources"))
        elif req is None or lim is None:
            continue
        elif req != lim and not _overcommit_allowed(name):
            out.append(v.invalid(f"{path}.requests", str(raw),
                                 f"must be equal to {name} limit of {limits[name]}"))
        elif req > lim:
            out.append(v.invalid(f"{path}.requests", str(raw),
                                 f"must be less than or equal to {name} limit of {limits[name]}"))
    return out


def _ids(sc: Obj, path: str, keys: Iterable[str]) -> list[Cause]:
    """UIDs and GIDs are 0..MaxInt32 (IsValidUserID / IsValidGroupID)."""
    return [v.invalid(f"{path}.{k}", sc[k], _ID_RANGE) for k in keys
            if isinstance(sc.get(k), int) and not 0 <= sc[k] <= _MAX_INT32]


def _pod_security_context(sc: Any, path: str) -> list[Cause]:
    if not isinstance(sc, dict):
        return []
    out = _ids(sc, path, ("fsGroup", "runAsUser", "runAsGroup"))
    for i, gid in enumerate(sc.get("supplementalGroups") or []):
        if isinstance(gid, int) and not 0 <= gid <= _MAX_INT32:
            out.append(v.invalid(f"{path}.supplementalGroups[{i}]", gid, _ID_RANGE))
    return out


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
