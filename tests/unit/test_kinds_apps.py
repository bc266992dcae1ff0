"""apps/v1 kinds: defaults, validation, immutability and table rows, as Kubernetes 1.32 has them."""
from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from kwire.api.kinds.apps import (
    DAEMONSET, DEPLOYMENT, REPLICASET, format_label_selector, go_label_selector, go_quote,
)
from kwire.api.kinds.core import POD_SPEC_SCHEMA, default_pod_spec
from kwire.api.validation import Cause

NOW = datetime(2024, 1, 1, 0, 5, tzinfo=timezone.utc)
CREATED = "2024-01-01T00:00:00Z"
LABELS = {"app": "web"}


def workload(kind: str, **spec) -> dict:
    body = {"selector": {"matchLabels": dict(LABELS)},
            "template": {"metadata": {"labels": dict(LABELS)},
                         "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": CREATED},
            "spec": body}


def defaulted(kind, obj: dict) -> dict:
    kind.default(obj)
    return obj


def causes(kind, obj: dict) -> list[str]:
    return [str(c) for c in kind.validate(defaulted(kind, obj))]


def pod_template_defaults(spec: dict) -> dict:
    spec = copy.deepcopy(spec)
    default_pod_spec(spec)
    return spec


# --- registration -------------------------------------------------------------------------


@pytest.mark.parametrize("kind, plural, short, subresources", [
    (DEPLOYMENT, "deployments", ("deploy",), ("status", "scale")),
    (REPLICASET, "replicasets", ("rs",), ("status", "scale")),
    (DAEMONSET, "daemonsets", ("ds",), ("status",)),
])
def test_registration(kind, plural, short, subresources):
    assert (kind.group, kind.version, kind.plural, kind.short_names, kind.categories,
            kind.subresources, kind.status_subresource, kind.namespaced) == \
        ("apps", "v1", plural, short, ("all",), subresources, True, True)


def test_only_replicasets_select_on_status_replicas():
    rs = workload("ReplicaSet")
    rs["status"] = {"replicas": 3}
    assert REPLICASET.field_labels["status.replicas"](rs) == "3"
    assert REPLICASET.field_labels["status.replicas"](workload("ReplicaSet")) == "0"
    assert DEPLOYMENT.field_labels == {} and DAEMONSET.field_labels == {}


def test_merge_schema():
    schema = DEPLOYMENT.merge_schema
    assert schema["spec"]["fields"]["strategy"] == {"retainKeys": True}
    assert schema["spec"]["fields"]["template"]["fields"]["spec"] == {"fields": POD_SPEC_SCHEMA}
    assert schema["status"] == {"fields": {"conditions": {"key": "type"}}}
    for kind in (REPLICASET, DAEMONSET):
        assert "strategy" not in kind.merge_schema["spec"]["fields"]
        assert "updateStrategy" not in kind.merge_schema["spec"]["fields"]
        assert kind.merge_schema["status"] == {"fields": {"conditions": {"key": "type"}}}


# --- defaults -----------------------------------------------------------------------------


def test_deployment_defaults():
    obj = workload("Deployment")
    template_spec = pod_template_defaults(obj["spec"]["template"]["spec"])
    spec = defaulted(DEPLOYMENT, obj)["spec"]
    assert spec == {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "template": {"metadata": {"labels": {"app": "web"}, "creationTimestamp": None},
                     "spec": template_spec},
    }
    assert template_spec["restartPolicy"] == "Always"


