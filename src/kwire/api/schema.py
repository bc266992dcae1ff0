"""Strict decoding: unknown fields and wrong JSON types, as the Go decoder sees them.

A real API server decodes JSON into Go structs, so an unknown field is dropped
(fieldValidation Ignore), reported in a Warning header (Warn) or refused with 400
(Strict), and a value of the wrong JSON type is always a 400. The field names and
types come from data/fields.json (see tools/gen_fields.py).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

_SCALARS = {"str": (str,), "int": (int,), "bool": (bool,), "datetime": (str,),
            "float": (int, float), "quantity": (str, int, float)}
_GO_TYPES = {"str": "string", "int": "int64", "bool": "bool", "datetime": "Time",
             "float": "float64", "quantity": "Quantity"}


@lru_cache(maxsize=1)
def _types() -> dict[str, dict[str, str]]:
    data = json.loads((Path(__file__).parent / "data" / "fields.json").read_text())
    return data["types"]


def root_type(kind: str, api_version: str) -> str | None:
    types = _types()
    version = api_version.rsplit("/", 1)[-1].capitalize()
    for name in (f"{version}{kind}", f"CoreV1{kind}"):
        if name in types:
            return name
    return None


class DecodeResult:
    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.type_error: str | None = None


def decode(obj: dict, type_name: str) -> tuple[dict, DecodeResult]:
    """Return obj with unknown fields and nulls dropped, and what was found."""
    res = DecodeResult()
    out = _walk(obj, type_name, "", res, type_name)
    return out, res


def _walk(value: Any, t: str, path: str, res: DecodeResult, owner: str) -> Any:
    if value is None:
        return None
    if t.startswith("List["):
        if not isinstance(value, list):
            _type_error(res, value, path, owner, "[]" + t[5:-1])
            return value
        inner = t[5:-1]
        return [_walk(v, inner, f"{path}[{i}]", res, owner) for i, v in enumerate(value)]
    if t.startswith("Dict[str, "):
        if not isinstance(value, dict):
            _type_error(res, value, path, owner, "map[string]" + t[10:-1])
            return value
        inner = t[10:-1]
        return {k: _walk(v, inner, f"{path}[{k}]", res, owner) for k, v in value.items()
                if v is not None or inner not in _types()}
    if t == "object":
        return value
    if t in _SCALARS:
        ok = isinstance(value, _SCALARS[t]) and not (t != "bool" and isinstance(value, bool))
        if t == "int" and isinstance(value, float) and value.is_integer():
            return int(value)
        if not ok:
            _type_error(res, value, path, owner, _GO_TYPES[t])
        return value
    fields = _types().get(t)
    if fields is None:
        return value
    if not isinstance(value, dict):
        _type_error(res, value, path, owner, t)
        return value
    out = {}
    for k, v in value.items():
        sub = f"{path}.{k}" if path else k
        ft = fields.get(k)
        if ft is None:
            res.unknown.append(sub)
            continue
        if v is None:
            continue
        out[k] = _walk(v, ft, sub, res, t)
    return out


def _type_error(res: DecodeResult, value: Any, path: str, owner: str, want: str) -> None:
    if res.type_error:
        return
    got = {str: "string", bool: "bool", int: "number", float: "number", list: "array",
           dict: "object"}.get(type(value), "value")
    struct = owner[2:] if owner.startswith("V1") else owner
    res.type_error = (f"json: cannot unmarshal {got} into Go struct field {struct}."
                      f"{path.split('[')[0]} of type {want}")
