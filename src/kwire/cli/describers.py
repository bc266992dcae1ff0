"""kubectl describe, as pure functions from an object (and its events) to text.

Every description starts the same way (name, namespace, labels, annotations,
creation time) and ends with the object's events. Pods and Services get
kubectl's own layout of their important fields in between; any other kind
shows its remaining top-level fields (spec, status, data...) as indented YAML,
so new kinds describe sensibly with no code here.

The layout is kubectl's: "Key:\\tvalue" lines at two-space indent levels,
aligned by a tabwriter (minwidth 0, padding 2) in sections.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from kwire.api.tables import parse_time, since
from kwire.cli.printing import TabWriter, rfc1123z, to_yaml

SKIPPED_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration"}
MAX_ANNOTATION_LEN = 140
MAX_ENDPOINTS = 3


class _Writer:
    """kubectl's PrefixWriter: indented tab-separated lines; flush() ends a
    section, so alignment does not carry across it."""

    def __init__(self) -> None:
        self._tabs = TabWriter(0, 2)
        self._out: list[str] = []

    def line(self, level: int, text: str) -> None:
        self._tabs.write("  " * level + text + "\n")

    def flush(self) -> None:
        self._out.append(self._tabs.flush())

    def raw(self, text: str) -> None:
        """Text that must not be aligned (YAML may hold tabs)."""
        self.flush()
        self._out.append(text)

    def text(self) -> str:
        self.flush()
        return "".join(self._out)


def describe(obj: dict, events: list[dict], endpoint_slices: list[dict] | None = None,
             now: datetime | None = None) -> str:
    """The description of any object; a Service's shows the addresses in its
    EndpointSlices."""
    now = now or datetime.now(timezone.utc)
    w = _Writer()
    _header(w, obj)
    kind = (obj.get("kind"), obj.get("apiVersion"))
    if kind == ("Pod", "v1"):
        _pod(w, obj, now)
    elif kind == ("Service", "v1"):
        _service(w, obj, endpoint_slices or [])
    else:
        _generic(w, obj)
    _events(w, events, now)
    return w.text()


def _header(w: _Writer, obj: dict) -> None:
    meta = obj.get("metadata") or {}
    w.line(0, f"Name:\t{meta.get('name', '')}")
    if meta.get("namespace"):
        w.line(0, f"Namespace:\t{meta['namespace']}")
    _labels(w, "Labels", meta.get("labels"))
    _annotations(w, meta.get("annotations"))
    w.line(0, f"CreationTimestamp:\t{rfc1123z(meta.get('creationTimestamp'))}")


def _labels(w: _Writer, title: str, labels: dict | None) -> None:
    """key=value, one a line, sorted."""
    keys = sorted(labels or ())
    if not keys:
        w.line(0, f"{title}:\t<none>")
    for i, k in enumerate(keys):
        w.line(0, f"{title + ':' if i == 0 else ''}\t{k}={labels[k]}")


def _annotations(w: _Writer, annotations: dict | None) -> None:
    """key: value, one a line, sorted; long or multi-line values go below their
    key, shortened (kubectl's printAnnotationsMultiline)."""
    keys = sorted(k for k in annotations or () if k not in SKIPPED_ANNOTATIONS)
    if not keys:
        w.line(0, "Annotations:\t<none>")
    for i, k in enumerate(keys):
        title = "Annotations:" if i == 0 else ""
        value = str(annotations[k]).removesuffix("\n")
        if len(value) + len(k) + 2 > MAX_ANNOTATION_LEN or "\n" in value:
            w.line(0, f"{title}\t{k}:")
            for part in value.split("\n"):
                w.line(0, f"\t  {_shorten(part, MAX_ANNOTATION_LEN - 2)}")
        else:
            w.line(0, f"{title}\t{k}: {value}")


def _shorten(s: str, n: int) -> str:
    return s[:n] + "..." if len(s) > n else s


# --- Pod ---------------------------------------------------------------------------------

def _pod(w: _Writer, pod: dict, now: datetime) -> None:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    if spec.get("priority") is not None:
        w.line(0, f"Priority:\t{spec['priority']}")
    w.line(0, f"Service Account:\t{spec.get('serviceAccountName', '')}")
    node = spec.get("nodeName")
    if node and status.get("hostIP"):
        node = f"{node}/{status['hostIP']}"
    w.line(0, f"Node:\t{node or '<none>'}")
    if status.get("startTime"):
        w.line(0, f"Start Time:\t{rfc1123z(status['startTime'])}")
    if meta.get("deletionTimestamp"):
        w.line(0, f"Status:\tTerminating (lasts {since(meta['deletionTimestamp'], now)})")
        w.line(0, f"Termination Grace Period:\t{meta.get('deletionGracePeriodSeconds', 0)}s")
    else:
        w.line(0, f"Status:\t{status.get('phase', '')}")
    for key in ("reason", "message"):
        if status.get(key):
            w.line(0, f"{key.capitalize()}:\t{status[key]}")
    w.line(0, f"IP:\t{status.get('podIP', '')}")
    ips = [ip.get("ip", "") for ip in status.get("podIPs") or ()]
    if ips:
        w.line(0, "IPs:")
        for ip in ips:
            w.line(1, f"IP:\t{ip}")
    else:
        w.line(0, "IPs:\t<none>")
    controller = next((o for o in meta.get("ownerReferences") or () if o.get("controller")),
                      None)
    if controller:
        w.line(0, f"Controlled By:\t{controller.get('kind')}/{controller.get('name')}")
    if spec.get("initContainers"):
        _containers(w, pod, "Init Containers", spec["initContainers"],
                    status.get("initContainerStatuses"))
    _containers(w, pod, "Containers", spec.get("containers") or (),
                status.get("containerStatuses"))
    if status.get("conditions"):
        w.line(0, "Conditions:")
        w.line(1, "Type\tStatus")
        for c in status["conditions"]:
            w.line(1, f"{c.get('type', '')} \t{c.get('status', '')} ")
    _volumes(w, spec.get("volumes") or ())
    if status.get("qosClass"):
        w.line(0, f"QoS Class:\t{status['qosClass']}")
    _labels(w, "Node-Selectors", spec.get("nodeSelector"))
    _tolerations(w, spec.get("tolerations") or ())


def _containers(w: _Writer, pod: dict, title: str, containers: Any,
                statuses: list | None) -> None:
    w.line(0, f"{title}:")
    by_name = {s.get("name"): s for s in statuses or ()}
    for c in containers:
        st = by_name.get(c.get("name"))
        w.line(1, f"{c.get('name', '')}:")
        if st:
            w.line(2, f"Container ID:\t{st.get('containerID', '')}")
        w.line(2, f"Image:\t{c.get('image', '')}")
        if st:
            w.line(2, f"Image ID:\t{st.get('imageID', '')}")
        ports = c.get("ports") or ()
        _ports(w, "Port", ", ".join(f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}"
                                    for p in ports))
        _ports(w, "Host Port", ", ".join(f"{p.get('hostPort', 0)}/{p.get('protocol', 'TCP')}"
                                         for p in ports))
        for key in ("command", "args"):
            if c.get(key):
                w.line(2, f"{key.capitalize()}:")
                for arg in c[key]:
                    for part in str(arg).split("\n"):
                        w.line(3, part)
        if st:
            _state(w, "State", st.get("state") or {})
            if (st.get("lastState") or {}).get("terminated"):
                _state(w, "Last State", st["lastState"])
            w.line(2, f"Ready:\t{'True' if st.get('ready') else 'False'}")
            w.line(2, f"Restart Count:\t{st.get('restartCount', 0)}")
        for key in ("limits", "requests"):
            values = (c.get("resources") or {}).get(key)
            if values:
                w.line(2, f"{key.capitalize()}:")
                for name in sorted(values):
                    w.line(3, f"{name}:\t{values[name]}")
        for key, title in (("livenessProbe", "Liveness"), ("readinessProbe", "Readiness"),
                           ("startupProbe", "Startup")):
            if c.get(key):
                w.line(2, f"{title}:\t{_probe(c[key])}")
        _environment(w, pod, c)
        mounts = sorted(c.get("volumeMounts") or (), key=lambda m: m.get("mountPath", ""))
        if not mounts:
            w.line(2, "Mounts:\t<none>")
        else:
            w.line(2, "Mounts:")
            for m in mounts:
                flags = ["ro" if m.get("readOnly") else "rw"]
                if m.get("subPath"):
                    flags.append(f'path="{m["subPath"]}"')
                w.line(3, f"{m.get('mountPath')} from {m.get('name')} ({','.join(flags)})")


