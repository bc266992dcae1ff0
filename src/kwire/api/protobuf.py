"""Kubernetes protobuf request bodies, decoded into the dict their JSON would have been.

kubectl's typed commands (create namespace, configmap, secret, deployment, service,
ingress, serviceaccount; the DeleteOptions of drain's pod deletions) send
`application/vnd.kubernetes.protobuf` and never retry with JSON. Such a body is the magic b"k8s\\x00" and a runtime.Unknown
whose typeMeta names the kind and whose raw field holds the object.

The schemas (field numbers, JSON names, and how each field shows in JSON) are in
data/proto.json, made by tools/gen_proto.py. The k8s messages are proto2 as gogo
writes them: a non-pointer field is always on the wire, even when zero, while a
pointer field is there only when set. So each field carries a label:
  omit    a Go value with `omitempty`: a zero value is dropped, as encoding/json would;
  keep    a Go pointer, or a value without omitempty: a zero value stays (replicas: 0);
  inline  an embedded struct (Volume's VolumeSource): its fields join the parent's;
  rep     a repeated field: a list;
  map     a map with string keys; the type is the value's.
An empty value struct is dropped under `omit` too, and a zero time always: Go would
write `{}` and `null`, which mean the same as absent to any decoder.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

MAGIC = b"k8s\x00"
VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5
_EPOCH = datetime(1970, 1, 1)


class ProtobufError(ValueError):
    """The body is not a Kubernetes protobuf object that kwire can read."""


@dataclass(frozen=True)
class Field:
    json: str
    type: str
    label: str


@dataclass(frozen=True)
class Schema:
    kinds: dict[str, str]
    messages: dict[str, dict[int, Field]]


@lru_cache(maxsize=1)
def _schema() -> Schema:
    data = json.loads((Path(__file__).parent / "data" / "proto.json").read_text())
    messages = {name: {num: Field(js, typ, label) for num, js, typ, label in fields}
                for name, fields in data["messages"].items()}
    return Schema(data["kinds"], messages)


def decode(raw: bytes) -> dict[str, Any]:
    """The JSON-shaped object of a protobuf body: apiVersion and kind, then its fields."""
    if not raw.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf prefix")
    unknown = _singles(raw[len(MAGIC):], {1: BYTES, 2: BYTES, 3: BYTES, 4: BYTES})
    type_meta = _singles(unknown.get(1, b""), {1: BYTES, 2: BYTES})
    api_version = _text(type_meta.get(1, b""))
    kind = _text(type_meta.get(2, b""))
    if unknown.get(3):
        raise ProtobufError(f"unsupported contentEncoding {_text(unknown[3])!r}")
    schema = _schema()
    name = schema.kinds.get(f"{api_version}/{kind}") or schema.kinds.get(kind)
    if name is None:
        raise ProtobufError(f"cannot decode {kind or 'an object without kind'} "
                            f"{api_version} from protobuf")
    # No schema is recursive, so nesting is bounded by the schema, not by the body.
    return {"apiVersion": api_version, "kind": kind, **_message(unknown.get(2, b""), name)}


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(number, wire type, value) of each field: an int for varints, else the bytes."""
    i, end = 0, len(buf)
    while i < end:
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == VARINT:
            value, i = varint(buf, i)
            yield number, wire, value
            continue
        if wire == BYTES:
            size, i = varint(buf, i)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
        else:
            raise ProtobufError(f"unsupported wire type {wire} for field {number}")
        if i + size > end:
            raise ProtobufError(f"field {number} runs past the end of its message")
        yield number, wire, buf[i:i + size]
        i += size


def varint(buf: bytes, i: int) -> tuple[int, int]:
    """The unsigned varint at buf[i] and the index after it."""
    result = shift = 0
    for j in range(i, min(i + 10, len(buf))):
        result |= (buf[j] & 0x7F) << shift
        if buf[j] < 0x80:
            return result, j + 1
        shift += 7
    raise ProtobufError("truncated or overlong varint")


def _singles(buf: bytes, wires: dict[int, int]) -> dict[int, Any]:
    """The last value of each listed field of a small fixed message (number -> wire type)."""
    out = {}
    for number, wire, value in iter_fields(buf):
        if number in wires:
            if wire != wires[number]:
                raise ProtobufError(f"field {number} has wire type {wire}, "
                                    f"expected {wires[number]}")
            out[number] = value
    return out


