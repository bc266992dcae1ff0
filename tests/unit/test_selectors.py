"""Label and field selectors, checked against k8s.io/apimachinery's parser behaviour."""
import pytest

from kwire.api.selectors import (
    DOES_NOT_EXIST, EQUALS, EXISTS, IN, NOT_IN, FieldSelector, LabelSelector, Requirement,
    SelectorError, UnsupportedField, new_requirement, parse_field_selector,
    parse_label_selector, selector_from_object, selector_from_set, validate_label_selector,
)
from kwire.api.validation import FORBIDDEN, INVALID, REQUIRED

# --- parsing label selectors ----------------------------------------------------------------


@pytest.mark.parametrize("text, requirements", [
    ("", ()),
    ("   ", ()),
    ("app=web", (Requirement("app", "=", ("web",)),)),
    ("app==web", (Requirement("app", "==", ("web",)),)),
    ("app!=web", (Requirement("app", "!=", ("web",)),)),
    ("app", (Requirement("app", EXISTS),)),
    ("!app", (Requirement("app", DOES_NOT_EXIST),)),
    ("env in (prod, qa)", (Requirement("env", IN, ("prod", "qa")),)),
    ("env notin (qa)", (Requirement("env", NOT_IN, ("qa",)),)),
    ("env in (qa,prod,qa)", (Requirement("env", IN, ("prod", "qa")),)),
    ("a in ()", (Requirement("a", IN, ("",)),)),
    ("a in (,)", (Requirement("a", IN, ("",)),)),
    ("a in (x,,y)", (Requirement("a", IN, ("", "x", "y")),)),
    ("a=", (Requirement("a", "=", ("",)),)),
    ("in=notin", (Requirement("in", "=", ("notin",)),)),
    ("a in (in,notin)", (Requirement("a", IN, ("in", "notin")),)),
    ("n>3", (Requirement("n", "gt", ("3",)),)),
    ("n<10", (Requirement("n", "lt", ("10",)),)),
    ("example.com/app=web", (Requirement("example.com/app", "=", ("web",)),)),
    # requirements come sorted by key, as upstream sorts them
    (" z = 1 ,\ta in (x), !m ", (Requirement("a", IN, ("x",)), Requirement("m", DOES_NOT_EXIST),
                                  Requirement("z", "=", ("1",)))),
])
def test_parse_label_selector(text, requirements):
    assert parse_label_selector(text).requirements == requirements


@pytest.mark.parametrize("text, printed", [
    ("b=2,a in (y,x),!c,d", "a in (x,y),b=2,!c,d"),
    ("x notin (),n>1", "n>1,x notin ()"),
    ("k==v,j!=w", "j!=w,k==v"),
])
def test_label_selector_string_form(text, printed):
    assert str(parse_label_selector(text)) == printed
    assert parse_label_selector(printed) == parse_label_selector(text)


