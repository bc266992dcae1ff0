"""coordination.k8s.io/v1 Lease, as Kubernetes 1.32 serves it.

Field types (holderIdentity a string, renewTime a MicroTime...) are enforced by the
decoder (kwire.api.schema); what is left is pkg/apis/coordination/validation. A Lease has
no metadata.generation upstream, hence no spec_paths.
"""
from __future__ import annotations

from datetime import datetime

from kwire.api import validation as v
from kwire.api.kinds.core import OBJECT_META_SCHEMA
from kwire.api.registry import AGE_COLUMN, NAME_COLUMN, REGISTRY, Column, Kind, Obj
from kwire.api.tables import age
from kwire.api.validation import Cause


def default_lease(obj: Obj) -> None:
    """The lease strategy drops spec.strategy and spec.preferredHolder while the alpha
    CoordinatedLeaderElection gate is off, as it is by default in 1.32."""
    spec = obj.get("spec") or {}
    spec.pop("strategy", None)
    spec.pop("preferredHolder", None)


def validate_lease(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = v.object_meta(obj.get("metadata"), namespaced=True)
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        causes.append(v.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    return causes + v.nonnegative(spec.get("leaseTransitions"), "spec.leaseTransitions")


def lease_row(obj: Obj, now: datetime) -> list:
    return [obj["metadata"]["name"], (obj.get("spec") or {}).get("holderIdentity", ""),
            age(obj, now)]


LEASE = REGISTRY.add(Kind(
    group="coordination.k8s.io", version="v1", kind="Lease", plural="leases", singular="lease",
    spec_paths=(), default=default_lease, validate=validate_lease,
    columns=(
        NAME_COLUMN,
        Column("Holder", description="holderIdentity contains the identity of the holder of a "
               "current lease. If Coordinated Leader Election is used, the holder identity must "
               "be equal to the elected LeaseCandidate.metadata.name field."),
        AGE_COLUMN,
    ),
    row=lease_row,
    merge_schema={"metadata": {"fields": OBJECT_META_SCHEMA}},
))
