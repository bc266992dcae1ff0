"""Field errors in the shape Kubernetes reports them (422 Invalid, details.causes).

Validators return lists of Cause; the REST layer turns a non-empty list into a
Status. Messages follow apimachinery's field.Error so kubectl prints what a user
of a real cluster would see. The checks several kinds share (names, ports, IP
addresses, resource quantities, object metadata) live here too, so each has one
copy with upstream's wording.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Iterable

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
INTERNAL = "InternalError"


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


def internal(path: str, detail: str) -> Cause:
    return Cause(path, INTERNAL, f"Internal error: {detail}")


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


def cidr(value: Any, path: str) -> list[Cause]:
    """IsValidCIDR: an address and a prefix length (host bits may be set)."""
    if isinstance(value, str) and parse_cidr(value) is not None:
        return []
    return [invalid(path, value,
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]


# --- quantities (k8s.io/apimachinery/pkg/api/resource) -------------------------------

QUANTITY_FMT = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_FORMAT_WRONG = f"quantities must match the regular expression '{QUANTITY_FMT}'"
_NUMERIC = "unable to parse numeric part of quantity"
_SUFFIX = "unable to parse quantity's suffix"
DECIMAL_SI, BINARY_SI, DECIMAL_EXPONENT = "DecimalSI", "BinarySI", "DecimalExponent"
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
                     "E": 18}
_DECIMAL_NAMES = {exponent: suffix for suffix, exponent in _DECIMAL_SUFFIXES.items()}
_BINARY_NAMES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_MAX_INT64 = 2 ** 63 - 1
_NANO = -9
MILLI = -3
# Go's unicode.IsSpace, what strings.TrimSpace strips (str.strip would also take \x1c-\x1f).
_GO_SPACE = ("\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
             + "\u2028\u2029\u202f\u205f\u3000")


@dataclass(frozen=True)
class Quantity:
    """A resource.Quantity: unscaled * 10**scale, the format its suffix chose, and the
    text ParseQuantity keeps when the input was already in canonical form."""

    unscaled: int
    scale: int
    format: str = DECIMAL_SI
    text: str = ""

    @property
    def amount(self) -> Decimal:
        return Decimal(f"{self.unscaled}E{self.scale}")

    def round_up(self, scale: int) -> Quantity:
        """RoundUp: no digits below 10**scale, rounding away from zero. An exact value
        keeps its text."""
        if self.scale >= scale:
            return self
        return replace(self, unscaled=_shift_up(self.unscaled, scale - self.scale),
                       scale=scale, text="")

    def __str__(self) -> str:
        """String: the kept text, else the canonical form (CanonicalizeBytes), where the
        exponent is as large as it can be without fractional digits."""
        if self.text:
            return self.text
        if not self.unscaled:
            return "0"
        if self.format == BINARY_SI and self.amount.copy_abs() >= 1024:
            whole = self.round_up(0)
            if whole.amount == self.amount:
                return _base1024(int(whole.amount))
        number, exponent = _base1000(self.unscaled, self.scale)
        if self.format != DECIMAL_EXPONENT and exponent in _DECIMAL_NAMES:
            return f"{number}{_DECIMAL_NAMES[exponent]}"
        # Past "E" DecimalSI falls back to an exponent too (1.32 dropped it, turning
        # "1000E" into "1": fixed upstream since).
        return f"{number}e{exponent}" if exponent else str(number)


def _shift_up(unscaled: int, places: int) -> int:
    """unscaled / 10**places, rounded away from zero."""
    magnitude = abs(unscaled)
    whole, rest = divmod(magnitude, 10 ** places) if places <= len(str(magnitude)) \
        else (0, magnitude)
    whole += 1 if rest else 0
    return whole if unscaled >= 0 else -whole


def _base1000(unscaled: int, scale: int) -> tuple[int, int]:
    """AsCanonicalBytes: the number and a multiple of 3 as exponent, no trailing zeros."""
    digits = str(abs(unscaled))
    significant = digits.rstrip("0")
    scale += len(digits) - len(significant)
    number = int(significant) * 10 ** (scale % 3)
    return (number if unscaled > 0 else -number), scale - scale % 3


def _base1024(value: int) -> str:
    """AsCanonicalBase1024Bytes with its binary suffix."""
    number, power = abs(value), 0
    while number >= 1024 and number % 1024 == 0:
        number, power = number // 1024, power + 1
    return ("-" if value < 0 else "") + f"{number}{_BINARY_NAMES[power]}"


def _skip_digits(text: str, pos: int) -> int:
    while pos < len(text) and "0" <= text[pos] <= "9":
        pos += 1
    return pos


def _scan_quantity(text: str) -> tuple[bool, str, str, str, str]:
    """parseQuantityString: the sign, the numeric text, the integer digits (without
    leading zeros, "0" when none), the fraction digits and the suffix."""
    positive, end = text[0] != "-", len(text)
    pos = 1 if text[0] in "+-" else 0
    while pos < end and text[pos] == "0":
        pos += 1
    if pos == end:
        return positive, "0", "0", "", ""
    start, pos = pos, _skip_digits(text, pos)
    if pos == end:
        return positive, text, text[start:], "", ""
    num, denom = text[start:pos] or "0", ""
    if text[pos] == ".":
        start, pos = pos + 1, _skip_digits(text, pos + 1)
        denom = text[start:pos]
        if pos == end:
            return positive, text, num, denom, ""
    value, suffix_start = text[:pos], pos
    while pos < end and text[pos] in "eEinumkKMGTP":
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    if _skip_digits(text, pos) < end:
        raise ValueError(_FORMAT_WRONG)
    return positive, value, num, denom, text[suffix_start:]


def _quantity_suffix(suffix: str) -> tuple[int, int, str]:
    """The base, exponent and format a suffix stands for ("Ki", "m", "e3", "")."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], DECIMAL_SI
    if suffix in _BINARY_NAMES:
        return 2, 10 * _BINARY_NAMES.index(suffix), BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        try:
            exponent = int(suffix[1:])  # what the scanner left: [eEinumkKMGTP]*[-+]?[0-9]*
        except ValueError:
            raise ValueError(_SUFFIX) from None
        if -_MAX_INT64 - 1 <= exponent <= _MAX_INT64:
            return 10, (exponent + 2 ** 31) % 2 ** 32 - 2 ** 31, DECIMAL_EXPONENT  # int32()
    raise ValueError(_SUFFIX)


