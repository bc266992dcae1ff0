"""authorization.k8s.io/v1 SelfSubjectAccessReview: "can I?" (`kubectl auth can-i`).

A review is answered, never stored. kwire has no authorizer yet: every
authenticated user may do everything, and the answer says so.
"""
from __future__ import annotations

from kwire.api.registry import REGISTRY, Kind, Obj


def review_access(review: Obj, user: object) -> Obj:
    out = dict(review)
    out["apiVersion"], out["kind"] = "authorization.k8s.io/v1", "SelfSubjectAccessReview"
    out.setdefault("metadata", {})
    out["status"] = {"allowed": True,
                     "reason": "kwire authorizes every authenticated user (no RBAC yet)"}
    return out


REGISTRY.add(Kind(
    group="authorization.k8s.io", version="v1", kind="SelfSubjectAccessReview",
    plural="selfsubjectaccessreviews", singular="selfsubjectaccessreview", namespaced=False,
    spec_paths=(), verbs=("create",), review=review_access,
))