def test_deployment_defaults_keep_given_values():
    obj = workload("Deployment", replicas=0, strategy={"type": "Recreate"},
                   revisionHistoryLimit=2, progressDeadlineSeconds=60)
    spec = defaulted(DEPLOYMENT, obj)["spec"]
    assert (spec["replicas"], spec["strategy"], spec["revisionHistoryLimit"],
            spec["progressDeadlineSeconds"]) == (0, {"type": "Recreate"}, 2, 60)
    obj = workload("Deployment", strategy={"rollingUpdate": {"maxSurge": 1}})
    assert defaulted(DEPLOYMENT, obj)["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}}


def test_defaulting_twice_changes_nothing():
    once = defaulted(DEPLOYMENT, workload("Deployment"))
    assert defaulted(DEPLOYMENT, copy.deepcopy(once)) == once


def test_replicaset_defaults():
    spec = defaulted(REPLICASET, workload("ReplicaSet"))["spec"]
    assert spec["replicas"] == 1
    assert spec["template"]["metadata"]["creationTimestamp"] is None
    assert set(spec) == {"replicas", "selector", "template"}


def test_daemonset_defaults():
    spec = defaulted(DAEMONSET, workload("DaemonSet"))["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate",
                                      "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert "replicas" not in spec
    on_delete = defaulted(DAEMONSET, workload("DaemonSet", updateStrategy={"type": "OnDelete"}))
    assert on_delete["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_missing_spec_is_defaulted_then_refused():
    obj = {"metadata": {"name": "web", "namespace": "default"}}
    DEPLOYMENT.default(obj)
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert "spec.selector: Required value" in [str(c) for c in DEPLOYMENT.validate(obj)]


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [DEPLOYMENT, REPLICASET, DAEMONSET])
def test_valid_workloads(kind):
    assert causes(kind, workload(kind.kind)) == []


def test_selector_must_match_template_labels():
    obj = workload("Deployment")
    obj["spec"]["template"]["metadata"]["labels"] = {"app": "api", "tier": "be"}
    assert causes(DEPLOYMENT, obj) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"api", '
        '"tier":"be"}: `selector` does not match template `labels`']


def test_missing_selector():
    obj = workload("Deployment")
    del obj["spec"]["selector"]
    assert causes(DEPLOYMENT, obj) == [
        "spec.selector: Required value",
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        "`selector` does not match template `labels`"]


def test_empty_selector():
    assert causes(DEPLOYMENT, workload("Deployment", selector={})) == [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: "
        "empty selector is invalid for deployment"]
    # upstream reuses the Deployment wording for ReplicaSets
    assert causes(REPLICASET, workload("ReplicaSet", selector={"matchLabels": {}}))[-1].endswith(
        "empty selector is invalid for deployment")


def test_invalid_selector_skips_the_template():
    sel = {"matchExpressions": [{"key": "app", "operator": "Near", "values": ["web"]}]}
    obj = workload("Deployment", selector=sel)
    obj["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert causes(DEPLOYMENT, obj) == [
        'spec.selector.matchExpressions[0].operator: Invalid value: "Near": '
        "not a valid selector operator",
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        'MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"app", '
        'Operator:"Near", Values:[]string{"web"}}}}: invalid label selector']


def test_template_rules():
    obj = workload("ReplicaSet")
    obj["spec"]["template"]["spec"].update(restartPolicy="OnFailure", activeDeadlineSeconds=5)
    assert causes(REPLICASET, obj) == [
        'spec.template.spec.restartPolicy: Unsupported value: "OnFailure": '
        'supported values: "Always"',
        "spec.template.spec.activeDeadlineSeconds: Forbidden: "
        "activeDeadlineSeconds in ReplicaSet is not Supported"]
    ds = workload("DaemonSet")
    ds["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 5
    assert causes(DAEMONSET, ds) == [
        "spec.template.spec.activeDeadlineSeconds: Forbidden: "
        "activeDeadlineSeconds in DaemonSet is not Supported"]


def test_template_labels_use_upstream_path():
    obj = workload("Deployment", selector={"matchLabels": {"app": "web"}})
    obj["spec"]["template"]["metadata"]["labels"]["bad key!"] = "x"
    assert [c.field for c in DEPLOYMENT.validate(defaulted(DEPLOYMENT, obj))] == \
        ["spec.template.labels"]


def test_counts_must_not_be_negative():
    obj = workload("Deployment", replicas=-1, minReadySeconds=-2, revisionHistoryLimit=-3)
    assert causes(DEPLOYMENT, obj) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        "spec.minReadySeconds: Invalid value: -2: must be greater than or equal to 0",
        "spec.revisionHistoryLimit: Invalid value: -3: must be greater than or equal to 0"]


def test_progress_deadline_must_exceed_min_ready():
    obj = workload("Deployment", minReadySeconds=30, progressDeadlineSeconds=30)
    assert causes(DEPLOYMENT, obj) == [
        "spec.progressDeadlineSeconds: Invalid value: 30: must be greater than minReadySeconds"]


def test_deployment_strategy_type():
    assert causes(DEPLOYMENT, workload("Deployment", strategy={"type": "BlueGreen"})) == [
        'spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:"BlueGreen", '
        "RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: "
        'supported values: "Recreate", "RollingUpdate"']
    recreate = {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}
    assert causes(DEPLOYMENT, workload("Deployment", strategy=recreate)) == [
        "spec.strategy.rollingUpdate: Forbidden: "
        "may not be specified when strategy `type` is 'Recreate'"]


def test_deployment_rolling_update():
    rolling = {"maxUnavailable": "150%", "maxSurge": "abc"}
    assert causes(DEPLOYMENT, workload("Deployment", strategy={"rollingUpdate": rolling})) == [
        'spec.strategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, '
        'IntVal:0, StrVal:"abc"}: a valid percent string must be a numeric string followed by '
        "an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, '
        'IntVal:0, StrVal:"150%"}: must not be greater than 100%']
    rolling = {"maxUnavailable": 0, "maxSurge": "0%"}
    assert causes(DEPLOYMENT, workload("Deployment", strategy={"rollingUpdate": rolling})) == [
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, '
        'IntVal:0, StrVal:""}: may not be 0 when `maxSurge` is 0']
    # a Deployment may surge past 100%
    rolling = {"maxUnavailable": 1, "maxSurge": "200%"}
    assert causes(DEPLOYMENT, workload("Deployment", strategy={"rollingUpdate": rolling})) == []


def test_daemonset_selector_and_strategy():
    obj = workload("DaemonSet")
    del obj["spec"]["selector"]
    assert causes(DAEMONSET, obj) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        "`selector` does not match template `labels`"]
    both = {"rollingUpdate": {"maxUnavailable": 1, "maxSurge": "10%"}}
    assert causes(DAEMONSET, workload("DaemonSet", updateStrategy=both)) == [
        'spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, '
        'IntVal:0, StrVal:"10%"}: may not be set when maxUnavailable is non-zero']
    neither = {"rollingUpdate": {"maxUnavailable": "0%"}}
    assert causes(DAEMONSET, workload("DaemonSet", updateStrategy=neither)) == [
        "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: "
        "cannot be 0 when maxSurge is 0"]
    assert causes(DAEMONSET, workload("DaemonSet", updateStrategy={"type": "Always"})) == [
        'spec.updateStrategy: Unsupported value: apps.DaemonSetUpdateStrategy{Type:"Always", '
        "RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: "
        'supported values: "RollingUpdate", "OnDelete"']
    assert causes(DAEMONSET, workload("DaemonSet", selector={}))[-1] == (
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: "
        "empty selector is invalid for daemonset")


