"""apps/v1: Deployment, ReplicaSet, DaemonSet and ControllerRevision, as a Kubernetes 1.32
API server serves them.

Defaults are apps/v1 SetDefaults_*, validation is pkg/apis/apps/validation plus the
registry strategies (selector immutability), and the table columns are
pkg/printers/internalversion's. Field errors print their bad value the way Go's
field.Error does (`%#v` for structs and maps), because kubectl shows that text verbatim:
`spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web"},
MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable`.
"""
from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from typing import Any

from kwire.api import validation as v
from kwire.api.kinds.core import (
    OBJECT_META_SCHEMA, POD_SPEC_SCHEMA, default_pod_spec, validate_pod_spec,
)
from kwire.api.registry import AGE_COLUMN, NAME_COLUMN, REGISTRY, Column, Kind, Obj
from kwire.api.selectors import SelectorError, selector_from_object, validate_label_selector
from kwire.api.tables import age
from kwire.api.validation import Cause

# --- Go value syntax, for the bad values field errors print ------------------------------

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def go_quote(s: str) -> str:
    """strconv.Quote: printable runes stay, the rest are escaped."""
    out = []
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def go_strings(values: list | None, type_name: str = "[]string") -> str:
    """%#v of a string slice: `[]string{"a", "b"}`, or `[]string(nil)` when unset."""
    if values is None:
        return f"{type_name}(nil)"
    return type_name + "{" + ", ".join(go_quote(str(x)) for x in values) + "}"


def go_string_map(m: dict | None) -> str:
    """%#v of a map[string]string; fmt prints the keys sorted."""
    if m is None:
        return "map[string]string(nil)"
    return "map[string]string{" + ", ".join(
        f"{go_quote(k)}:{go_quote(str(m[k]))}" for k in sorted(m)) + "}"


def go_label_selector(sel: dict) -> str:
    """%#v of a metav1.LabelSelector."""
    exprs = sel.get("matchExpressions")
    if exprs is None:
        shown = "[]v1.LabelSelectorRequirement(nil)"
    else:
        shown = "[]v1.LabelSelectorRequirement{" + ", ".join(
            f"v1.LabelSelectorRequirement{{Key:{go_quote(e.get('key', ''))}, "
            f"Operator:{go_quote(e.get('operator', ''))}, Values:{go_strings(e.get('values'))}}}"
            for e in exprs) + "}"
    return (f"v1.LabelSelector{{MatchLabels:{go_string_map(sel.get('matchLabels'))}, "
            f"MatchExpressions:{shown}}}")


def go_int_or_string(value: Any) -> str:
    """%#v of an intstr.IntOrString (Type 0 is an int, 1 a string)."""
    if isinstance(value, str):
        return f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{go_quote(value)}}}"
    return f'intstr.IntOrString{{Type:0, IntVal:{value}, StrVal:""}}'


def go_invalid(path: str, shown: str, detail: str) -> Cause:
    """field.Invalid with a value already rendered in Go syntax."""
    return Cause(path, v.INVALID, f"Invalid value: {shown}: {detail}")


def go_not_supported(path: str, shown: str, valid: list[str]) -> Cause:
    quoted = ", ".join(go_quote(x) for x in valid)
    return Cause(path, v.NOT_SUPPORTED, f"Unsupported value: {shown}: supported values: {quoted}")


# --- label selectors in tables ----------------------------------------------------------


def _selector_string(sel: dict | None) -> str | None:
    """LabelSelectorAsSelector(sel).String(); None when the selector is invalid."""
    try:
        return str(selector_from_object(sel))
    except SelectorError:
        return None


def format_label_selector(sel: dict | None) -> str:
    """metav1.FormatLabelSelector: `<none>` for an empty selector, `<error>` for a bad one."""
    shown = _selector_string(sel)
    if shown is None:
        return "<error>"
    return shown or "<none>"


def format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: sorted k=v pairs, `<none>` when there are none."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels or {})) or "<none>"


def _template(obj: Obj) -> dict:
    return (obj.get("spec") or {}).get("template") or {}


def _containers(obj: Obj) -> tuple[str, str]:
    """layoutContainerCells: container names and images, comma separated."""
    containers = (_template(obj).get("spec") or {}).get("containers") or []
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


# --- shared validation ------------------------------------------------------------------

