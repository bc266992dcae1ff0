"""Server-side printing: meta.k8s.io/v1 Table, as kubectl get expects it."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from kwire.api.registry import Kind
from kwire.timestamps import parse_time

TABLE_CONTENT_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"



def human_duration(seconds: float) -> str:
    """duration.HumanDuration: 5s, 3m2s, 4h, 2d, 3y45d. Up to a second in the future
    counts as now (clock skew); further is "<invalid>"."""
    s = int(seconds)  # truncates toward zero, as Go's int(d.Seconds())
    if s < -1:
        return "<invalid>"
    if s < 0:
        s = 0
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m{rem}s" if rem else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rem = minutes % 60
        return f"{hours}h{rem}m" if rem else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d{rem}h" if rem else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        rem = days % 365
        return f"{days // 365}y{rem}d" if rem else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


def since(ts: str | None, now: datetime) -> str:
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def age(obj: dict, now: datetime) -> str:
    return since(obj.get("metadata", {}).get("creationTimestamp"), now)


def partial_metadata(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def row(kind: Kind, obj: dict, now: datetime, include_object: str = "Metadata") -> dict[str, Any]:
    r: dict[str, Any] = {"cells": kind.row(obj, now)}
    if include_object == "Object":
        r["object"] = obj
    elif include_object != "None":
        r["object"] = partial_metadata(obj)
    return r


def table(kind: Kind, objs: list[dict], list_meta: dict, include_object: str = "Metadata",
          now: datetime | None = None, with_columns: bool = True) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [c.to_json() for c in kind.columns] if with_columns else [],
        "rows": [row(kind, o, now, include_object) for o in objs],
    }
