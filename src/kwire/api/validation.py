"""Field errors in the shape Kubernetes reports them (422 Invalid, details.causes).

Validators return lists of Cause; the REST layer turns a non-empty list into a
Status. Messages follow apimachinery's field.Error so kubectl prints what a user
of a real cluster would see. The checks several kinds share (names, ports, IP
addresses) live here too, so each has one copy with upstream's wording.
"""
from __future__ import annotations

import ipaddress
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


def invalid_all(path: str, value: Any, messages: Iterable[str]) -> list[Cause]:
    """One Invalid cause per message, the way upstream reports what an IsXxx check returned."""
    return [invalid(path, value, m) for m in messages]


def nonnegative(value: Any, path: str) -> list[Cause]:
    """ValidateNonnegativeField, for an optional integer (None passes)."""
    if isinstance(value, int) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


# --- names (k8s.io/apimachinery/pkg/util/validation) -------------------------

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_WILDCARD_FMT = r"\*\." + DNS1123_SUBDOMAIN_FMT
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_LABEL_RE = re.compile("^" + DNS1123_LABEL_FMT + r"\Z")
_SUBDOMAIN_RE = re.compile("^" + DNS1123_SUBDOMAIN_FMT + r"\Z")
_DNS1035_RE = re.compile("^" + DNS1035_LABEL_FMT + r"\Z")
_WILDCARD_RE = re.compile("^" + _WILDCARD_FMT + r"\Z")
_QNAME_RE = re.compile("^" + _QNAME_FMT + r"\Z")
_LABEL_VALUE_RE = re.compile("^" + _LABEL_VALUE_FMT + r"\Z")


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """RegexError: the message, then examples and the regex, as upstream words it."""
    if not examples:
        return msg + f" (regex used for validation is '{fmt}')"
    return msg + " (e.g. " + " or ".join(f"'{e}', " for e in examples) \
        + f"regex used for validation is '{fmt}')"


_DNS1123_LABEL_MSG = regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character", DNS1123_LABEL_FMT,
    "my-name", "123-abc")
_DNS1123_SUBDOMAIN_MSG = regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character", DNS1123_SUBDOMAIN_FMT,
    "example.com")
_DNS1035_LABEL_MSG = regex_error(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character", DNS1035_LABEL_FMT,
    "my-name", "abc-123")
_WILDCARD_MSG = regex_error(
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
    "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
    "alphanumeric character", _WILDCARD_FMT, "*.example.com")
_QNAME_MSG = regex_error(
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character", _QNAME_FMT, "MyName", "my.name", "123-abc")
_LABEL_VALUE_MSG = regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character", _LABEL_VALUE_FMT,
    "MyValue", "my_value", "12345")


def _length_and_format(value: str, max_len: int, pattern: re.Pattern, msg: str) -> list[str]:
    """The shape every upstream name check has: MaxLenError, then the RegexError."""
    errs = []
    if len(value) > max_len:
        errs.append(f"must be no more than {max_len} characters")
    if not pattern.match(value):
        errs.append(msg)
    return errs


def dns1123_label(value: str) -> list[str]:
    """IsDNS1123Label: problems with value (empty list when fine)."""
    return _length_and_format(value, 63, _LABEL_RE, _DNS1123_LABEL_MSG)


def dns1123_subdomain(value: str) -> list[str]:
    """IsDNS1123Subdomain: most object names."""
    return _length_and_format(value, 253, _SUBDOMAIN_RE, _DNS1123_SUBDOMAIN_MSG)


def dns1035_label(value: str) -> list[str]:
    """IsDNS1035Label: Service names (must start with a letter)."""
    return _length_and_format(value, 63, _DNS1035_RE, _DNS1035_LABEL_MSG)


def wildcard_dns1123_subdomain(value: str) -> list[str]:
    """IsWildcardDNS1123Subdomain: `*.` then a DNS subdomain (Ingress hosts)."""
    return _length_and_format(value, 253, _WILDCARD_RE, _WILDCARD_MSG)