def _ports(w: _Writer, title: str, ports: str) -> None:
    if "," in ports:
        w.line(2, f"{title}s:\t{ports}")
    else:
        w.line(2, f"{title}:\t{ports or '<none>'}")


def _state(w: _Writer, title: str, state: dict) -> None:
    if "running" in state:
        w.line(2, f"{title}:\tRunning")
        w.line(3, f"Started:\t{rfc1123z(state['running'].get('startedAt'))}")
    elif "terminated" in state:
        t = state["terminated"]
        w.line(2, f"{title}:\tTerminated")
        for key in ("reason", "message"):
            if t.get(key):
                w.line(3, f"{key.capitalize()}:\t{t[key]}")
        w.line(3, f"Exit Code:\t{t.get('exitCode', 0)}")
        if t.get("signal"):
            w.line(3, f"Signal:\t{t['signal']}")
        w.line(3, f"Started:\t{rfc1123z(t.get('startedAt'))}")
        w.line(3, f"Finished:\t{rfc1123z(t.get('finishedAt'))}")
    else:
        w.line(2, f"{title}:\tWaiting")
        reason = (state.get("waiting") or {}).get("reason")
        if reason:
            w.line(3, f"Reason:\t{reason}")


def _probe(probe: dict) -> str:
    attrs = (f"delay={probe.get('initialDelaySeconds', 0)}s "
             f"timeout={probe.get('timeoutSeconds', 1)}s "
             f"period={probe.get('periodSeconds', 10)}s "
             f"#success={probe.get('successThreshold', 1)} "
             f"#failure={probe.get('failureThreshold', 3)}")
    if "exec" in probe:
        return f"exec [{' '.join(probe['exec'].get('command') or ())}] {attrs}"
    if "httpGet" in probe:
        h = probe["httpGet"]
        scheme = str(h.get("scheme", "HTTP")).lower()
        return f"http-get {scheme}://{h.get('host', '')}:{h.get('port')}{h.get('path', '')} " \
               f"{attrs}"
    if "tcpSocket" in probe:
        t = probe["tcpSocket"]
        return f"tcp-socket {t.get('host', '')}:{t.get('port')} {attrs}"
    if "grpc" in probe:
        g = probe["grpc"]
        return f"grpc <pod>:{g.get('port')} {g.get('service', '')} {attrs}"
    return f"unknown {attrs}"


