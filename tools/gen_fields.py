"""Regenerate src/kwire/api/data/fields.json: the field names and types of every kind kwire serves.

The server needs them for fieldValidation=Strict (unknown fields are a 400) and to
drop unknown fields as a real API server's decoder does. The official `kubernetes`
Python client carries this information (generated from the upstream OpenAPI), so
it is read from there once and committed as data:

    .venv/bin/python tools/gen_fields.py
"""
import json
import re
from pathlib import Path

import kubernetes.client.models as models

ROOTS = ["V1Namespace", "V1Pod", "V1Service", "V1Endpoints", "V1Node", "V1ConfigMap", "V1Secret",
         "CoreV1Event", "V1ServiceAccount", "V1EndpointSlice", "V1Deployment", "V1ReplicaSet",
         "V1DaemonSet", "V1Ingress", "V1IngressClass", "V1NetworkPolicy", "V1Lease", "V1Binding",
         "V1DeleteOptions", "V1Scale"]
# Quantity is a string in the client's models but accepts JSON numbers on the wire.
QUANTITY_FIELDS = {("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests"),
                   ("V1VolumeResourceRequirements", "limits"),
                   ("V1VolumeResourceRequirements", "requests"),
                   ("V1EmptyDirVolumeSource", "size_limit"), ("V1NodeStatus", "capacity"),
                   ("V1NodeStatus", "allocatable"), ("V1PodSpec", "overhead"),
                   ("V1ResourceFieldSelector", "divisor")}


def convert(type_name: str, owner: str, field: str, todo: list) -> str:
    if (owner, field) in QUANTITY_FIELDS:
        return "Dict[str, quantity]" if type_name.startswith("Dict") else "quantity"
    m = re.fullmatch(r"(List|Dict)\[(?:str, )?(.*)\]", type_name)
    if m:
        inner = convert(m.group(2), owner, field, todo)
        return f"{m.group(1)}[{inner}]" if m.group(1) == "List" else f"Dict[str, {inner}]"
    if hasattr(models, type_name):
        todo.append(type_name)
    return type_name


def main() -> None:
    out: dict[str, dict[str, str]] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        cls = getattr(models, name)
        out[name] = {cls.attribute_map[attr]: convert(t, name, attr, todo)
                     for attr, t in cls.openapi_types.items()}
    path = Path(__file__).resolve().parent.parent / "src/kwire/api/data/fields.json"
    path.write_text(json.dumps({"roots": ROOTS, "types": dict(sorted(out.items()))},
                               indent=0, sort_keys=True) + "\n")
    print(f"{len(out)} types -> {path}")


if __name__ == "__main__":
    main()
