"""The Deployment controller's pure parts: hashing and naming, fenceposts,
rolling-update steps, proportional scaling, history cleanup, and status."""
from datetime import UTC, datetime, timedelta

from kwire.controllers.deployment import (
    HASH_LABEL,
    REVISION,
    RS,
    deployment_status,
    equal_ignore_hash,
    max_surge,
    max_unavailable,
    new_replicaset,
    new_rs_replicas,
    old_pod_running,
    old_rs_replicas,
    progress_deadline_left,
    proportional_scale,
    replicasets_to_clean,
    resolve_fenceposts,
    safe_encode,
    template_hash,
)
from kwire.timestamps import format_time

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:alpine"}]}}


def deployment(replicas=3, strategy=None, **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "d-uid",
                         "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": TEMPLATE,
                     "strategy": strategy or {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": "25%",
                                                                "maxUnavailable": "25%"}},
                     **spec}}


def replicaset(name, replicas, available=None, rev=1, ready=None):
    available = replicas if available is None else available
    return {"metadata": {"name": name, "annotations": {REVISION: str(rev)},
                         "creationTimestamp": f"2026-01-01T00:00:0{rev}Z"},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "availableReplicas": available,
                       "readyReplicas": available if ready is None else ready}}


def test_hash_is_stable_safe_and_changes_with_template_and_collisions():
    h = template_hash(TEMPLATE)
    assert h == template_hash({"spec": TEMPLATE["spec"], "metadata": TEMPLATE["metadata"]})
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    assert template_hash(TEMPLATE, 1) != h
    other = {**TEMPLATE, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    assert template_hash(other) != h
    assert safe_encode("0123") == "4567"


def test_new_replicaset_is_named_and_labelled_by_the_hash():
    rs = new_replicaset(deployment(), 3, 1)
    h = template_hash(TEMPLATE)
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: h}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH_LABEL: h}
    assert rs["metadata"]["annotations"][REVISION] == "3"
    assert rs["metadata"]["ownerReferences"][0]["controller"] is True
    assert equal_ignore_hash(rs["spec"]["template"], TEMPLATE)
    assert TEMPLATE["metadata"]["labels"] == {"app": "web"}  # not mutated


def test_fenceposts_round_surge_up_and_unavailable_down():
    assert resolve_fenceposts(3, "25%", "25%") == (1, 0)
    assert resolve_fenceposts(10, "25%", "25%") == (3, 2)
    assert resolve_fenceposts(3, 0, 0) == (0, 1)
    assert resolve_fenceposts(4, 2, "50%") == (2, 2)
    assert max_surge(deployment(strategy={"type": "Recreate"})) == 0
    assert max_unavailable(deployment(replicas=0)) == 0


def test_rolling_update_surges_the_new_replicaset_first():
    assert new_rs_replicas(3, 1, RS(0), [RS(3, 3)]) == 1
    assert new_rs_replicas(3, 1, RS(1), [RS(3, 3)]) == 1      # at max surge: wait
    assert new_rs_replicas(3, 1, RS(1), [RS(2, 2)]) == 2
    assert new_rs_replicas(10, 3, RS(0), [RS(10, 10)]) == 3
    assert new_rs_replicas(3, 1, RS(5), []) == 3              # too big: scale down


def test_rolling_update_scales_old_down_keeping_minimum_available():
    # 3 replicas, surge 1, unavailable 0: the new pod must be available first
    assert old_rs_replicas(3, 0, RS(1, 0), [RS(3, 3)]) == [3]
    assert old_rs_replicas(3, 0, RS(1, 1), [RS(3, 3)]) == [2]
    # unhealthy old replicas go first, regardless of availability
    assert old_rs_replicas(4, 1, RS(2, 0), [RS(2, 0), RS(2, 2)]) == [1, 2]
    # then healthy ones while more than replicas - maxUnavailable are available
    assert old_rs_replicas(4, 1, RS(2, 2), [RS(2, 2), RS(2, 2)]) == [0, 1]
    assert old_rs_replicas(3, 0, RS(3, 3), [RS(0, 0)]) == [0]