def _text(b: bytes) -> str:
    # encoding/json writes invalid UTF-8 as U+FFFD; so does this.
    return b.decode("utf-8", "replace")


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


_SCALARS: dict[str, tuple[int, Callable[[Any], Any]]] = {
    "string": (BYTES, _text),
    "bytes": (BYTES, lambda b: base64.b64encode(b).decode()),
    "bool": (VARINT, bool),
    "int32": (VARINT, lambda v: _signed(v, 32)),
    "int64": (VARINT, lambda v: _signed(v, 64)),
}


def _time(buf: bytes, timespec: str) -> str | None:
    """metav1.Time/MicroTime: an empty message is the zero time, which JSON writes as null."""
    if not buf:
        return None
    f = _singles(buf, {1: VARINT, 2: VARINT})
    seconds, nanos = _signed(f.get(1, 0), 64), _signed(f.get(2, 0), 32)
    micros = nanos // 1000 if timespec == "microseconds" else 0
    try:
        t = _EPOCH + timedelta(seconds=seconds, microseconds=micros)
    except OverflowError:
        raise ProtobufError(f"time out of range: {seconds}s") from None
    return t.isoformat(timespec=timespec) + "Z"


def _int_or_string(buf: bytes) -> int | str:
    f = _singles(buf, {1: VARINT, 2: VARINT, 3: BYTES})
    if f.get(1, 0) == 1:
        return _text(f.get(3, b""))
    return _signed(f.get(2, 0), 32)


def _raw_json(buf: bytes) -> Any:
    """FieldsV1 (managedFields) carries its JSON as bytes in field 1."""
    raw = _singles(buf, {1: BYTES}).get(1)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ProtobufError(f"embedded raw JSON is not valid: {e}") from None


_SPECIAL: dict[str, Callable[[bytes], Any]] = {
    "meta.v1.Time": lambda b: _time(b, "seconds"),
    "meta.v1.MicroTime": lambda b: _time(b, "microseconds"),
    "util.intstr.IntOrString": _int_or_string,
    "api.resource.Quantity": lambda b: _text(_singles(b, {1: BYTES}).get(1, b"0")),
    "meta.v1.FieldsV1": _raw_json,
}


def _wire(typ: str) -> int:
    return _SCALARS[typ][0] if typ in _SCALARS else BYTES


def _value(typ: str, wire: int, value: int | bytes) -> Any:
    if wire != _wire(typ):
        raise ProtobufError(f"a {typ} has wire type {wire}, expected {_wire(typ)}")
    if typ in _SCALARS:
        return _SCALARS[typ][1](value)
    if typ in _SPECIAL:
        return _SPECIAL[typ](value)
    return _message(value, typ)


def _repeated(typ: str, wire: int, value: int | bytes) -> list[Any]:
    """One element, or a packed run of varints."""
    if wire != BYTES or _wire(typ) != VARINT:
        return [_value(typ, wire, value)]
    out, i = [], 0
    while i < len(value):
        v, i = varint(value, i)
        out.append(_value(typ, VARINT, v))
    return out


def _entry(typ: str, wire: int, value: int | bytes) -> tuple[str, Any]:
    if wire != BYTES:
        raise ProtobufError(f"a map entry has wire type {wire}")
    key, val = "", None
    for number, w, v in iter_fields(value):
        if number == 1:
            key = _value("string", w, v)
        elif number == 2:
            val = _value(typ, w, v)
    if val is None:  # an absent value is the zero value
        val = _value(typ, VARINT, 0) if _wire(typ) == VARINT else _value(typ, BYTES, b"")
    return key, val


def _message(buf: bytes, name: str) -> dict[str, Any]:
    fields = _schema().messages[name]
    out: dict[str, Any] = {}
    for number, wire, value in iter_fields(buf):
        f = fields.get(number)
        if f is None:
            continue  # newer than the schema: dropped, as a Go decoder drops it
        if f.label == "rep":
            out.setdefault(f.json, []).extend(_repeated(f.type, wire, value))
        elif f.label == "map":
            key, val = _entry(f.type, wire, value)
            out.setdefault(f.json, {})[key] = val
        elif f.label == "inline":
            out.update(_value(f.type, wire, value))
        else:
            v = _value(f.type, wire, value)
            if v is None or (f.label == "omit" and not v):
                out.pop(f.json, None)
            else:
                out[f.json] = v
    return out