@pytest.mark.parametrize("text, message", [
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
    ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("a in (b,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
    ("a=(", "unable to parse requirement: found '(', expected: identifier"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("!=a", "found '!=', expected: !, identifier, or 'end of string'"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("a,", "found '', expected: identifier after ','"),
    ("a,,b", "found ',', expected: identifier after ','"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("(a)", "found '(', expected: !, identifier, or 'end of string'"),
    ("n>x", "unable to parse requirement: values[0]: Invalid value: \"x\": "
            "for 'Gt', 'Lt' operators, the value must be an integer"),
])
def test_label_selector_syntax_errors(text, message):
    with pytest.raises(SelectorError) as info:
        parse_label_selector(text)
    assert str(info.value) == message


@pytest.mark.parametrize("text, message", [
    ("-bad=x", 'unable to parse requirement: key: Invalid value: "-bad": name part must consist'),
    ("a/b/c=x", 'unable to parse requirement: key: Invalid value: "a/b/c": a qualified name'),
    ("Bad_/k", 'unable to parse requirement: key: Invalid value: "Bad_/k": prefix part'),
    ("a=b/c", 'unable to parse requirement: values[0][a]: Invalid value: "b/c": a valid label'),
    ("a in (ok,-no)", 'unable to parse requirement: values[0][a]: Invalid value: "-no"'),
    ("a=" + "x" * 64, "must be no more than 63 characters"),
])
def test_label_selector_validates_keys_and_values(text, message):
    with pytest.raises(SelectorError) as info:
        parse_label_selector(text)
    assert message in str(info.value)


# --- matching -------------------------------------------------------------------------------

LABELS = {"app": "web", "env": "prod", "n": "5", "empty": ""}


@pytest.mark.parametrize("text, expected", [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=db", False),
    ("app!=db", True),
    ("app!=web", False),
    ("missing!=x", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("env in (prod,qa)", True),
    ("env in (qa)", False),
    ("missing in (x)", False),
    ("env notin (qa)", True),
    ("env notin (prod)", False),
    ("missing notin (x)", True),
    ("empty=", True),
    ("empty in ()", True),
    ("app in ()", False),
    ("n>4", True),
    ("n>5", False),
    ("n<6", True),
    ("app>1", False),
    ("missing<1", False),
    ("app=web,env=prod", True),
    ("app=web,env=qa", False),
])
def test_label_selector_matching(text, expected):
    assert parse_label_selector(text).matches(LABELS) is expected


def test_no_labels_at_all():
    assert parse_label_selector("!a").matches(None)
    assert parse_label_selector("a notin (x)").matches({})
    assert not parse_label_selector("a").matches(None)
    assert parse_label_selector("").matches(None)


def test_everything_and_nothing():
    assert LabelSelector.everything().empty
    assert LabelSelector.everything().matches(None)
    assert parse_label_selector("").empty
    assert not parse_label_selector("a").empty
    assert not LabelSelector.nothing().empty
    assert not LabelSelector.nothing().matches({"a": "b"})
    assert not LabelSelector.nothing().matches(None)


# --- metav1.LabelSelector objects -----------------------------------------------------------


def test_selector_from_object_none_matches_nothing_and_empty_everything():
    assert selector_from_object(None) == LabelSelector.nothing()
    assert selector_from_object({}) == LabelSelector.everything()
    assert selector_from_object({"matchLabels": {}, "matchExpressions": []}).empty
    assert selector_from_object({}).matches({"x": "y"})


def test_selector_from_object_combines_labels_and_expressions():
    selector = selector_from_object({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "qa"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
            {"key": "zone", "operator": "Exists"},
        ],
    })
    assert str(selector) == "app=web,!canary,env in (prod,qa),tier notin (db),zone"
    assert selector.matches({"app": "web", "env": "qa", "zone": "a"})
    assert selector.matches({"app": "web", "env": "prod", "zone": "a", "tier": "fe"})
    assert not selector.matches({"app": "web", "env": "qa", "zone": "a", "canary": "1"})
    assert not selector.matches({"app": "web", "env": "dev", "zone": "a"})
    assert not selector.matches({"app": "web", "env": "qa", "zone": "a", "tier": "db"})
    assert not selector.matches({"app": "web", "env": "qa"})
    assert not selector.matches({"env": "qa", "zone": "a"})


@pytest.mark.parametrize("obj, message", [
    ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
     '"Gt" is not a valid label selector operator'),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
     "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
     'values: Invalid value: ["x"]: values set must be empty for exists and does not exist'),
    ({"matchLabels": {"app": "a b"}}, 'values[0][app]: Invalid value: "a b"'),
    ({"matchLabels": {"-x": "y"}}, 'key: Invalid value: "-x"'),
    ({"matchLabels": ["app"]}, "matchLabels must be a map"),
    ({"matchExpressions": {"key": "a"}}, "matchExpressions must be a list of objects"),
    ("app=web", "a label selector must be an object"),
])
def test_selector_from_object_errors(obj, message):
    with pytest.raises(SelectorError) as info:
        selector_from_object(obj)
    assert message in str(info.value)


def test_new_requirement_aggregates_several_problems():
    with pytest.raises(SelectorError) as info:
        new_requirement("-k", EQUALS, ["a", "b"])
    text = str(info.value)
    assert text.startswith('[key: Invalid value: "-k": ')
    assert text.endswith(', values: Invalid value: ["a","b"]: '
                         'exact-match compatibility requires one single value]')
    with pytest.raises(SelectorError, match='operator: Unsupported value: "like"'):
        new_requirement("k", "like", ["a"])


def test_selector_from_set():
    assert selector_from_set(None).empty
    assert selector_from_set({}).matches({"a": "b"})
    selector = selector_from_set({"b": "2", "a": "1"})
    assert str(selector) == "a=1,b=2"
    assert selector.matches({"a": "1", "b": "2", "c": "3"})
    assert not selector.matches({"a": "1"})


# --- validating metav1.LabelSelector ----------------------------------------------------------


def causes(selector):
    return [(c.field, c.reason, c.message)
            for c in validate_label_selector(selector, "spec.selector")]


def test_valid_selectors_have_no_causes():
    assert causes(None) == []
    assert causes({}) == []
    assert causes({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "example.com/env", "operator": "In", "values": ["prod", ""]},
        {"key": "x", "operator": "DoesNotExist"}]}) == []


