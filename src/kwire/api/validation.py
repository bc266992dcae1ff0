"""Field errors in the shape Kubernetes reports them (422 Invalid, details.causes).

Validators return lists of Cause; the REST layer turns a non-empty list into a
Status. Messages follow apimachinery's field.Error so kubectl prints what a user
of a real cluster would see.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"


@dataclass(frozen=True)
class Cause:
    field: str
    reason: str
    message: str

    def to_json(self) -> dict:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def required(path: str, detail: str = "") -> Cause:
    return Cause(path, REQUIRED, "Required value" + (f": {detail}" if detail else ""))


def invalid(path: str, value: Any, detail: str = "") -> Cause:
    return Cause(path, INVALID, f"Invalid value: {_show(value)}" + (f": {detail}" if detail else ""))


def not_supported(path: str, value: Any, valid: Iterable[str]) -> Cause:
    quoted = ", ".join(json.dumps(v) for v in valid)
    return Cause(path, NOT_SUPPORTED, f"Unsupported value: {_show(value)}: supported values: {quoted}")


def duplicate(path: str, value: Any) -> Cause:
    return Cause(path, DUPLICATE, f"Duplicate value: {_show(value)}")


def forbidden(path: str, detail: str) -> Cause:
    return Cause(path, FORBIDDEN, f"Forbidden: {detail}")


def too_long(path: str, max_len: int) -> Cause:
    return Cause(path, TOO_LONG, f"Too long: may not be more than {max_len} bytes")


def immutable(path: str, value: Any) -> Cause:
    return invalid(path, value, "field is immutable")


# --- names (k8s.io/apimachinery/pkg/util/validation) -------------------------

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_LABEL_RE = re.compile("^" + DNS1123_LABEL_FMT + "$")
_SUBDOMAIN_RE = re.compile("^" + DNS1123_SUBDOMAIN_FMT + "$")
_DNS1035_RE = re.compile("^" + DNS1035_LABEL_FMT + "$")
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile("^" + _QNAME_FMT + "$")
_LABEL_VALUE_RE = re.compile("^(" + _QNAME_FMT + ")?$")


def dns1123_label(value: str) -> list[str]:
    """Problems with value as a DNS-1123 label (empty list when fine)."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_RE.match(value):
        errs.append("a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    "characters or '-', and must start and end with an alphanumeric character "
                    "(e.g. 'my-name',  or '123-abc', regex used for validation is '"
                    + DNS1123_LABEL_FMT + "')")
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _SUBDOMAIN_RE.match(value):
        errs.append("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                    "characters, '-' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'example.com', regex used for validation is '"
                    + DNS1123_SUBDOMAIN_FMT + "')")
    return errs


def dns1035_label(value: str) -> list[str]:
    """Service names are DNS-1035 labels (must start with a letter)."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035_RE.match(value):
        errs.append("a DNS-1035 label must consist of lower case alphanumeric characters or "
                    "'-', start with an alphabetic character, and end with an alphanumeric "
                    "character (e.g. 'my-name',  or 'abc-123', regex used for validation is '"
                    + DNS1035_LABEL_FMT + "')")
    return errs


def qualified_name(value: str) -> list[str]:
    """Label and annotation keys: an optional DNS subdomain prefix and a name."""
    errs = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain(prefix))
    else:
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'MyName',  or "
                "'my.name',  or '123-abc', regex used for validation is '" + _QNAME_FMT
                + "') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not _QNAME_RE.match(name):
        errs.append("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                    "must start and end with an alphanumeric character (e.g. 'MyName',  or "
                    "'my.name',  or '123-abc', regex used for validation is '" + _QNAME_FMT + "')")
    return errs


def label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append("a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                    "validation is '(" + _QNAME_FMT + ")?')")
    return errs


def labels(value: Any, path: str) -> list[Cause]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [invalid(path, value, "must be a map of string keys to string values")]
    out = []
    for k, v in value.items():
        for m in qualified_name(k):
            out.append(invalid(path, k, m))
        if not isinstance(v, str):
            out.append(invalid(f"{path}[{k}]", v, "must be a string"))
            continue
        for m in label_value(v):
            out.append(invalid(f"{path}[{k}]", v, m))
    return out


def annotations(value: Any, path: str) -> list[Cause]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [invalid(path, value, "must be a map of string keys to string values")]
    out = []
    total = 0
    for k, v in value.items():
        for m in qualified_name(k.lower()):
            out.append(invalid(path, k, m))
        total += len(k) + len(v if isinstance(v, str) else "")
    if total > 256 * 1024:
        out.append(too_long(path, 256 * 1024))
    return out


def port_number(value: Any, path: str) -> list[Cause]:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        return [invalid(path, value, "must be between 1 and 65535, inclusive")]
    return []


def object_meta(meta: Any, namespaced: bool, name_check=dns1123_subdomain) -> list[Cause]:
    """What ValidateObjectMeta checks on every kind."""
    if not isinstance(meta, dict):
        return [required("metadata")]
    out: list[Cause] = []
    name = meta.get("name")
    if not name:
        if not meta.get("generateName"):
            out.append(required("metadata.name", "name or generateName is required"))
    elif not isinstance(name, str):
        out.append(invalid("metadata.name", name, "must be a string"))
    else:
        out.extend(invalid("metadata.name", name, m) for m in name_check(name))
    ns = meta.get("namespace")
    if namespaced:
        if not ns:
            out.append(required("metadata.namespace"))
        elif isinstance(ns, str):
            out.extend(invalid("metadata.namespace", ns, m) for m in dns1123_label(ns))
    elif ns:
        out.append(forbidden("metadata.namespace", "not allowed on this type"))
    out.extend(labels(meta.get("labels"), "metadata.labels"))
    out.extend(annotations(meta.get("annotations"), "metadata.annotations"))
    return out


def need(obj: dict, path: str, causes: list[Cause]) -> Any:
    """Return obj at a dotted path, adding a Required cause when it is missing or empty."""
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if cur in (None, "", [], {}):
        causes.append(required(path))
    return cur