def test_metadata_is_validated():
    obj = workload("Deployment")
    obj["metadata"]["name"] = "Web"
    assert [c.field for c in DEPLOYMENT.validate(defaulted(DEPLOYMENT, obj))] == \
        ["metadata.name"]


def test_status_counts():
    obj = defaulted(DEPLOYMENT, workload("Deployment"))
    obj["status"] = {"replicas": 2, "readyReplicas": 1, "availableReplicas": 3,
                     "updatedReplicas": -1}
    assert [str(c) for c in DEPLOYMENT.validate(obj)] == [
        "status.updatedReplicas: Invalid value: -1: must be greater than or equal to 0",
        "status.availableReplicas: Invalid value: 3: cannot be greater than status.replicas",
        "status.availableReplicas: Invalid value: 3: cannot be greater than readyReplicas"]
    ds = defaulted(DAEMONSET, workload("DaemonSet"))
    ds["status"] = {"numberReady": -1, "desiredNumberScheduled": 1}
    assert [str(c) for c in DAEMONSET.validate(ds)] == [
        "status.numberReady: Invalid value: -1: must be greater than or equal to 0"]


# --- updates ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [DEPLOYMENT, REPLICASET, DAEMONSET])
def test_selector_is_immutable(kind):
    old = defaulted(kind, workload(kind.kind))
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "api"}}
    assert kind.validate_update(new, old) == [Cause(
        "spec.selector", "FieldValueInvalid",
        'Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"api"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable")]


def test_selector_equality_is_semantic():
    old = defaulted(DEPLOYMENT, workload("Deployment"))
    new = copy.deepcopy(old)
    new["spec"]["selector"]["matchExpressions"] = []
    new["spec"]["replicas"] = 5
    assert DEPLOYMENT.validate_update(new, old) == []


# --- tables -------------------------------------------------------------------------------


def columns(kind) -> list[tuple[str, str, int]]:
    return [(c.name, c.type, c.priority) for c in kind.columns]


def test_deployment_table():
    assert columns(DEPLOYMENT) == [
        ("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "string", 0),
        ("Available", "string", 0), ("Age", "string", 0), ("Containers", "string", 1),
        ("Images", "string", 1), ("Selector", "string", 1)]
    obj = defaulted(DEPLOYMENT, workload("Deployment", replicas=3))
    obj["spec"]["template"]["spec"]["containers"].append({"name": "log", "image": "busybox"})
    obj["status"] = {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 1}
    assert DEPLOYMENT.row(obj, NOW) == ["web", "2/3", 3, 1, "5m", "web,log",
                                        "nginx:1.27,busybox", "app=web"]
    fresh = defaulted(DEPLOYMENT, workload("Deployment", selector={}))
    assert DEPLOYMENT.row(fresh, NOW)[1:4] + DEPLOYMENT.row(fresh, NOW)[7:] == ["0/1", 0, 0, ""]


def test_replicaset_table():
    assert columns(REPLICASET) == [
        ("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
        ("Ready", "integer", 0), ("Age", "string", 0), ("Containers", "string", 1),
        ("Images", "string", 1), ("Selector", "string", 1)]
    sel = {"matchLabels": {"app": "web"},
           "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                {"key": "canary", "operator": "DoesNotExist"}]}
    obj = defaulted(REPLICASET, workload("ReplicaSet", selector=sel))
    obj["status"] = {"replicas": 1, "readyReplicas": 1}
    assert REPLICASET.row(obj, NOW) == ["web", 1, 1, 1, "5m", "web", "nginx:1.27",
                                        "app=web,!canary,tier in (be,fe)"]


def test_daemonset_table():
    assert columns(DAEMONSET) == [
        ("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
        ("Ready", "integer", 0), ("Up-to-date", "integer", 0), ("Available", "integer", 0),
        ("Node Selector", "string", 0), ("Age", "string", 0), ("Containers", "string", 1),
        ("Images", "string", 1), ("Selector", "string", 1)]
    obj = defaulted(DAEMONSET, workload("DaemonSet"))
    obj["status"] = {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                     "updatedNumberScheduled": 3, "numberAvailable": 2}
    assert DAEMONSET.row(obj, NOW) == ["web", 3, 3, 2, 3, 2, "<none>", "5m", "web",
                                       "nginx:1.27", "app=web"]
    obj["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a", "kubernetes.io/os": "linux"}
    assert DAEMONSET.row(obj, NOW)[6] == "kubernetes.io/os=linux,zone=a"


def test_label_selector_formats():
    assert format_label_selector(None) == "<none>"
    assert format_label_selector({}) == "<none>"
    assert format_label_selector({"matchExpressions": [{"key": "a", "operator": "Bad"}]}) == \
        "<error>"
    assert go_label_selector({"matchLabels": {}, "matchExpressions": []}) == \
        "v1.LabelSelector{MatchLabels:map[string]string{}, " \
        "MatchExpressions:[]v1.LabelSelectorRequirement{}}"
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'