def test_selector_validation_causes():
    assert causes({"matchExpressions": [
        {"key": "env", "operator": "In"},
        {"key": "env", "operator": "NotIn", "values": []},
        {"key": "env", "operator": "Exists", "values": ["x"]},
        {"key": "env", "operator": "Like", "values": ["x"]},
        {"key": "bad key", "operator": "In", "values": ["ok", "not ok"]},
        {"operator": "Exists"},
    ]}) == [
        ("spec.selector.matchExpressions[0].values", REQUIRED,
         "Required value: must be specified when `operator` is 'In' or 'NotIn'"),
        ("spec.selector.matchExpressions[1].values", REQUIRED,
         "Required value: must be specified when `operator` is 'In' or 'NotIn'"),
        ("spec.selector.matchExpressions[2].values", FORBIDDEN,
         "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
        ("spec.selector.matchExpressions[3].operator", INVALID,
         'Invalid value: "Like": not a valid selector operator'),
        ("spec.selector.matchExpressions[4].key", INVALID,
         'Invalid value: "bad key": name part must consist of alphanumeric characters, '
         "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
         "'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
         "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
        ("spec.selector.matchExpressions[4].values[1]", INVALID,
         'Invalid value: "not ok": a valid label must be an empty string or consist of '
         "alphanumeric characters, '-', '_' or '.', and must start and end with an "
         "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
         "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
        ("spec.selector.matchExpressions[5].key", INVALID,
         'Invalid value: "": name part must be non-empty'),
    ]


def test_selector_validation_of_match_labels_and_shapes():
    assert [c[0] for c in causes({"matchLabels": {"app": "-x-", "-k": "v"}})] == [
        "spec.selector.matchLabels[app]", "spec.selector.matchLabels"]
    assert causes("app=web") == [("spec.selector", INVALID,
                                  'Invalid value: "app=web": must be an object')]
    assert causes({"matchExpressions": {"key": "a"}})[0][0] == "spec.selector.matchExpressions"
    assert causes({"matchExpressions": ["a"]})[0][0] == "spec.selector.matchExpressions[0]"
    assert causes({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}) == [
        ("spec.selector.matchExpressions[0].values[0]", INVALID,
         "Invalid value: 1: must be a string")]


# --- field selectors ------------------------------------------------------------------------


@pytest.mark.parametrize("text, printed", [
    ("", ""),
    ("metadata.name=web", "metadata.name=web"),
    ("metadata.name==web", "metadata.name=web"),
    ("status.phase!=Running", "status.phase!=Running"),
    ("status.phase=Running,metadata.name=web", "metadata.name=web,status.phase=Running"),
    (",metadata.name=web,", "metadata.name=web"),
    ("spec.nodeName=", "spec.nodeName="),
    (r"a=x\,y\=z\\w", r"a=x\,y\=z\\w"),
])
def test_parse_field_selector(text, printed):
    assert str(parse_field_selector(text)) == printed


def test_field_selector_requirements_and_fields():
    selector = parse_field_selector(r"involvedObject.name=web,involvedObject.uid!=u\,1")
    assert [(r.field, r.operator, r.value) for r in selector.requirements] == [
        ("involvedObject.name", "=", "web"), ("involvedObject.uid", "!=", "u,1")]
    assert selector.fields == {"involvedObject.name", "involvedObject.uid"}
    assert not selector.empty
    assert parse_field_selector("").empty


@pytest.mark.parametrize("text, message", [
    ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
    ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
    ("a=b=c", "invalid field selector: unescaped character in value: '='"),
    ("a==b\\", "invalid field selector: invalid escape sequence: \\"),
    ("a=\\n", "invalid field selector: invalid escape sequence: \\n"),
])
def test_field_selector_errors(text, message):
    with pytest.raises(SelectorError) as info:
        parse_field_selector(text)
    assert str(info.value) == message


POD = {"metadata": {"name": "web", "namespace": "default"},
       "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
POD_FIELDS = {"spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
              "status.phase": lambda o: o["status"]["phase"]}


@pytest.mark.parametrize("text, expected", [
    ("", True),
    ("metadata.name=web", True),
    ("metadata.name=db", False),
    ("metadata.name!=db", True),
    ("metadata.namespace=default", True),
    ("metadata.namespace!=default", False),
    ("status.phase=Running,metadata.name=web", True),
    ("status.phase=Pending,metadata.name=web", False),
    ("spec.nodeName=n1", True),
    ("spec.nodeName!=", True),
    ("spec.nodeName=", False),
])
def test_field_selector_matches_objects(text, expected):
    assert parse_field_selector(text).matches_obj(POD, POD_FIELDS) is expected


def test_field_selector_missing_values_count_as_empty():
    cluster_scoped = {"metadata": {"name": "node1"}}
    assert parse_field_selector("metadata.namespace=").matches_obj(cluster_scoped)
    assert not parse_field_selector("metadata.namespace!=").matches_obj(cluster_scoped)
    values = {"a": "1", "b": None}
    assert parse_field_selector("a=1,b=").matches(values.get)
    assert parse_field_selector("a!=2,c!=x").matches(values.get)


def test_unsupported_field_labels():
    selector = parse_field_selector("spec.nodeName=n1,metadata.name=web,zzz=1")
    with pytest.raises(UnsupportedField) as info:
        selector.check({"metadata.name", "metadata.namespace", "spec.nodeName"})
    assert str(info.value) == "field label not supported: zzz"
    assert info.value.field == "zzz"
    selector.check({"metadata.name", "spec.nodeName", "zzz"})
    with pytest.raises(UnsupportedField, match="field label not supported: spec.nodeName"):
        parse_field_selector("spec.nodeName=n1").matches_obj(POD)
    assert isinstance(UnsupportedField("x"), SelectorError)


def test_exact_field_value():
    assert parse_field_selector("metadata.name=web").exact("metadata.name") == "web"
    assert parse_field_selector("a=1,metadata.name==web").exact("metadata.name") == "web"
    assert parse_field_selector("metadata.name!=web").exact("metadata.name") is None
    assert parse_field_selector("a=1").exact("metadata.name") is None
    assert FieldSelector().exact("metadata.name") is None