def test_proportional_scaling_shares_by_size_rest_to_newest():
    assert proportional_scale(20, 5, [5, 10]) == [9, 16]
    assert proportional_scale(5, 1, [6, 6]) == [3, 3]
    assert proportional_scale(3, 1, [2, 2]) == [2, 2]


def test_history_beyond_the_limit_is_cleaned_oldest_first():
    olds = [replicaset("a", 0, rev=1), replicaset("b", 0, rev=2), replicaset("c", 1, rev=3)]
    d = deployment(revisionHistoryLimit=1)
    assert [rs["metadata"]["name"] for rs in replicasets_to_clean(d, olds)] == ["a"]
    assert replicasets_to_clean(deployment(), olds) == []


def conditions(status):
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}


def test_status_of_a_complete_rollout():
    new = replicaset("web-abc", 3)
    status = deployment_status(deployment(), new, [new, replicaset("web-old", 0)], NOW)
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
        "availableReplicas": 3, "unavailableReplicas": 0}
    assert conditions(status) == {
        "Available": ("True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
        "Progressing": ("True", "NewReplicaSetAvailable",
                        'ReplicaSet "web-abc" has successfully progressed.')}


def test_status_during_a_rollout():
    new, old = replicaset("web-new", 1, available=0), replicaset("web-old", 3)
    status = deployment_status(deployment(), new, [new, old], NOW)
    assert status["updatedReplicas"] == 1 and status["replicas"] == 4
    assert conditions(status)["Progressing"] == ("True", "ReplicaSetUpdated",
                                                 'ReplicaSet "web-new" is progressing.')
    created = deployment_status(deployment(), new, [new, old], NOW, new_created=True)
    assert conditions(created)["Progressing"][1:] == ("NewReplicaSetCreated",
                                                      'Created new replica set "web-new"')


def test_unavailable_and_transition_time_kept_while_status_holds():
    new = replicaset("web-new", 3, available=1)
    d = deployment()
    status = deployment_status(d, new, [new], NOW)
    assert conditions(status)["Available"][:2] == ("False", "MinimumReplicasUnavailable")
    assert status["unavailableReplicas"] == 2
    d["status"] = status
    later = deployment_status(d, new, [new], datetime(2026, 1, 2, tzinfo=UTC))
    assert later["conditions"][0] == status["conditions"][0]


def test_a_rollout_without_progress_times_out_after_the_deadline():
    new, old = replicaset("web-new", 1, available=0), replicaset("web-old", 3)
    d = deployment(progressDeadlineSeconds=60)
    d["status"] = deployment_status(d, new, [new, old], NOW)
    assert progress_deadline_left(d, NOW + timedelta(seconds=20)) == 40
    still = deployment_status(d, new, [new, old], NOW + timedelta(seconds=30))
    assert conditions(still)["Progressing"][1] == "ReplicaSetUpdated"
    late = deployment_status(d, new, [new, old], NOW + timedelta(seconds=61))
    assert conditions(late)["Progressing"] == ("False", "ProgressDeadlineExceeded",
                                               'ReplicaSet "web-new" has timed out progressing.')
    d["status"] = late
    assert progress_deadline_left(d, NOW + timedelta(seconds=62)) is None


def test_progress_moves_the_deadline():
    new, old = replicaset("web-new", 1, available=0), replicaset("web-old", 3)
    d = deployment(progressDeadlineSeconds=60)
    d["status"] = deployment_status(d, new, [new, old], NOW)
    better = replicaset("web-new", 1, available=1)
    later = NOW + timedelta(seconds=61)
    status = deployment_status(d, better, [better, old], later)
    progressing = status["conditions"][1]
    assert progressing["reason"] == "ReplicaSetUpdated"
    assert progressing["lastUpdateTime"] == format_time(later)


def test_recreate_waits_for_terminating_old_pods():
    def pod(owner, phase="Running", deleting=False):
        meta = {"ownerReferences": [{"uid": owner, "controller": True}]}
        if deleting:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {"metadata": meta, "status": {"phase": phase}}
    assert old_pod_running(pod("old", deleting=True), {"old"})
    assert not old_pod_running(pod("old", phase="Succeeded"), {"old"})
    assert not old_pod_running(pod("new"), {"old"})
