"""The HTTP layer's pure helpers: request bodies (parse_body) and what a resource
path names (API._target)."""
import json
import resource

import pytest

from kwire.api.errors import APIError
from kwire.api.handlers import API, MAX_BODY, MAX_DEPTH, Target, parse_body
from kwire.api.registry import load

REGISTRY = load()
JSON, YAML = "application/json", "application/yaml"


def refused(raw, content_type=JSON):
    with pytest.raises(APIError) as e:
        parse_body(raw, content_type)
    return e.value.code, e.value.reason, e.value.message


def nested(levels):
    """A JSON document of `levels` nested arrays around a number."""
    return b"[" * levels + b"0" + b"]" * levels


def alias_bomb(levels):
    """'Billion laughs': each level lists the previous one nine times, by alias."""
    names = "abcdefghi"[:levels]
    lines = ["a: &a [" + ",".join(["lol"] * 9) + "]"]
    lines += [f"{c}: &{c} [" + ",".join(["*" + p] * 9) + "]" for p, c in zip(names, names[1:])]
    return "\n".join(lines).encode()


# --- parse_body ---------------------------------------------------------------------


def test_json_body():
    assert parse_body(b'{"kind": "Pod", "spec": {"n": [1, 2.5, true, null]}}', JSON) == {
        "kind": "Pod", "spec": {"n": [1, 2.5, True, None]}}


def test_json_with_charset_and_other_media_types_is_json():
    assert parse_body(b'{"a": "\xc3\xa9"}', "application/json; charset=utf-8") == {"a": "é"}
    assert parse_body(b'[{"op": "remove", "path": "/a"}]',
                      "application/json-patch+json") == [{"op": "remove", "path": "/a"}]


def test_yaml_body():
    raw = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n  n: '1'\n"
    assert parse_body(raw, YAML) == {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "c"}, "data": {"k": "v", "n": "1"}}
    assert parse_body(b'{"a": 1}', "application/apply-patch+yaml") == {"a": 1}


@pytest.mark.parametrize("raw", [b"", b"   \n\t"])
def test_empty_body(raw):
    assert refused(raw) == (400, "BadRequest", "the request body is empty")


def test_body_at_the_limit_is_read():
    raw = b'"' + b"x" * (MAX_BODY - 2) + b'"'
    assert len(raw) == MAX_BODY
    assert parse_body(raw, JSON) == "x" * (MAX_BODY - 2)


