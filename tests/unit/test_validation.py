"""The shared field checks of kwire.api.validation (k8s.io/apimachinery/pkg/util/validation,
k8s.io/utils/net and ValidateNonSpecialIP), with upstream's exact messages."""
from __future__ import annotations

from decimal import Decimal

import pytest

from kwire.api import validation as v

SUBDOMAIN_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
             "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
             "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                 "characters, '-' or '.', and must start and end with an alphanumeric character "
                 "(e.g. 'example.com', regex used for validation is '" + SUBDOMAIN_FMT + "')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
               "with an alphabetic character, and end with an alphanumeric character (e.g. "
               "'my-name',  or 'abc-123', regex used for validation is "
               "'[a-z]([-a-z0-9]*[a-z0-9])?')")
WILDCARD_MSG = ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS "
                "subdomain, which must consist of lower case alphanumeric characters, '-' or '.' "
                "and end with an alphanumeric character (e.g. '*.example.com', regex used for "
                r"validation is '\*\." + SUBDOMAIN_FMT + "')")
QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, "
                   "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                   "'MyValue',  or 'my_value',  or '12345', regex used for validation is '("
                   + QNAME_FMT + ")?')")
IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
LOOPBACK = "may not be in the loopback range (127.0.0.0/8, ::1/128)"
LINK_LOCAL = "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
MULTICAST = "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
CHARS = "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"


def strs(causes: list[v.Cause]) -> list[str]:
    return [str(c) for c in causes]


# --- messages ---------------------------------------------------------------------------


def test_regex_error():
    assert v.regex_error("Invalid path", "[a-z]+") == \
        "Invalid path (regex used for validation is '[a-z]+')"
    assert v.regex_error("bad", "x", "a") == "bad (e.g. 'a', regex used for validation is 'x')"
    assert v.regex_error("bad", "x", "a", "b") == \
        "bad (e.g. 'a',  or 'b', regex used for validation is 'x')"


def test_invalid_all_makes_one_cause_per_message():
    assert v.invalid_all("spec.name", "x", ["one", "two"]) == [
        v.Cause("spec.name", v.INVALID, 'Invalid value: "x": one'),
        v.Cause("spec.name", v.INVALID, 'Invalid value: "x": two')]
    assert v.invalid_all("spec.name", "x", []) == []


@pytest.mark.parametrize("value, expected", [
    (None, []), (0, []), (5, []), ("-1", []),
    (-1, ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]),
])
def test_nonnegative(value, expected):
    assert strs(v.nonnegative(value, "spec.replicas")) == expected


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize("check, value, expected", [
    (v.dns1123_label, "my-name", []),
    (v.dns1123_label, "123-abc", []),
    (v.dns1123_label, "a" * 63, []),
    (v.dns1123_label, "a" * 64, ["must be no more than 63 characters"]),
    (v.dns1123_label, "My-Name", [LABEL_MSG]),
    (v.dns1123_label, "a.b", [LABEL_MSG]),
    (v.dns1123_label, "-" * 64, ["must be no more than 63 characters", LABEL_MSG]),
    (v.dns1123_subdomain, "example.com", []),
    (v.dns1123_subdomain, "a." * 126 + "a", []),
    (v.dns1123_subdomain, "a." * 127, ["must be no more than 253 characters", SUBDOMAIN_MSG]),
    (v.dns1123_subdomain, "example.com.", [SUBDOMAIN_MSG]),
    (v.dns1035_label, "abc-123", []),
    (v.dns1035_label, "123-abc", [DNS1035_MSG]),
    (v.dns1035_label, "a" * 64, ["must be no more than 63 characters"]),
    (v.wildcard_dns1123_subdomain, "*.example.com", []),
    (v.wildcard_dns1123_subdomain, "foo.*.com", [WILDCARD_MSG]),
    (v.wildcard_dns1123_subdomain, "*.", [WILDCARD_MSG]),
    (v.wildcard_dns1123_subdomain, "*." + "a." * 126,
     ["must be no more than 253 characters", WILDCARD_MSG]),
    (v.label_value, "", []),
    (v.label_value, "my_value", []),
    (v.label_value, "-x", [LABEL_VALUE_MSG]),
    (v.label_value, "a" * 64, ["must be no more than 63 characters"]),
])
def test_name_checks(check, value, expected):
    assert check(value) == expected


def test_qualified_name():
    assert v.qualified_name("example.com/MyName") == []
    assert v.qualified_name("/x") == ["prefix part must be non-empty"]
    assert v.qualified_name("Example.com/x") == ["prefix part " + SUBDOMAIN_MSG]
    assert v.qualified_name("x/") == ["name part must be non-empty"]
    assert v.qualified_name("a" * 64) == ["name part must be no more than 63 characters"]
    assert v.qualified_name("-x") == [
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
        "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
        "used for validation is '" + QNAME_FMT + "')"]
    assert v.qualified_name("a/b/c") == [
        "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
        "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
        "'123-abc', regex used for validation is '" + QNAME_FMT + "') with an optional DNS "
        "subdomain prefix and '/' (e.g. 'example.com/MyName')"]


