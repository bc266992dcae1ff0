"""The ReplicaSet controller's pure decisions: claiming, which pods go first,
the pods it creates, its status, and expectations."""
from datetime import UTC, datetime, timedelta

from kwire.controllers.replicaset import (
    Expectations,
    adopt_patch,
    claim,
    pod_from_template,
    pods_to_delete,
    release_patch,
    replicaset_status,
)
from kwire.timestamps import format_time

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def rs(replicas=3, **spec):
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid",
                         "generation": 4},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
                     **spec}}


def pod(name, labels=None, owner=None, node="n1", phase="Running", ready_for=None,
        created_ago=100, restarts=0):
    conds = []
    if ready_for is not None:
        conds.append({"type": "Ready", "status": "True",
                      "lastTransitionTime": format_time(NOW - timedelta(seconds=ready_for))})
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "7",
            "labels": {"app": "web"} if labels is None else labels,
            "creationTimestamp": format_time(NOW - timedelta(seconds=created_ago))}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "x", "uid": owner,
                                    "controller": True}]
    return {"metadata": meta, "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": conds,
                       "containerStatuses": [{"restartCount": restarts}]}}


def test_claim_adopts_orphans_releases_mismatches_and_skips_others():
    out = claim(rs(), [pod("mine", owner="rs-uid"), pod("orphan"),
                       pod("stray", labels={"app": "db"}, owner="rs-uid"),
                       pod("theirs", owner="other"), pod("unrelated", labels={"app": "db"})])
    assert [p["metadata"]["name"] for p in out.owned] == ["mine"]
    assert [p["metadata"]["name"] for p in out.adopt] == ["orphan"]
    assert [p["metadata"]["name"] for p in out.release] == ["stray"]


def test_an_owner_being_deleted_neither_adopts_nor_releases():
    owner = rs()
    owner["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    out = claim(owner, [pod("orphan"), pod("stray", labels={}, owner="rs-uid")])
    assert out.adopt == [] and out.release == []


def test_adopt_and_release_patches_are_conditional_controller_refs():
    p = adopt_patch(rs(), pod("orphan"))["metadata"]
    assert p["resourceVersion"] == "7"
    assert p["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                     "name": "web", "uid": "rs-uid", "controller": True,
                                     "blockOwnerDeletion": True}]
    assert release_patch(rs(), pod("p", owner="rs-uid"))["metadata"]["ownerReferences"] is None


def test_deletion_prefers_unscheduled_pending_not_ready_newer():
    pods = [pod("old-ready", ready_for=500, created_ago=900),
            pod("new-ready", ready_for=500, created_ago=10),
            pod("recently-ready", ready_for=5),
            pod("not-ready"),
            pod("pending", phase="Pending"),
            pod("unscheduled", node=None, phase="Pending")]
    order = [p["metadata"]["name"] for p in pods_to_delete(pods, 6)]
    assert order == ["unscheduled", "pending", "not-ready", "recently-ready", "new-ready",
                     "old-ready"]
    assert pods_to_delete(pods, 0) == []


def test_more_restarts_go_first_among_equals():
    pods = [pod("calm", ready_for=60), pod("flaky", ready_for=60, restarts=5)]
    assert pods_to_delete(pods, 1)[0]["metadata"]["name"] == "flaky"


def test_pod_from_template_uses_generate_name_and_controller_ref():
    p = pod_from_template(rs())
    assert p["metadata"]["generateName"] == "web-"
    assert "name" not in p["metadata"]
    assert p["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert p["metadata"]["ownerReferences"][0]["uid"] == "rs-uid"
    assert p["spec"]["containers"][0]["image"] == "nginx"


def test_status_counts_labelled_ready_and_available():
    pods = [pod("a", labels={"app": "web", "tier": "fe"}, ready_for=30),
            pod("b", ready_for=2), pod("c")]
    status = replicaset_status(rs(minReadySeconds=10), pods, NOW)
    assert status == {"replicas": 3, "fullyLabeledReplicas": 1, "readyReplicas": 2,
                      "availableReplicas": 1, "observedGeneration": 4}


def test_expectations_block_until_observed():
    e = Expectations()
    assert e.satisfied("ns/rs")
    e.expect("ns/rs", adds=2)
    e.created("ns/rs")
    assert not e.satisfied("ns/rs")
    e.created("ns/rs")
    assert e.satisfied("ns/rs")
    e.expect("ns/rs", deletes=["u1"])
    assert not e.satisfied("ns/rs")
    e.deleted("ns/rs", "u1")
    assert e.satisfied("ns/rs")


def test_expectations_expire():
    e = Expectations(timeout=-1)
    e.expect("ns/rs", adds=5)
    assert e.satisfied("ns/rs")