def parse_quantity(text: str) -> Quantity:
    """ParseQuantity; a ValueError with upstream's message when text is not a quantity.

    Values fitting an int64 (18 digits at most, no finer than nano) are exact; others
    are rounded up to nano, and binary ones capped at 2^63-1, as upstream does."""
    if not text:
        raise ValueError(_FORMAT_WRONG)
    if text == "0":
        return Quantity(0, 0, DECIMAL_SI, "0")
    positive, value, num, denom, suffix = _scan_quantity(text)
    base, exponent, fmt = _quantity_suffix(suffix)
    digits = num + denom
    if fmt == BINARY_SI:
        mantissa, scale = 1 << exponent, 0
        precision = 15 - len(num) - exponent * 3 // 10 - 1 if not denom else -1
    else:
        mantissa, scale = 1, exponent - len(denom)
        precision = 18 - len(digits)
    if precision >= 0 and scale >= _NANO and int(digits) * mantissa <= _MAX_INT64:
        canonical = int(digits) & 7 != 0 if fmt == BINARY_SI else \
            scale % 3 == 0 and not digits.endswith("000") and digits[0] != "0"
        result = int(digits) * mantissa
        return Quantity(result if positive else -result, scale, fmt, text if canonical else "")
    if not any("0" <= ch <= "9" for ch in value):
        raise ValueError(_NUMERIC)
    sign, figures, places = Decimal(value).as_tuple()
    unscaled = int("".join(map(str, figures))) * (-1 if sign else 1)
    if base == 2:
        unscaled, scale = unscaled << exponent, int(places)
    else:
        scale = int(places) + exponent
    q = Quantity(unscaled, scale, fmt).round_up(_NANO)
    if fmt == BINARY_SI and q.amount.copy_abs() > _MAX_INT64:
        q = Quantity(_MAX_INT64 if unscaled > 0 else -_MAX_INT64, 0, fmt)
    if fmt == BINARY_SI and 0 < q.amount.copy_abs() < 1:
        q = replace(q, format=DECIMAL_SI)
    return q