def _environment(w: _Writer, pod: dict, container: dict) -> None:
    sources = container.get("envFrom") or ()
    if sources:
        w.line(2, "Environment Variables from:")
        for s in sources:
            kind, ref = ("ConfigMap", s["configMapRef"]) if "configMapRef" in s \
                else ("Secret", s.get("secretRef") or {})
            prefix = f" with prefix '{s['prefix']}'" if s.get("prefix") else ""
            w.line(3, f"{ref.get('name', '')}\t{kind}{prefix}\tOptional: "
                      f"{str(bool(ref.get('optional'))).lower()}")
    env = container.get("env") or ()
    if not env:
        w.line(2, "Environment:\t<none>")
        return
    w.line(2, "Environment:")
    for e in env:
        name, source = e.get("name", ""), e.get("valueFrom")
        if source is None:
            for i, part in enumerate(str(e.get("value", "")).split("\n")):
                w.line(3, f"{name + ':' if i == 0 else ''}\t{part}")
        elif "fieldRef" in source:
            ref = source["fieldRef"]
            w.line(3, f"{name}:\t{field_value(pod, ref.get('fieldPath', ''))} "
                      f"({ref.get('apiVersion', 'v1')}:{ref.get('fieldPath')})")
        elif "resourceFieldRef" in source:
            w.line(3, f"{name}:\t ({source['resourceFieldRef'].get('resource')})")
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            w.line(3, f"{name}:\t<set to the key '{ref.get('key')}' in secret "
                      f"'{ref.get('name')}'>\tOptional: {str(bool(ref.get('optional'))).lower()}")
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            w.line(3, f"{name}:\t<set to the key '{ref.get('key')}' of config map "
                      f"'{ref.get('name')}'>\tOptional: {str(bool(ref.get('optional'))).lower()}")


def field_value(obj: dict, path: str) -> str:
    """The value a downward-API fieldPath reads ("metadata.name",
    "metadata.labels['app']"), "" when unset."""
    head, bracket, key = path.partition("[")
    value: Any = obj
    for part in head.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if bracket:
        value = value.get(key.rstrip("]").strip("'\"")) if isinstance(value, dict) else None
    return "" if value is None or isinstance(value, (dict, list)) else str(value)