# --- ports ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("http", []),
    ("h2c", []),
    ("a" * 15, []),
    ("a" * 16, ["must be no more than 15 characters"]),
    ("HTTP", [CHARS, "must contain at least one letter (a-z)"]),
    ("my_port", [CHARS]),
    ("8080", ["must contain at least one letter (a-z)"]),
    ("a--b", ["must not contain consecutive hyphens"]),
    ("-a", ["must not begin or end with a hyphen"]),
    ("a-", ["must not begin or end with a hyphen"]),
    ("", [CHARS, "must contain at least one letter (a-z)"]),
    ("http\n", [CHARS]),  # Go's regexp has no `$`-before-newline
])
def test_port_name(name, expected):
    assert v.port_name(name) == expected


@pytest.mark.parametrize("value, shown", [
    (1, None), (65535, None), (0, "0"), (65536, "65536"), (-1, "-1"), (True, "true"),
    ("80", '"80"'), (None, "null"),
])
def test_port_number(value, shown):
    expected = [] if shown is None else [
        f"spec.port: Invalid value: {shown}: must be between 1 and 65535, inclusive"]
    assert strs(v.port_number(value, "spec.port")) == expected


# --- addresses --------------------------------------------------------------------------


@pytest.mark.parametrize("text, parsed", [
    ("10.1.2.3", "10.1.2.3"),
    ("010.001.0.1", "10.1.0.1"),           # leading zeros are decimal, as Go before 1.17
    ("2001:db8::1", "2001:db8::1"),
    ("::ffff:10.0.0.1", "10.0.0.1"),       # IPv4-mapped is IPv4, as Go's To4 sees it
    ("10.0.0", None),
    ("10.0.0.256", None),
    ("fe80::1%eth0", None),                # net.ParseIP takes no zone
    ("1.2.3.4\n", None),
    (" 1.2.3.4", None),
    ("1.2.3.\u0664", None),                # only ASCII digits
    ("1.2.3.\u00b2", None),
    ("", None),
    (None, None),
    (17, None),
])
def test_parse_ip(text, parsed):
    ip = v.parse_ip(text)
    assert (None if ip is None else str(ip)) == parsed


def test_parse_ip_versions():
    assert v.parse_ip("::ffff:10.0.0.1").version == 4
    assert v.parse_ip("::1").version == 6


@pytest.mark.parametrize("text, network", [
    ("10.1.2.3/8", "10.0.0.0/8"),
    ("010.1.2.3/8", "10.0.0.0/8"),
    ("fd00::1/64", "fd00::/64"),
    ("10.0.0.0", None),
    ("10.0.0.0/x", None),
    ("10.0.0.0/33", None),
    ("10.0.0.0/", None),
])
def test_parse_cidr(text, network):
    net = v.parse_cidr(text)
    assert (None if net is None else str(net)) == network


def test_ip_address():
    assert v.ip_address("10.9.8.7", "spec.ip") == []
    assert v.ip_address("0.0.0.0", "spec.ip") == []
    assert strs(v.ip_address("10.0.0.256", "spec.ip")) == [
        f'spec.ip: Invalid value: "10.0.0.256": {IP_MSG}']
    assert strs(v.ip_address("", "spec.ip")) == [f'spec.ip: Invalid value: "": {IP_MSG}']


@pytest.mark.parametrize("ip, messages", [
    ("10.1.2.3", []),
    ("2001:db8::1", []),
    ("224.0.1.1", []),
    ("nope", ["must be a valid IP address"]),
    ("0.0.0.0", ["may not be unspecified (0.0.0.0)"]),
    ("::", ["may not be unspecified (::)"]),
    ("127.0.0.1", [LOOPBACK]),
    ("::1", [LOOPBACK]),
    ("169.254.169.254", [LINK_LOCAL]),
    ("fe80::1", [LINK_LOCAL]),
    ("224.0.0.251", [MULTICAST]),
    ("ff02::1", [MULTICAST]),
    ("::ffff:127.0.0.1", [LOOPBACK]),
    ("::ffff:0.0.0.0", ["may not be unspecified (::ffff:0.0.0.0)"]),
])
def test_non_special_ip(ip, messages):
    assert strs(v.non_special_ip(ip, "spec.externalIPs[0]")) == [
        f'spec.externalIPs[0]: Invalid value: "{ip}": {m}' for m in messages]