def test_body_over_the_limit():
    assert MAX_BODY == 3 * 1024 * 1024
    assert refused(b" " * (MAX_BODY + 1)) == (
        413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")


@pytest.mark.parametrize("content_type", [JSON, YAML])
def test_nesting_limit(content_type):
    assert MAX_DEPTH == 100
    assert parse_body(nested(100), content_type) == json.loads(nested(100))
    assert refused(nested(101), content_type) == (
        400, "BadRequest", "the request body is nested deeper than 100 levels")


@pytest.mark.parametrize("content_type, levels", [(JSON, 5000), (YAML, 600)])
def test_nesting_beyond_the_parser_recursion_limit(content_type, levels):
    assert refused(nested(levels), content_type) == (
        400, "BadRequest", "the request body is nested deeper than 100 levels")


def test_recursive_yaml_is_refused():
    assert refused(b"a: &a [*a]", YAML)[0] == 400


def test_yaml_alias_bomb_is_refused_without_expanding_it():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert refused(alias_bomb(9), YAML) == (
        400, "BadRequest", "the request body expands to more than 3145728 bytes")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024  # expanded, the 9**9 strings would take gigabytes


def test_yaml_alias_expansion_beyond_the_body_limit_is_refused():
    raw = alias_bomb(6)
    assert len(raw) < 400
    assert refused(raw, YAML)[0] == 400


@pytest.mark.parametrize("raw, message", [
    (b'{"a": }', "error decoding JSON: Expecting value: line 1 column 7 (char 6)"),
    (b'{"a": 1', "error decoding JSON: Expecting ',' delimiter: line 1 column 8 (char 7)"),
    (b"\xff", "error decoding JSON: 'utf-8' codec can't decode byte 0xff in position 0: "
              "invalid start byte"),
])
def test_invalid_json(raw, message):
    assert refused(raw) == (400, "BadRequest", message)


def test_invalid_yaml_names_the_problem_on_one_line():
    code, reason, message = refused(b"a: [1, 2\nb: 3", YAML)
    assert (code, reason) == (400, "BadRequest")
    assert message == "error decoding YAML: while parsing a flow sequence"


@pytest.mark.parametrize("raw, content_type", [
    (b'{"a": NaN}', JSON), (b'{"a": -Infinity}', JSON), (b"a: .inf", YAML), (b"a: .nan", YAML)])
def test_non_finite_numbers_are_refused(raw, content_type):
    assert refused(raw, content_type)[0] == 400


def test_yaml_timestamps_stay_strings():
    assert parse_body(b"a: 2024-01-01\nb: 2024-01-01T10:00:00Z", YAML) == {
        "a": "2024-01-01", "b": "2024-01-01T10:00:00Z"}


# --- resource paths -----------------------------------------------------------------


@pytest.fixture(scope="module")
def api():
    return API(None, REGISTRY, "127.0.0.1:6443")  # _target needs only the registry


def kind(group, plural):
    return REGISTRY.resource(group, "v1", plural)


@pytest.mark.parametrize("group, path, expected", [
    ("", "pods", ("pods", None, None, None)),
    ("", "namespaces/foo/pods", ("pods", "foo", None, None)),
    ("", "namespaces/foo/pods/web", ("pods", "foo", "web", None)),
    ("", "namespaces/foo/pods/web/status", ("pods", "foo", "web", "status")),
    ("", "namespaces/foo/pods/web/binding", ("pods", "foo", "web", "binding")),
    ("", "namespaces/foo/pods/web/eviction", ("pods", "foo", "web", "eviction")),
    ("", "namespaces", ("namespaces", None, None, None)),
    ("", "namespaces/foo", ("namespaces", None, "foo", None)),
    ("", "namespaces/foo/status", ("namespaces", None, "foo", "status")),
    ("", "namespaces/foo/finalize", ("namespaces", None, "foo", "finalize")),
    ("", "namespaces/pods", ("namespaces", None, "pods", None)),
    ("", "namespaces/pods/status", ("namespaces", None, "pods", "status")),
    ("", "nodes", ("nodes", None, None, None)),
    ("", "nodes/n1", ("nodes", None, "n1", None)),
    ("", "nodes/n1/status", ("nodes", None, "n1", "status")),
    ("apps", "deployments", ("deployments", None, None, None)),
    ("apps", "namespaces/foo/deployments/d/scale", ("deployments", "foo", "d", "scale")),
])
def test_target(api, group, path, expected):
    plural, ns, name, sub = expected
    assert api._target(group, "v1", path.split("/")) == Target(kind(group, plural), ns, name,
                                                               sub)


@pytest.mark.parametrize("group, version, path", [
    ("", "v1", "widgets"),
    ("", "v1", "namespaces/foo/widgets"),
    ("", "v1", "deployments"),                       # in apps, not core
    ("apps", "v2", "deployments"),
    ("", "v1", "pods/web"),                          # namespaced object without namespace
    ("", "v1", "namespaces/foo/nodes"),              # cluster-scoped kind in a namespace
    ("", "v1", "namespaces/foo/namespaces"),
    ("", "v1", "namespaces/foo/pods/web/scale"),     # not a pod subresource
    ("", "v1", "namespaces/foo/pods/web/status/x"),
    ("", "v1", "namespaces/foo/bogus"),
    ("", "v1", "nodes/n1/finalize"),
])
def test_target_not_found(api, group, version, path):
    with pytest.raises(APIError) as e:
        api._target(group, version, path.split("/"))
    assert (e.value.code, e.value.message) == (404, "the server could not find the requested "
                                                    "resource")
