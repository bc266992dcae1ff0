"""Strict decoding: unknown fields and wrong JSON types, as the Go decoder sees them.

A real API server decodes JSON into Go structs, so an unknown field is dropped
(fieldValidation Ignore), reported in a Warning header (Warn) or refused with 400
(Strict), and a value of the wrong JSON type is always a 400. The field names and
types come from data/fields.json (see tools/gen_fields.py).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

_SCALARS = {"str": (str,), "int": (int,), "bool": (bool,), "datetime": (str,),
            "float": (int, float), "quantity": (str, int, float)}
_GO_TYPES = {"str": "string", "int": "int64", "bool": "bool", "datetime": "v1.Time",
             "float": "float64", "quantity": "resource.Quantity", "bytes": "[]uint8"}
# What Go stores for a null list element or map value (decoding null into it is a no-op).
_ZEROS = {"str": "", "int": 0, "bool": False, "float": 0, "quantity": "0"}
_INDEX = re.compile(r"\[[^\]]*\]")
_STRUCT_NAME = re.compile(r"(?:[A-Z][a-z]+)?V(\d+(?:(?:alpha|beta)\d+)?)(\w+)")


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
    """Return obj as Go would decode it (unknown fields and null fields dropped, null
    list elements and map values zeroed), and what was found."""
    res = DecodeResult()
    out = _walk(obj, type_name, "", res, type_name)
    return out, res


def _walk(value: Any, t: str, path: str, res: DecodeResult, owner: str) -> Any:
    if value is None:
        return None
    if t.startswith("List["):
        if not isinstance(value, list):
            _type_error(res, value, path, owner, t)
            return value
        inner = t[5:-1]
        return [_element(v, inner, f"{path}[{i}]", res, owner) for i, v in enumerate(value)]
    if t.startswith("Dict[str, "):
        if not isinstance(value, dict):
            _type_error(res, value, path, owner, t)
            return value
        inner = t[10:-1]
        return {k: _element(v, inner, f"{path}[{k}]", res, owner) for k, v in value.items()}
    if t == "object":
        return value
    if t in _SCALARS:
        ok = isinstance(value, _SCALARS[t]) and not (t != "bool" and isinstance(value, bool))
        if t == "int" and isinstance(value, float) and value.is_integer():
            return int(value)
        if not ok:
            _type_error(res, value, path, owner, t)
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


def _element(value: Any, t: str, path: str, res: DecodeResult, owner: str) -> Any:
    """A list element or map value: a null one becomes the Go zero value of its type."""
    if value is None:
        return _ZEROS.get(t, {} if t in _types() else None)
    return _walk(value, t, path, res, owner)


def _go_type(t: str) -> str:
    """How Go prints the type: []string, map[string]resource.Quantity, v1.Container."""
    if t.startswith("List["):
        return "[]" + _go_type(t[5:-1])
    if t.startswith("Dict[str, "):
        return "map[string]" + _go_type(t[10:-1])
    if t in _GO_TYPES:
        return _GO_TYPES[t]
    m = _STRUCT_NAME.fullmatch(t)
    return f"v{m.group(1)}.{m.group(2)}" if m else t


def _type_error(res: DecodeResult, value: Any, path: str, owner: str, want: str) -> None:
    """encoding/json's UnmarshalTypeError: the innermost struct, then the JSON field
    path without list indices or map keys."""
    if res.type_error:
        return
    got = {str: "string", bool: "bool", int: "number", float: "number", list: "array",
           dict: "object"}.get(type(value), "value")
    if got == "number" and want == "int":
        got = f"number {json.dumps(value)}"
    struct = _go_type(owner).partition(".")[2] or owner
    res.type_error = (f"json: cannot unmarshal {got} into Go struct field {struct}."
                      f"{_INDEX.sub('', path)} of type {_go_type(want)}")
