"""The shared field checks of kwire.api.validation (k8s.io/apimachinery/pkg/util/validation,
k8s.io/utils/net and ValidateNonSpecialIP), with upstream's exact messages."""
from __future__ import annotations

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