def qualified_name(value: str) -> list[str]:
    """IsQualifiedName: label and annotation keys, an optional DNS subdomain prefix and a name."""
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
        return [regex_error("a qualified name must consist of alphanumeric characters, '-', "
                            "'_' or '.', and must start and end with an alphanumeric character",
                            _QNAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not _QNAME_RE.match(name):
        errs.append(_QNAME_MSG)
    return errs


def label_value(value: str) -> list[str]:
    """IsValidLabelValue."""
    return _length_and_format(value, 63, _LABEL_VALUE_RE, _LABEL_VALUE_MSG)


def labels(value: Any, path: str) -> list[Cause]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [invalid(path, value, "must be a map of string keys to string values")]
    out = []
    for k, v in value.items():
        out += invalid_all(path, k, qualified_name(k))
        if not isinstance(v, str):
            out.append(invalid(f"{path}[{k}]", v, "must be a string"))
            continue
        out += invalid_all(f"{path}[{k}]", v, label_value(v))
    return out


def annotations(value: Any, path: str) -> list[Cause]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [invalid(path, value, "must be a map of string keys to string values")]
    out = []
    total = 0
    for k, v in value.items():
        out += invalid_all(path, k, qualified_name(k.lower()))
        total += len(k) + len(v if isinstance(v, str) else "")
    if total > 256 * 1024:
        out.append(too_long(path, 256 * 1024))
    return out


# --- addresses and ports (k8s.io/utils/net, k8s.io/apimachinery/pkg/util/validation) --

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
_DOTTED_QUAD = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_PORT_NAME_CHARS = re.compile(r"[-a-z0-9]+")


def _sloppy(text: str) -> str:
    """Go before 1.17 read IPv4 octets with leading zeros as decimal ("010" is 10)."""
    if _DOTTED_QUAD.fullmatch(text):
        return ".".join(str(int(octet)) for octet in text.split("."))
    return text


def parse_ip(value: Any) -> IPAddress | None:
    """netutils.ParseIPSloppy, which every upstream IP check goes through. Like Go's
    net.ParseIP it refuses zones ("fe80::1%eth0"), and an IPv4-mapped IPv6 address is its
    IPv4 address (Go's To4), so it counts as IPv4 and as loopback, link-local...

    None for anything else, including values that are not strings."""
    if not isinstance(value, str) or "%" in value:
        return None
    try:
        ip = ipaddress.ip_address(_sloppy(value))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_cidr(text: str) -> IPNetwork | None:
    """netutils.ParseCIDRSloppy: host bits may be set; the result is the network."""
    addr, slash, bits = text.partition("/")
    if not slash or not bits.isdigit():
        return None
    try:
        return ipaddress.ip_network(f"{_sloppy(addr)}/{bits}", strict=False)
    except ValueError:
        return None


def ip_address(value: Any, path: str) -> list[Cause]:
    """IsValidIP."""
    return [] if parse_ip(value) is not None else [invalid(path, value, _IP_MSG)]


def non_special_ip(value: Any, path: str) -> list[Cause]:
    """ValidateNonSpecialIP (pkg/apis/core/validation): endpoint and external IPs may not be
    unspecified, loopback or link-local, which only make sense on one host."""
    ip = parse_ip(value)
    if ip is None:
        return [invalid(path, value, "must be a valid IP address")]
    out = []
    if ip.is_unspecified:
        out.append(invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        out.append(invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        out.append(invalid(path, value,
                           "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    packed = ip.packed
    if (ip.version == 4 and packed[:3] == b"\xe0\x00\x00") or \
            (ip.version == 6 and packed[0] == 0xFF and packed[1] & 0x0F == 0x02):
        out.append(invalid(path, value, "may not be in the link-local multicast range "
                                        "(224.0.0.0/24, ff02::/10)"))
    return out


def port_name(name: str) -> list[str]:
    """IsValidPortName: an IANA_SVC_NAME (RFC 6335), for container ports and the ports
    that name them (targetPort, probes, Ingress backends, NetworkPolicy)."""
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS.fullmatch(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def port_number(value: Any, path: str) -> list[Cause]:
    """IsValidPortNum; anything but an int (a bool included) is out of range too."""
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
        out += invalid_all("metadata.name", name, name_check(name))
    ns = meta.get("namespace")
    if namespaced:
        if not ns:
            out.append(required("metadata.namespace"))
        elif isinstance(ns, str):
            out += invalid_all("metadata.namespace", ns, dns1123_label(ns))
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