VOLUME_TYPES = {
    "emptyDir": ("EmptyDir (a temporary directory that shares a pod's lifetime)",
                 (("Medium", "medium", ""), ("SizeLimit", "sizeLimit", "<unset>"))),
    "hostPath": ("HostPath (bare host directory volume)",
                 (("Path", "path", ""), ("HostPathType", "type", ""))),
    "configMap": ("ConfigMap (a volume populated by a ConfigMap)",
                  (("Name", "name", ""), ("Optional", "optional", False))),
    "secret": ("Secret (a volume populated by a Secret)",
               (("SecretName", "secretName", ""), ("Optional", "optional", False))),
    "persistentVolumeClaim": (
        "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
        (("ClaimName", "claimName", ""), ("ReadOnly", "readOnly", False))),
}


def _volumes(w: _Writer, volumes: Any) -> None:
    if not volumes:
        w.line(0, "Volumes:\t<none>")
        return
    w.line(0, "Volumes:")
    for v in volumes:
        w.line(1, f"{v.get('name', '')}:")
        source = next((k for k in v if k != "name"), "")
        fields = v.get(source) or {}
        if source in VOLUME_TYPES:
            title, keys = VOLUME_TYPES[source]
            w.line(2, f"Type:\t{title}")
            for label, key, default in keys:
                w.line(2, f"{label}:\t{_scalar(fields.get(key, default))}")
        elif source == "projected":
            w.line(2, "Type:\tProjected (a volume that contains injected data from multiple "
                      "sources)")
            for s in fields.get("sources") or ():
                if "serviceAccountToken" in s:
                    w.line(2, "TokenExpirationSeconds:\t"
                              f"{s['serviceAccountToken'].get('expirationSeconds', 3600)}")
                elif "configMap" in s:
                    w.line(2, f"ConfigMapName:\t{s['configMap'].get('name', '')}")
                    w.line(2, f"ConfigMapOptional:\t{_scalar(s['configMap'].get('optional'))}")
                elif "secret" in s:
                    w.line(2, f"SecretName:\t{s['secret'].get('name', '')}")
                    w.line(2, f"SecretOptionalName:\t{_scalar(s['secret'].get('optional'))}")
                elif "downwardAPI" in s:
                    w.line(2, "DownwardAPI:\ttrue")
        else:
            w.line(2, f"Type:\t{source[:1].upper() + source[1:]}")
            for key, value in sorted(fields.items()):
                w.line(2, f"{key[:1].upper() + key[1:]}:\t{_scalar(value)}")