def _json_number(value: float) -> str:
    """A float64 as Go's encoding/json writes it, the text a Go client would have sent."""
    if value and not 1e-6 <= abs(value) < 1e21:
        return repr(value)
    return format(Decimal(repr(value)).normalize(), "f")


def quantity(value: Any) -> Quantity:
    """A Quantity field as UnmarshalJSON reads it: a string, spaces around it trimmed,
    or a number. ValueError when it is not a quantity."""
    if isinstance(value, float):
        value = _json_number(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(_FORMAT_WRONG)
    return parse_quantity(value.strip(_GO_SPACE))


def is_quantity(value: Any) -> bool:
    """Whether quantity(value) would succeed."""
    try:
        quantity(value)
    except ValueError:
        return False
    return True


def canonical_quantity(value: Any, scale: int | None = None) -> Any:
    """value as the API server stores it, rounded up to 10**scale first if given
    (SetDefaults_ResourceList rounds to milli). Anything else is left for validation."""
    try:
        q = quantity(value)
    except ValueError:
        return value
    return str(q if scale is None else q.round_up(scale))


def parsed_quantity(value: Any, path: str, causes: list[Cause]) -> Quantity | None:
    """The quantity value holds, or None after adding the cause its decoding error makes."""
    try:
        return quantity(value)
    except ValueError as e:
        causes.append(invalid(path, value, str(e)))
        return None


# --- object metadata (k8s.io/apimachinery/pkg/api/validation) -----------------------

_OWNER_REFERENCE_FIELDS = ("apiVersion", "kind", "name", "uid", "controller",
                           "blockOwnerDeletion")


def _owner_json(ref: Any) -> Any:
    """An OwnerReference (or a list of them) as Go marshals it: fields in struct order,
    the two pointers omitted when unset. Field errors show this JSON since 1.34; 1.32
    printed the Go struct, pointer addresses and all, which cannot be reproduced."""
    if isinstance(ref, list):
        return [_owner_json(r) for r in ref]
    ref = ref if isinstance(ref, dict) else {}
    return {k: ref.get(k, "") for k in _OWNER_REFERENCE_FIELDS
            if k in ref or k not in ("controller", "blockOwnerDeletion")}


def _owner_invalid(path: str, value: Any, detail: str) -> Cause:
    shown = json.dumps(_owner_json(value), separators=(",", ":"))
    return Cause(path, INVALID, f"Invalid value: {shown}: {detail}")


def owner_references(refs: Any, path: str) -> list[Cause]:
    """ValidateOwnerReferences. 1.32 reports a reference's fields without its index."""
    out: list[Cause] = []
    controller = ""
    for ref in refs if isinstance(refs, list) else []:
        ref = ref if isinstance(ref, dict) else {}
        api_version, kind = ref.get("apiVersion") or "", ref.get("kind") or ""
        group, version = _group_version(api_version)
        if not version:
            out.append(invalid(f"{path}.apiVersion", api_version, "version must not be empty"))
        if not kind:
            out.append(invalid(f"{path}.kind", kind, "kind must not be empty"))
        for key in ("name", "uid"):
            if not ref.get(key):
                out.append(invalid(f"{path}.{key}", ref.get(key) or "",
                                   f"{key} must not be empty"))
        if (group, version, kind) == ("", "v1", "Event"):
            out.append(_owner_invalid(path, ref,
                                      "/v1, Kind=Event is disallowed from being an owner"))
        if ref.get("controller") is True:
            this = f"{kind}/{ref.get('name') or ''}"
            if controller:
                out.append(_owner_invalid(path, refs, "Only one reference can have Controller set "
                                          f'to true. Found "true" in references for {controller} '
                                          f"and {this}"))
            else:
                controller = this
    return out


def _group_version(api_version: str) -> tuple[str, str]:
    """schema.ParseGroupVersion, an unparseable value being no version at all."""
    if api_version in ("", "/") or api_version.count("/") > 1:
        return "", ""
    group, _, version = api_version.rpartition("/")
    return group, version


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
    out.extend(owner_references(meta.get("ownerReferences"), "metadata.ownerReferences"))
    return out


def need(obj: dict, path: str, causes: list[Cause]) -> Any:
    """Return obj at a dotted path, adding a Required cause when it is missing or empty."""
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if cur in (None, "", [], {}):
        causes.append(required(path))
    return cur