@pytest.mark.parametrize("value, shown", [
    ("10.9.8.0/24", None), ("10.9.8.7/24", None),   # host bits may be set
    ("010.9.8.0/24", None), ("fd00::/64", None),
    ("10.9.8.0", '"10.9.8.0"'), ("10.9.8/24", '"10.9.8/24"'), ("10.9.8.0/33", '"10.9.8.0/33"'),
    ("10.9.8.0/255.255.255.0", '"10.9.8.0/255.255.255.0"'), (None, "null"),
])
def test_cidr(value, shown):
    expected = [] if shown is None else [
        f"spec.podCIDRs[0]: Invalid value: {shown}: must be a valid CIDR value, "
        "(e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    assert strs(v.cidr(value, "spec.podCIDRs[0]")) == expected


# --- quantities (cases from resource/quantity_test.go) ----------------------------------

FORMAT_WRONG = ("quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
SUFFIX = "unable to parse quantity's suffix"
NUMERIC = "unable to parse numeric part of quantity"


@pytest.mark.parametrize("text, value, fmt", [
    ("0", "0", "DecimalSI"), ("0Mi", "0", "BinarySI"), ("1", "1", "DecimalSI"),
    ("8Ki", "8192", "BinarySI"), ("6Gi", "6442450944", "BinarySI"),
    ("5n", "5E-9", "DecimalSI"), ("50k", "5E+4", "DecimalSI"), ("12E", "1.2E+19", "DecimalSI"),
    ("1E-3", "0.001", "DecimalExponent"), ("1e3", "1E+3", "DecimalExponent"),
    ("100.035k", "100035", "DecimalSI"), ("0.0005k", "0.5", "DecimalSI"),
    ("1.2e3", "1.2E+3", "DecimalExponent"), ("1.3E+6", "1.3E+6", "DecimalExponent"),
    ("3.001n", "4E-9", "DecimalSI"),              # rounded up to nano
    ("1.1E-9", "2E-9", "DecimalExponent"),
    ("0.00000012345", "1.24E-7", "DecimalSI"),
    ("9Ei", "9223372036854775807", "BinarySI"),   # binary values are capped at 2^63-1
    ("100.035Ki", "102435.84", "BinarySI"),
    ("0.000000000001Ki", "2E-9", "DecimalSI"),    # a binary value below 1 turns decimal
    (".001", "0.001", "DecimalSI"), ("1.", "1", "DecimalSI"), ("1.G", "1E+9", "DecimalSI"),
    ("-1.025Ti", "-1126999418470.4", "BinarySI"), ("+1Ki", "1024", "BinarySI"),
    ("-", "0", "DecimalSI"), (".", "0", "DecimalSI"), ("Ki", "0", "BinarySI"),
    ("1e9223372036854775807", "0.1", "DecimalExponent"),  # Go's int32() wraps the exponent
])
def test_parse_quantity(text, value, fmt):
    q = v.parse_quantity(text)
    assert q.amount == Decimal(value) and q.format == fmt


@pytest.mark.parametrize("text, error", [
    ("", FORMAT_WRONG), ("abc", FORMAT_WRONG), ("1.5.5", FORMAT_WRONG), (" 1", FORMAT_WRONG),
    ("1 ", FORMAT_WRONG), ("1.1.M", FORMAT_WRONG), ("1+1.0M", FORMAT_WRONG),
    ("0.1am", FORMAT_WRONG), ("aoeu", FORMAT_WRONG),
    ("0.1mi", SUFFIX), (".5i", SUFFIX), ("1i", SUFFIX), ("-3.01i", SUFFIX), ("-3.01e-", SUFFIX),
    ("1K", SUFFIX), ("1e", SUFFIX), ("1e9223372036854775808", SUFFIX),
    ("Ei", NUMERIC), (".e-10", NUMERIC),
])
def test_parse_quantity_errors(text, error):
    with pytest.raises(ValueError) as e:
        v.parse_quantity(text)
    assert str(e.value) == error


@pytest.mark.parametrize("text, canonical", [
    ("1Ki", "1Ki"), ("1024Mi", "1Gi"), ("1000M", "1G"), ("1Gi", "1Gi"), ("300Mi", "300Mi"),
    ("307200Ki", "300Mi"), ("1025024Mi", "1001Gi"), ("5000m", "5"), ("0.5", "500m"),
    ("0.001T", "1G"), ("1000u", "1m"), ("1.08", "1080m"), ("1080000000n", "1080m"),
    (".001e12", "1e9"), ("0.001e0", "1e-3"), ("1000e-12", "1e-9"), ("00", "0"),
    ("1e3", "1e3"), ("1000", "1k"), ("1000m", "1"), ("1.5Gi", "1536Mi"), ("0.5Ki", "512"),
    ("1.1Ki", "1126400m"), ("-1024Mi", "-1Gi"),
    (".001Ki", "1024m"), (".000001Ki", "1024u"), (".000000001Ki", "1024n"),
    (".000000000001Ki", "2n"), ("-.001Ki", "-1024m"),
    ("1000E", "1e21"), ("5000000E", "5e24"),  # past E: an exponent (1.32 lost the magnitude)
    # A parsed string already in canonical shape is kept as written, quirks included.
    ("+1", "+1"), ("01", "01"), ("1.001", "1.001"), ("1.500k", "1.500k"), ("1E3", "1E3"),
])
def test_quantity_canonical_form(text, canonical):
    assert str(v.parse_quantity(text)) == canonical


@pytest.mark.parametrize("text, scale, rounded", [
    ("9.01", -3, "9010m"), ("9.01", -2, "9010m"), ("9.01", -1, "9100m"), ("9.01", 0, "10"),
    ("9.01", 2, "100"), ("-9.01", -1, "-9100m"), ("-9.01", 0, "-10"),
    ("0.0001", -3, "1m"), ("1.000001", -3, "1001m"), ("1.500", -3, "1.500"),
])
def test_quantity_round_up(text, scale, rounded):
    assert str(v.parse_quantity(text).round_up(scale)) == rounded


@pytest.mark.parametrize("value, canonical, milli", [
    (" 1", "1", "1"), ("1 \t", "1", "1"),        # UnmarshalJSON trims spaces
    ("\x1c1", "\x1c1", "\x1c1"),                 # ... Go's spaces only
    (2, "2", "2"), (0.5, "500m", "500m"), (1e3, "1k", "1k"), (1e16, "10P", "10P"),
    (0.00005, "50u", "1m"), (1e-07, "100e-9", "1e-3"),  # as Go's encoding/json writes floats
    ("0.0001", "100u", "1m"), ("1e3", "1e3", "1e3"), ("abc", "abc", "abc"), (True, True, True),
])
def test_canonical_quantity(value, canonical, milli):
    assert v.canonical_quantity(value) == canonical
    assert v.canonical_quantity(value, v.MILLI) == milli


def test_parsed_quantity():
    causes: list[v.Cause] = []
    assert v.parsed_quantity("1Gi", "spec.x", causes) == v.parse_quantity("1Gi")
    assert v.parsed_quantity("abc", "spec.x", causes) is None
    assert v.parsed_quantity(None, "spec.y", causes) is None
    assert strs(causes) == [f'spec.x: Invalid value: "abc": {FORMAT_WRONG}',
                            f"spec.y: Invalid value: null: {FORMAT_WRONG}"]
    assert v.is_quantity("1") and not v.is_quantity("1 1")


# --- object metadata --------------------------------------------------------------------


def ref(**fields):
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u1", **fields}


def test_owner_references():
    path = "metadata.ownerReferences"
    assert v.owner_references([ref(), ref(uid="u2", controller=True)], path) == []
    assert strs(v.owner_references([{}], path)) == [
        'metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty',
        'metadata.ownerReferences.kind: Invalid value: "": kind must not be empty',
        'metadata.ownerReferences.name: Invalid value: "": name must not be empty',
        'metadata.ownerReferences.uid: Invalid value: "": uid must not be empty']
    assert strs(v.owner_references([ref(apiVersion="apps/"), ref(apiVersion="a/b/c")], path)) \
        == ['metadata.ownerReferences.apiVersion: Invalid value: "apps/": version must not be '
            'empty',
            'metadata.ownerReferences.apiVersion: Invalid value: "a/b/c": version must not be '
            'empty']
    assert strs(v.owner_references([ref(apiVersion="v1", kind="Event")], path)) == [
        'metadata.ownerReferences: Invalid value: {"apiVersion":"v1","kind":"Event",'
        '"name":"web","uid":"u1"}: /v1, Kind=Event is disallowed from being an owner']
    refs = [ref(controller=True), ref(uid="u2", controller=False),
            ref(kind="Deployment", name="d", uid="u3", controller=True, blockOwnerDeletion=True)]
    assert strs(v.owner_references(refs, path)) == [
        'metadata.ownerReferences: Invalid value: [{"apiVersion":"apps/v1","kind":"ReplicaSet",'
        '"name":"web","uid":"u1","controller":true},{"apiVersion":"apps/v1",'
        '"kind":"ReplicaSet","name":"web","uid":"u2","controller":false},'
        '{"apiVersion":"apps/v1","kind":"Deployment","name":"d","uid":"u3","controller":true,'
        '"blockOwnerDeletion":true}]: Only one reference can have Controller set to true. '
        'Found "true" in references for ReplicaSet/web and Deployment/d']


def test_object_meta_checks_owner_references():
    meta = {"name": "a", "namespace": "default", "ownerReferences": [ref(uid="")]}
    assert strs(v.object_meta(meta, True)) == [
        'metadata.ownerReferences.uid: Invalid value: "": uid must not be empty']