_PERCENT = re.compile(r"^[0-9]+%$")
_PERCENT_MSG = ("a valid percent string must be a numeric string followed by an ending '%' "
                "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")

def _int_or_percent_value(value: Any) -> int:
    """getIntOrPercentValue: a percent's number, an int, or a string's Atoi (0 if not one)."""
    if isinstance(value, str):
        text = value[:-1] if _PERCENT.match(value) else value
        return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else 0
    return value if isinstance(value, int) else 0


def _int_or_percent(value: Any, path: str) -> list[Cause]:
    """ValidatePositiveIntOrPercent: a non-negative int or a `<digits>%` string."""
    if isinstance(value, str) and not _PERCENT.match(value):
        return [go_invalid(path, go_int_or_string(value), _PERCENT_MSG)]
    return v.nonnegative(value, path)


def _at_most_100_percent(value: Any, path: str) -> list[Cause]:
    """IsNotMoreThan100Percent (ints are not percentages and always pass)."""
    if isinstance(value, str) and _PERCENT.match(value) and int(value[:-1]) > 100:
        return [go_invalid(path, go_int_or_string(value), "must not be greater than 100%")]
    return []


def _default_strategy(spec: dict, field: str, max_unavailable: Any, max_surge: Any) -> None:
    """SetDefaults_Deployment and SetDefaults_DaemonSet both default to a RollingUpdate
    strategy; only the field name and the two limits differ."""
    strategy = spec.setdefault(field, {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", max_unavailable)
        rolling.setdefault("maxSurge", max_surge)


def _rolling_limits(rolling: dict, path: str) -> tuple[Any, Any, list[Cause]]:
    """maxUnavailable and maxSurge of a rollingUpdate, each checked as an int or a percent.
    The rules that combine them differ between Deployment and DaemonSet."""
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    causes = _int_or_percent(unavailable, f"{path}.maxUnavailable")
    causes += _int_or_percent(surge, f"{path}.maxSurge")
    return unavailable, surge, causes


def _strategy_not_supported(strategy: dict, path: str, go_types: tuple[str, str],
                            supported: list[str]) -> list[Cause]:
    """An unknown strategy type. Go prints the strategy struct (go_types names it and its
    rollingUpdate), where a set rollingUpdate shows as a pointer address."""
    strategy_type, rolling_type = go_types
    pointer = "nil" if strategy.get("rollingUpdate") is None else "0xc000000000"
    shown = (f"apps.{strategy_type}{{Type:{go_quote(strategy.get('type') or '')}, "
             f"RollingUpdate:(*apps.{rolling_type})({pointer})}}")
    return [go_not_supported(path, shown, supported)]


def _empty_selector(sel: dict, owner: str) -> list[Cause]:
    """A selector with neither matchLabels nor matchExpressions would select every pod."""
    if sel.get("matchLabels") or sel.get("matchExpressions"):
        return []
    return [go_invalid("spec.selector", go_label_selector(sel),
                       f"empty selector is invalid for {owner}")]


def _default_template(spec: dict) -> None:
    """Pod template defaults. A Go PodTemplateSpec always serializes its zero
    metadata.creationTimestamp, which is why real workloads show `creationTimestamp: null`."""
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    default_pod_spec(template.setdefault("spec", {}))


def _validate_template(template: dict, owner: str) -> list[Cause]:
    """ValidatePodTemplateSpec plus the workload rules: restartPolicy Always, no deadline.
    Template labels are reported at spec.template.labels, as upstream does."""
    path = "spec.template"
    meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    causes = v.labels(meta.get("labels"), f"{path}.labels")
    causes += v.annotations(meta.get("annotations"), f"{path}.annotations")
    causes += validate_pod_spec(spec, f"{path}.spec")
    if spec.get("ephemeralContainers"):
        causes.append(v.forbidden(f"{path}.spec.ephemeralContainers",
                                  "ephemeral containers not allowed in pod template"))
    policy = spec.get("restartPolicy", "")
    if policy != "Always":
        causes.append(v.not_supported(f"{path}.spec.restartPolicy", policy, ["Always"]))
    if spec.get("activeDeadlineSeconds") is not None:
        causes.append(v.forbidden(f"{path}.spec.activeDeadlineSeconds",
                                  f"activeDeadlineSeconds in {owner} is not Supported"))
    return causes


def _labels_mismatch(template: dict) -> Cause:
    labels = (template.get("metadata") or {}).get("labels")
    return go_invalid("spec.template.metadata.labels", go_string_map(labels),
                      "`selector` does not match template `labels`")


def _validate_replicated(spec: dict, empty_owner: str) -> list[Cause]:
    """Selector and template rules Deployment and ReplicaSet share. Upstream says
    "empty selector is invalid for deployment" for ReplicaSets too."""
    causes: list[Cause] = []
    sel = spec.get("selector")
    if sel is None:
        causes.append(v.required("spec.selector"))
    else:
        causes += validate_label_selector(sel, "spec.selector")
        causes += _empty_selector(sel, empty_owner)
    try:
        selector = selector_from_object(sel)
    except SelectorError:
        return causes + [go_invalid("spec.selector", go_label_selector(sel),
                                    "invalid label selector")]
    template = spec.get("template") or {}
    if not selector.empty and not selector.matches((template.get("metadata") or {}).get("labels")):
        causes.append(_labels_mismatch(template))
    return causes + _validate_template(template, "ReplicaSet")


def _selector_key(sel: dict | None) -> Any:
    """Semantic equality of selectors: a nil list or map equals an empty one."""
    if sel is None:
        return None
    return (sorted((sel.get("matchLabels") or {}).items()),
            [(e.get("key"), e.get("operator"), e.get("values") or [])
             for e in sel.get("matchExpressions") or []])


def _selector_immutable(new: Obj, old: Obj) -> list[Cause]:
    """apps/v1 strategies: spec.selector cannot change after create."""
    sel = (new.get("spec") or {}).get("selector")
    if _selector_key(sel) == _selector_key((old.get("spec") or {}).get("selector")):
        return []
    shown = "null" if sel is None else go_label_selector(sel)
    return [go_invalid("spec.selector", shown, "field is immutable")]


def _validate_status(status: dict, fields: tuple[str, ...],
                     bounded: tuple[str, ...]) -> list[Cause]:
    """Status counts: non-negative, and (for bounded ones) no more than status.replicas;
    available no more than ready."""
    causes = [c for f in fields for c in v.nonnegative(status.get(f), f"status.{f}")]
    replicas = status.get("replicas", 0)
    for f in bounded:
        if status.get(f, 0) > replicas:
            causes.append(v.invalid(f"status.{f}", status[f],
                                    "cannot be greater than status.replicas"))
    if "availableReplicas" in bounded and \
            status.get("availableReplicas", 0) > status.get("readyReplicas", 0):
        causes.append(v.invalid("status.availableReplicas", status["availableReplicas"],
                                "cannot be greater than readyReplicas"))
    return causes


def _workload_schema(strategy: str | None = None) -> dict:
    """Strategic-merge keys of apps/v1 workloads (Go struct patch tags)."""
    meta = {"fields": OBJECT_META_SCHEMA}
    spec_fields: dict = {"template": {"fields": {"metadata": meta,
                                                 "spec": {"fields": POD_SPEC_SCHEMA}}}}
    if strategy:
        spec_fields[strategy] = {"retainKeys": True}
    return {"metadata": meta, "spec": {"fields": spec_fields},
            "status": {"fields": {"conditions": {"key": "type"}}}}


CONTAINERS_COLUMN = Column("Containers", description="Names of each container in the template.",
                           priority=1)
IMAGES_COLUMN = Column("Images", description="Images referenced by each container in the template.",
                       priority=1)


def _meta(obj: Obj) -> list[Cause]:
    return v.object_meta(obj.get("metadata"), namespaced=True)


# --- Deployment ---------------------------------------------------------------------------


def default_deployment(obj: Obj) -> None:
    """SetDefaults_Deployment, then the pod template's defaults."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _default_strategy(spec, "strategy", "25%", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(spec)


def _validate_deployment_strategy(strategy: dict) -> list[Cause]:
    kind = strategy.get("type")
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            return [v.forbidden("spec.strategy.rollingUpdate",
                                "may not be specified when strategy `type` is 'Recreate'")]
        return []
    if kind == "RollingUpdate":
        if rolling is None:
            return [v.required("spec.strategy.rollingUpdate",
                               "this should be defaulted and never be nil")]
        path = "spec.strategy.rollingUpdate"
        unavailable, surge, causes = _rolling_limits(rolling, path)
        if _int_or_percent_value(unavailable) == 0 and _int_or_percent_value(surge) == 0:
            causes.append(go_invalid(f"{path}.maxUnavailable", go_int_or_string(unavailable),
                                     "may not be 0 when `maxSurge` is 0"))
        # only maxUnavailable is capped: a Deployment may surge past 100%
        return causes + _at_most_100_percent(unavailable, f"{path}.maxUnavailable")
    return _strategy_not_supported(strategy, "spec.strategy",
                                   ("DeploymentStrategy", "RollingUpdateDeployment"),
                                   ["Recreate", "RollingUpdate"])


def validate_deployment(obj: Obj) -> list[Cause]:
    """ValidateDeployment, plus status checks for writes to /status."""
    spec = obj.get("spec") or {}
    causes = _meta(obj) + v.nonnegative(spec.get("replicas"), "spec.replicas")
    causes += _validate_replicated(spec, "deployment")
    causes += _validate_deployment_strategy(spec.get("strategy") or {})
    causes += v.nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    causes += v.nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        causes += v.nonnegative(deadline, "spec.progressDeadlineSeconds")
        if deadline <= spec.get("minReadySeconds", 0):
            causes.append(v.invalid("spec.progressDeadlineSeconds", deadline,
                                    "must be greater than minReadySeconds"))
    counts = ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas",
              "availableReplicas", "unavailableReplicas", "collisionCount")
    return causes + _validate_status(
        obj.get("status") or {}, counts, ("updatedReplicas", "readyReplicas", "availableReplicas"))


def deployment_row(obj: Obj, now: datetime) -> list:
    """printDeployment: READY is ready/desired; the selector prints as LabelSelectorAsSelector
    does (empty for none, `<invalid>` for a bad one), unlike ReplicaSet's."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    selector = _selector_string(spec.get("selector"))
    return [obj["metadata"]["name"],
            f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), age(obj, now),
            names, images, "<invalid>" if selector is None else selector]


DEPLOYMENT = REGISTRY.add(Kind(
    group="apps", version="v1", kind="Deployment", plural="deployments", singular="deployment",
    short_names=("deploy",), categories=("all",), subresources=("status", "scale"),
    status_subresource=True, spec_paths=("spec", "metadata.annotations"),
    default=default_deployment, validate=validate_deployment,
    validate_update=_selector_immutable,
    columns=(
        NAME_COLUMN,
        Column("Ready", description="Number of the pod with ready state"),
        Column("Up-to-date", description="Total number of non-terminated pods targeted by this "
               "deployment that have the desired template spec."),
        Column("Available", description="Total number of available pods (ready for at least "
               "minReadySeconds) targeted by this deployment."),
        AGE_COLUMN, CONTAINERS_COLUMN, IMAGES_COLUMN,
        Column("Selector", priority=1, description="Label selector for pods. Existing "
               "ReplicaSets whose pods are selected by this will be the ones affected by this "
               "deployment."),
    ),
    row=deployment_row,
    merge_schema=_workload_schema("strategy"),
))


# --- ReplicaSet ---------------------------------------------------------------------------


def default_replicaset(obj: Obj) -> None:
    """SetDefaults_ReplicaSet, then the pod template's defaults."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _default_template(spec)


def validate_replicaset(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = _meta(obj) + v.nonnegative(spec.get("replicas"), "spec.replicas")
    causes += v.nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    causes += _validate_replicated(spec, "deployment")
    counts = ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas",
              "observedGeneration")
    return causes + _validate_status(
        obj.get("status") or {}, counts,
        ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"))


def replicaset_row(obj: Obj, now: datetime) -> list:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    return [obj["metadata"]["name"], spec.get("replicas", 0), status.get("replicas", 0),
            status.get("readyReplicas", 0), age(obj, now), names, images,
            format_label_selector(spec.get("selector"))]


_RC_DOCS = "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/" \
           "#what-is-a-replicationcontroller"
_SELECTOR_DOCS = "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/" \
                 "#label-selectors"

REPLICASET = REGISTRY.add(Kind(
    group="apps", version="v1", kind="ReplicaSet", plural="replicasets", singular="replicaset",
    short_names=("rs",), categories=("all",), subresources=("status", "scale"),
    status_subresource=True,
    default=default_replicaset, validate=validate_replicaset,
    validate_update=_selector_immutable,
    columns=(
        NAME_COLUMN,
        Column("Desired", "integer", description="Replicas is the number of desired replicas. "
               "This is a pointer to distinguish between explicit zero and unspecified. "
               f"Defaults to 1. More info: {_RC_DOCS}"),
        Column("Current", "integer", description="Replicas is the most recently observed "
               f"number of replicas. More info: {_RC_DOCS}"),
        Column("Ready", "integer",
               description="The number of ready replicas for this replica set."),
        AGE_COLUMN, CONTAINERS_COLUMN, IMAGES_COLUMN,
        Column("Selector", priority=1, description="Selector is a label query over pods that "
               "should match the replica count. If the selector is empty, it is defaulted to the "
               "labels present on the pod template. Label keys and values that must match in "
               "order to be controlled by this replica set. More info: " + _SELECTOR_DOCS),
    ),
    row=replicaset_row,
    merge_schema=_workload_schema(),
    field_labels={"status.replicas": lambda o: str((o.get("status") or {}).get("replicas", 0))},
))


# --- DaemonSet ----------------------------------------------------------------------------


TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def default_daemonset(obj: Obj) -> None:
    """SetDefaults_DaemonSet, then the pod template's defaults. A new DaemonSet's
    template is generation 1 (upstream's strategy; apps/v1 shows it as an annotation)."""
    spec = obj.setdefault("spec", {})
    _default_strategy(spec, "updateStrategy", 1, 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _default_template(spec)
    annotations = obj.setdefault("metadata", {}).get("annotations") or {}
    annotations.setdefault(TEMPLATE_GENERATION, "1")
    obj["metadata"]["annotations"] = annotations


def prepare_daemonset_update(new: Obj, old: Obj) -> None:
    """The template generation is the server's: it moves on by one when the template
    changes (the daemon pods carry it as their pod-template-generation label)."""
    old_annotations = old["metadata"].get("annotations") or {}
    try:
        generation = int(old_annotations.get(TEMPLATE_GENERATION, "1"))
    except ValueError:
        generation = 1
    new_spec = dict(new.get("spec") or {})
    new_spec["template"] = copy.deepcopy(new_spec.get("template") or {})
    _default_template(new_spec)
    if new_spec["template"] != (old.get("spec") or {}).get("template"):
        generation += 1
    annotations = new.setdefault("metadata", {}).get("annotations") or {}
    annotations[TEMPLATE_GENERATION] = str(generation)
    new["metadata"]["annotations"] = annotations


def _validate_daemonset_strategy(strategy: dict) -> list[Cause]:
    kind = strategy.get("type")
    rolling = strategy.get("rollingUpdate")
    if kind == "OnDelete":
        return []
    if kind == "RollingUpdate":
        path = "spec.updateStrategy.rollingUpdate"
        if rolling is None:
            return [v.required(path)]
        unavailable, surge, causes = _rolling_limits(rolling, path)
        causes += _at_most_100_percent(unavailable, f"{path}.maxUnavailable")
        causes += _at_most_100_percent(surge, f"{path}.maxSurge")
        has_unavailable = _int_or_percent_value(unavailable) != 0
        has_surge = _int_or_percent_value(surge) != 0
        if has_unavailable and has_surge:
            causes.append(go_invalid(f"{path}.maxSurge", go_int_or_string(surge),
                                     "may not be set when maxUnavailable is non-zero"))
        elif not has_unavailable and not has_surge:
            causes.append(v.required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
        return causes
    return _strategy_not_supported(strategy, "spec.updateStrategy",
                                   ("DaemonSetUpdateStrategy", "RollingUpdateDaemonSet"),
                                   ["RollingUpdate", "OnDelete"])


def validate_daemonset(obj: Obj) -> list[Cause]:
    """ValidateDaemonSet. Unlike Deployment, a missing selector is not itself reported;
    it matches nothing, so the template labels fail to match it."""
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    sel = spec.get("selector")
    causes = _meta(obj) + validate_label_selector(sel, "spec.selector")
    try:
        if not selector_from_object(sel).matches((template.get("metadata") or {}).get("labels")):
            causes.append(_labels_mismatch(template))
    except SelectorError:
        pass
    if sel is not None:
        causes += _empty_selector(sel, "daemonset")
    causes += _validate_template(template, "DaemonSet")
    causes += v.nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    causes += _validate_daemonset_strategy(spec.get("updateStrategy") or {})
    causes += v.nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    counts = ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled",
              "numberReady", "observedGeneration", "updatedNumberScheduled", "numberAvailable",
              "numberUnavailable", "collisionCount")
    return causes + _validate_status(obj.get("status") or {}, counts, ())


def daemonset_row(obj: Obj, now: datetime) -> list:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    node_selector = (_template(obj).get("spec") or {}).get("nodeSelector")
    return [obj["metadata"]["name"], status.get("desiredNumberScheduled", 0),
            status.get("currentNumberScheduled", 0), status.get("numberReady", 0),
            status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0),
            format_labels(node_selector), age(obj, now), names, images,
            format_label_selector(spec.get("selector"))]


_DS_DOCS = "More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"

DAEMONSET = REGISTRY.add(Kind(
    group="apps", version="v1", kind="DaemonSet", plural="daemonsets", singular="daemonset",
    short_names=("ds",), categories=("all",), subresources=("status",),
    status_subresource=True,
    default=default_daemonset, prepare_update=prepare_daemonset_update,
    validate=validate_daemonset, validate_update=_selector_immutable,
    columns=(
        NAME_COLUMN,
        Column("Desired", "integer", description="The total number of nodes that should be "
               "running the daemon pod (including nodes correctly running the daemon pod). "
               + _DS_DOCS),
        Column("Current", "integer", description="The number of nodes that are running at "
               "least 1 daemon pod and are supposed to run the daemon pod. " + _DS_DOCS),
        Column("Ready", "integer", description="The number of nodes that should be running the "
               "daemon pod and have one or more of the daemon pod running and ready."),
        Column("Up-to-date", "integer",
               description="The total number of nodes that are running updated daemon pod"),
        Column("Available", "integer", description="The number of nodes that should be running "
               "the daemon pod and have one or more of the daemon pod running and available "
               "(ready for at least spec.minReadySeconds)"),
        Column("Node Selector", description="NodeSelector is a selector which must be true for "
               "the pod to fit on a node. Selector which must match a node's labels for the pod "
               "to be scheduled on that node. More info: "
               "https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
        AGE_COLUMN, CONTAINERS_COLUMN, IMAGES_COLUMN,
        Column("Selector", priority=1, description="A label query over pods that are managed by "
               "the daemon set. Must match in order to be controlled. If empty, defaulted to "
               "labels on Pod template. More info: " + _SELECTOR_DOCS),
    ),
    row=daemonset_row,
    merge_schema=_workload_schema(),
))


# --- ControllerRevision -------------------------------------------------------------------


def validate_controller_revision(obj: Obj) -> list[Cause]:
    """ValidateControllerRevision."""
    causes = _meta(obj)
    if obj.get("data") is None:
        causes.append(v.required("data", "data is mandatory"))
    return causes + v.nonnegative(obj.get("revision"), "revision")


def validate_controller_revision_update(new: Obj, old: Obj) -> list[Cause]:
    if new.get("data") == old.get("data"):
        return []
    return [go_invalid("data", f"runtime.RawExtension{{Raw:{json.dumps(new.get('data'))}}}",
                       "field is immutable")]


def controller_revision_row(obj: Obj, now: datetime) -> list:
    """printControllerRevision: the controller as `<kind>.<group>/<name>`, lower case."""
    ref = next((r for r in obj["metadata"].get("ownerReferences") or () if r.get("controller")),
               None)
    controller = "<none>"
    if ref is not None:
        group = ref.get("apiVersion", "").rpartition("/")[0]
        kind = f"{ref.get('kind', '')}.{group}" if group else ref.get("kind", "")
        controller = f"{kind.lower()}/{ref.get('name', '')}"
    return [obj["metadata"]["name"], controller, obj.get("revision", 0), age(obj, now)]


CONTROLLER_REVISION = REGISTRY.add(Kind(
    group="apps", version="v1", kind="ControllerRevision", plural="controllerrevisions",
    singular="controllerrevision", spec_paths=(),
    validate=validate_controller_revision,
    validate_update=validate_controller_revision_update,
    columns=(
        NAME_COLUMN,
        Column("Controller", description="Controller of the object"),
        Column("Revision", description="Revision indicates the revision of the state "
               "represented by Data."),
        AGE_COLUMN,
    ),
    row=controller_revision_row,
    merge_schema={"metadata": {"fields": OBJECT_META_SCHEMA}},
))