def _scalar(value: Any) -> str:
    """A value as Go's %v prints it."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _tolerations(w: _Writer, tolerations: Any) -> None:
    if not tolerations:
        w.line(0, "Tolerations:\t<none>")
    for i, t in enumerate(tolerations):
        text = t.get("key", "")
        if t.get("value"):
            text += f"={t['value']}"
        if t.get("effect"):
            text += f":{t['effect']}"
        if t.get("operator") == "Exists" and not t.get("value"):
            text += " op=Exists" if t.get("key") or t.get("effect") else "op=Exists"
        if t.get("tolerationSeconds") is not None:
            text += f" for {t['tolerationSeconds']}s"
        w.line(0, f"{'Tolerations:' if i == 0 else ''}\t{text}")


# --- Service -----------------------------------------------------------------------------

def _service(w: _Writer, svc: dict, slices: list[dict]) -> None:
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    selector = spec.get("selector") or {}
    w.line(0, "Selector:\t" + (",".join(f"{k}={selector[k]}" for k in sorted(selector))
                               or "<none>"))
    w.line(0, f"Type:\t{spec.get('type', '')}")
    if spec.get("ipFamilyPolicy"):
        w.line(0, f"IP Family Policy:\t{spec['ipFamilyPolicy']}")
    w.line(0, f"IP Families:\t{','.join(spec.get('ipFamilies') or ()) or '<none>'}")
    w.line(0, f"IP:\t{spec.get('clusterIP', '')}")
    w.line(0, f"IPs:\t{','.join(spec.get('clusterIPs') or ()) or '<none>'}")
    if spec.get("externalIPs"):
        w.line(0, f"External IPs:\t{','.join(spec['externalIPs'])}")
    if spec.get("loadBalancerIP"):
        w.line(0, f"IP:\t{spec['loadBalancerIP']}")
    if spec.get("externalName"):
        w.line(0, f"External Name:\t{spec['externalName']}")
    ingress = (status.get("loadBalancer") or {}).get("ingress") or ()
    if ingress:
        w.line(0, "LoadBalancer Ingress:\t"
                  + ", ".join(i.get("ip") or i.get("hostname", "") for i in ingress))
    ports = spec.get("ports") or ()
    for p in ports:
        name, proto = p.get("name") or "<unset>", p.get("protocol", "TCP")
        w.line(0, f"Port:\t{name}\t{p.get('port')}/{proto}")
        w.line(0, f"TargetPort:\t{p.get('targetPort', p.get('port'))}/{proto}")
        if p.get("nodePort"):
            w.line(0, f"NodePort:\t{name}\t{p['nodePort']}/{proto}")
        w.line(0, f"Endpoints:\t{format_endpoints(slices, p.get('name') or '')}")
    if not ports:
        w.line(0, f"Endpoints:\t{format_endpoints(slices, None)}")
    w.line(0, f"Session Affinity:\t{spec.get('sessionAffinity', 'None')}")
    for key, title in (("externalTrafficPolicy", "External Traffic Policy"),
                       ("internalTrafficPolicy", "Internal Traffic Policy"),
                       ("healthCheckNodePort", "HealthCheck NodePort")):
        if spec.get(key):
            w.line(0, f"{title}:\t{spec[key]}")
    if spec.get("loadBalancerSourceRanges"):
        w.line(0, f"LoadBalancer Source Ranges:\t{','.join(spec['loadBalancerSourceRanges'])}")


def format_endpoints(slices: list[dict], port_name: str | None) -> str:
    """The addresses behind one Service port, from its EndpointSlices, as
    ip:port: at most three and a count of the rest (kubectl's
    formatEndpointSlices). port_name None means a Service without ports."""
    if not slices:
        return "<none>"
    shown: list[str] = []
    count = 0
    for es in slices:
        addresses = [(e.get("addresses") or [""])[0] for e in es.get("endpoints") or ()]
        if not es.get("ports"):
            shown.extend(addresses)
            count += len(addresses)
            continue
        for port in es["ports"]:
            if port_name is not None and (port.get("name") or "") == port_name:
                shown.extend(_host_port(ip, port.get("port")) for ip in addresses)
                count += len(addresses)
    text = ",".join(shown[:MAX_ENDPOINTS])
    return f"{text} + {count - MAX_ENDPOINTS} more..." if count > MAX_ENDPOINTS else text


def _host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# --- everything else ---------------------------------------------------------------------

def _generic(w: _Writer, obj: dict) -> None:
    """Each remaining top-level field as a titled block of YAML."""
    for key in sorted(k for k in obj if k not in ("apiVersion", "kind", "metadata")):
        value = obj[key]
        title = key[:1].upper() + key[1:]
        if not isinstance(value, (dict, list)):
            w.line(0, f"{title}:\t{_scalar(value)}")
        elif not value:
            w.line(0, f"{title}:\t<none>")
        else:
            body = "".join(f"  {line}\n" for line in to_yaml(value).splitlines())
            w.raw(f"{title}:\n{body}")


# --- Events ------------------------------------------------------------------------------

def _events(w: _Writer, events: list[dict], now: datetime) -> None:
    """The events table, oldest first (kubectl's DescribeEvents)."""
    if not events:
        w.line(0, "Events:\t<none>")
        return
    w.flush()
    w.line(0, "Events:")
    w.line(1, "Type\tReason\tAge\tFrom\tMessage")
    w.line(1, "----\t------\t----\t----\t-------")
    for e in sorted(events, key=_event_time):
        first = since(e.get("eventTime") or e.get("firstTimestamp"), now)
        series, count = e.get("series"), e.get("count") or 0
        if series:
            age = f"{since(series.get('lastObservedTime'), now)} (x{series.get('count')} " \
                  f"over {first})"
        elif count > 1:
            age = f"{since(e.get('lastTimestamp'), now)} (x{count} over {first})"
        else:
            age = first
        source = (e.get("source") or {}).get("component") or e.get("reportingComponent") or ""
        w.line(1, f"{e.get('type', '')}\t{e.get('reason', '')}\t{age}\t{source}\t"
                  f"{(e.get('message') or '').strip()}")


def _event_time(event: dict) -> datetime:
    return parse_time(event.get("lastTimestamp") or event.get("eventTime")
                      or event.get("firstTimestamp")) or datetime.min.replace(tzinfo=timezone.utc)
