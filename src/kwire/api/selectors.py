"""Label and field selectors, as k8s.io/apimachinery/pkg/labels and pkg/fields define them.

Label selectors arrive as the `?labelSelector=` string (parse_label_selector) or as a
metav1.LabelSelector object in a spec (selector_from_object); both give a LabelSelector.
Field selectors arrive as `?fieldSelector=` (parse_field_selector). Error messages follow
upstream's wording because kubectl prints them verbatim.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from kwire.api.validation import (
    Cause, forbidden, invalid, label_value, labels as validate_labels, not_supported,
    qualified_name, required,
)


class SelectorError(ValueError):
    """A selector that cannot be parsed or is invalid (the API answers 400)."""


class UnsupportedField(SelectorError):
    """A field selector names a field the resource does not index."""

    def __init__(self, field: str) -> None:
        super().__init__(f"field label not supported: {field}")
        self.field = field


# --- label selectors ---------------------------------------------------------------------

IN, NOT_IN = "in", "notin"
EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "=", "==", "!="
EXISTS, DOES_NOT_EXIST = "exists", "!"
GT, LT = "gt", "lt"
OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GT, LT, EXISTS, DOES_NOT_EXIST)
_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GT, LT)

# metav1.LabelSelectorRequirement operators -> selection operators
_OBJECT_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}

_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector: key, operator, values."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        value = labels.get(self.key)
        if value is None or not _INTEGER.fullmatch(value):
            return False
        bound = int(self.values[0])
        return int(value) > bound if op == GT else int(value) < bound

    def __str__(self) -> str:
        if self.operator == EXISTS:
            return self.key
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        values = ",".join(sorted(self.values))
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({values})"
        symbol = {GT: ">", LT: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{values}"


@dataclass(frozen=True)
class LabelSelector:
    """The AND of its requirements; match_none is upstream's labels.Nothing()."""

    requirements: tuple[Requirement, ...] = ()
    match_none: bool = False

    @classmethod
    def everything(cls) -> LabelSelector:
        """labels.Everything(): matches every object, including unlabelled ones."""
        return cls()

    @classmethod
    def nothing(cls) -> LabelSelector:
        """labels.Nothing(): matches no object (a nil metav1.LabelSelector)."""
        return cls(match_none=True)

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (matches every object)."""
        return not self.match_none and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.match_none:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def new_requirement(key: str, operator: str, values: Iterable[str] = (),
                    path: str = "") -> Requirement:
    """Build a validated Requirement (labels.NewRequirement); raise SelectorError."""
    values = tuple(values)
    base = f"{path}." if path else ""
    causes: list[Cause] = []
    if not isinstance(key, str):
        causes.append(invalid(base + "key", key, "must be a string"))
    else:
        causes += [invalid(base + "key", key, m) for m in qualified_name(key)]
    values_path = base + "values"
    if operator in (IN, NOT_IN):
        if not values:
            causes.append(invalid(values_path, list(values),
                                  "for 'in', 'notin' operators, values set can't be empty"))
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(values) != 1:
            causes.append(invalid(values_path, list(values),
                                  "exact-match compatibility requires one single value"))
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if values:
            causes.append(invalid(values_path, list(values),
                                  "values set must be empty for exists and does not exist"))
    elif operator in (GT, LT):
        if len(values) != 1:
            causes.append(invalid(values_path, list(values),
                                  "for 'Gt', 'Lt' operators, exactly one value is required"))
        causes += [invalid(f"{values_path}[{i}]", v,
                           "for 'Gt', 'Lt' operators, the value must be an integer")
                   for i, v in enumerate(values)
                   if not (isinstance(v, str) and _INTEGER.fullmatch(v))]
    else:
        causes.append(not_supported(base + "operator", operator, OPERATORS))
    for i, value in enumerate(values):
        if not isinstance(value, str):
            causes.append(invalid(f"{values_path}[{i}]", value, "must be a string"))
            continue
        causes += [invalid(f"{values_path}[{i}][{key}]", value, m) for m in label_value(value)]
    if causes:
        raise SelectorError(_aggregate(causes))
    return Requirement(key, operator, values)


def _aggregate(causes: list[Cause]) -> str:
    """utilerrors.Aggregate's text: one message alone, several in brackets."""
    if len(causes) == 1:
        return str(causes[0])
    return "[" + ", ".join(str(c) for c in causes) + "]"


def _sorted(requirements: Iterable[Requirement]) -> tuple[Requirement, ...]:
    """Upstream sorts requirements by key so equal selectors print the same."""
    return tuple(sorted(requirements, key=lambda r: r.key))


def parse_label_selector(selector: str) -> LabelSelector:
    """Parse the string form: `a=b,c!=d,e in (x,y),f notin (z),g,!h,i>3`."""
    return LabelSelector(_sorted(_LabelParser(selector).parse()))


def selector_from_object(selector: dict | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: None matches nothing, {} matches everything."""
    if selector is None:
        return LabelSelector.nothing()
    if not isinstance(selector, dict):
        raise SelectorError("a label selector must be an object")
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not isinstance(match_labels, dict):
        raise SelectorError("matchLabels must be a map of label keys to values")
    if not isinstance(expressions, list) or not all(isinstance(e, dict) for e in expressions):
        raise SelectorError("matchExpressions must be a list of objects")
    requirements = [new_requirement(k, EQUALS, [v]) for k, v in match_labels.items()]
    for expr in expressions:
        operator = _OBJECT_OPERATORS.get(expr.get("operator"))
        if operator is None:
            raise SelectorError(f'"{expr.get("operator")}" is not a valid label selector operator')
        requirements.append(new_requirement(expr.get("key", ""), operator,
                                            expr.get("values") or []))
    return LabelSelector(_sorted(requirements))


def selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """labels.SelectorFromSet, for map selectors (Service spec.selector): None or {} is
    everything, otherwise every pair must be equal. Not validated, as upstream."""
    return LabelSelector(_sorted(Requirement(k, EQUALS, (v,)) for k, v in (labels or {}).items()))


def validate_label_selector(selector: dict | None, path: str) -> list[Cause]:
    """ValidateLabelSelector for a metav1.LabelSelector found at path."""
    if selector is None:
        return []
    if not isinstance(selector, dict):
        return [invalid(path, selector, "must be an object")]
    causes = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    expressions = selector.get("matchExpressions")
    if expressions is None:
        return causes
    if not isinstance(expressions, list):
        return causes + [invalid(f"{path}.matchExpressions", expressions, "must be a list")]
    for i, expr in enumerate(expressions):
        causes += _validate_expression(expr, f"{path}.matchExpressions[{i}]")
    return causes


def _validate_expression(expr: object, path: str) -> list[Cause]:
    if not isinstance(expr, dict):
        return [invalid(path, expr, "must be an object")]
    causes: list[Cause] = []
    values = expr.get("values") or []
    if not isinstance(values, list):
        causes.append(invalid(f"{path}.values", values, "must be a list of strings"))
        values = []
    operator = expr.get("operator")
    if operator in ("In", "NotIn"):
        if not values:
            causes.append(required(f"{path}.values",
                                   "must be specified when `operator` is 'In' or 'NotIn'"))
    elif operator in ("Exists", "DoesNotExist"):
        if values:
            causes.append(forbidden(f"{path}.values", "may not be specified when `operator` "
                                                      "is 'Exists' or 'DoesNotExist'"))
    else:
        causes.append(invalid(f"{path}.operator", operator, "not a valid selector operator"))
    key = expr.get("key") or ""
    if not isinstance(key, str):
        causes.append(invalid(f"{path}.key", key, "must be a string"))
    else:
        causes += [invalid(f"{path}.key", key, m) for m in qualified_name(key)]
    for j, value in enumerate(values):
        if not isinstance(value, str):
            causes.append(invalid(f"{path}.values[{j}]", value, "must be a string"))
        else:
            causes += [invalid(f"{path}.values[{j}]", value, m) for m in label_value(value)]
    return causes


# The label selector grammar, lexed the way labels.Lexer does: runs of the special
# characters form the longest operator they can; anything else up to whitespace or a
# special character is an identifier, and `in` / `notin` are keywords only where an
# operator is expected (so `in=notin` is a valid selector).
_SPECIAL = set("=!(),<>")
_SYMBOLS = {"=", "==", "!=", "!", "(", ")", ",", ">", "<"}
_WHITESPACE = set(" \t\r\n")
_ID, _END = "identifier", "end of string"


def _lex(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    i = 0
    while True:
        while i < len(text) and text[i] in _WHITESPACE:
            i += 1
        if i == len(text):
            tokens.append((_END, ""))
            return tokens
        j = i + 1
        if text[i] in _SPECIAL:
            while j < len(text) and text[i:j + 1] in _SYMBOLS:
                j += 1
            tokens.append((text[i:j], text[i:j]))
        else:
            while j < len(text) and text[j] not in _SPECIAL and text[j] not in _WHITESPACE:
                j += 1
            word = text[i:j]
            tokens.append((word if word in (IN, NOT_IN) else _ID, word))
        i = j


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def peek(self, values: bool = True) -> tuple[str, str]:
        """The next token; in a value position the keywords are plain identifiers."""
        kind, literal = self.tokens[self.pos]
        if values and kind in (IN, NOT_IN):
            kind = _ID
        return kind, literal

    def next(self, values: bool = True) -> tuple[str, str]:
        token = self.peek(values)
        self.pos += 1
        return token

    def parse(self) -> list[Requirement]:
        requirements = []
        while True:
            kind, literal = self.peek()
            if kind == _END:
                return requirements
            if kind not in (_ID, "!"):
                raise SelectorError(
                    f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self.requirement())
            except SelectorError as exc:
                raise SelectorError(f"unable to parse requirement: {exc}") from None
            kind, literal = self.next()
            if kind == _END:
                return requirements
            if kind != ",":
                raise SelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            kind, literal = self.peek()
            if kind not in (_ID, "!"):
                raise SelectorError(f"found '{literal}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        kind, key = self.next()
        negated = kind == "!"
        if negated:
            kind, key = self.next()
        if kind != _ID:
            raise SelectorError(f"found '{key}', expected: identifier")
        if negated:
            return new_requirement(key, DOES_NOT_EXIST)
        if self.peek()[0] in (_END, ","):
            return new_requirement(key, EXISTS)
        kind, literal = self.next(values=False)
        operator = {IN: IN, NOT_IN: NOT_IN, "=": EQUALS, "==": DOUBLE_EQUALS,
                    "!=": NOT_EQUALS, ">": GT, "<": LT}.get(kind)
        if operator is None:
            raise SelectorError(f"found '{literal}', expected: {', '.join(_BINARY_OPERATORS)}")
        values = self.value_set() if operator in (IN, NOT_IN) else self.exact_value()
        return new_requirement(key, operator, sorted(values))

    def value_set(self) -> set[str]:
        """`(a,b)`. As upstream, empty entries are the empty string: `()` is {""}."""
        kind, literal = self.next()
        if kind != "(":
            raise SelectorError(f"found '{literal}' expected: '('")
        kind, literal = self.peek()
        if kind == ")":
            self.next()
            return {""}
        if kind not in (_ID, ","):
            raise SelectorError(f"found '{literal}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            kind, literal = self.next()
            if kind == _ID:
                values.add(literal)
                following, text = self.peek()
                if following == ")":
                    break
                if following != ",":
                    raise SelectorError(f"found '{text}', expected: ',' or ')'")
            elif kind == ",":
                following, _ = self.peek()
                if not values or following in (",", ")"):
                    values.add("")
                if following == ")":
                    break
            else:
                raise SelectorError(f"found '{literal}', expected: ',', or identifier")
        self.next()  # the ")" seen above
        return values

    def exact_value(self) -> set[str]:
        """The value after =, ==, !=, > or <; nothing at all means the empty string."""
        if self.peek()[0] in (_END, ","):
            return {""}
        kind, literal = self.next()
        if kind != _ID:
            raise SelectorError(f"found '{literal}', expected: identifier")
        return {literal}


# --- field selectors ---------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    """`field=value` (operator "=", also written "==") or `field!=value`."""

    field: str
    operator: str
    value: str

    def __str__(self) -> str:
        escaped = (self.value.replace("\\", "\\\\").replace(",", "\\,")
                   .replace("=", "\\="))
        return f"{self.field}{self.operator}{escaped}"


@dataclass(frozen=True)
class FieldSelector:
    """The AND of its requirements; empty matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    @property
    def fields(self) -> frozenset[str]:
        """Every field name used, so the API can reject the unsupported ones."""
        return frozenset(r.field for r in self.requirements)

    def check(self, supported: Iterable[str]) -> None:
        """Raise UnsupportedField for the first field not in supported (sorted, stable)."""
        unsupported = sorted(self.fields - set(supported))
        if unsupported:
            raise UnsupportedField(unsupported[0])

    def exact(self, field: str) -> str | None:
        """The value the selector pins field to with `=`, if it does (RequiresExactMatch)."""
        for r in self.requirements:
            if r.field == field and r.operator == "=":
                return r.value
        return None

    def matches(self, getter: Callable[[str], str | None]) -> bool:
        """getter(field) gives the object's value; None counts as "", as a missing field does."""
        for r in self.requirements:
            equal = (getter(r.field) or "") == r.value
            if equal != (r.operator == "="):
                return False
        return True

    def matches_obj(self, obj: dict,
                    extra_fields: Mapping[str, Callable[[dict], str]] | None = None) -> bool:
        """Match an object: metadata.name and metadata.namespace are always known, the rest
        come from extra_fields (Kind.field_labels). Unknown fields raise UnsupportedField."""
        extra = extra_fields or {}

        def getter(field: str) -> str | None:
            if field in ("metadata.name", "metadata.namespace"):
                return (obj.get("metadata") or {}).get(field.split(".")[1])
            if field not in extra:
                raise UnsupportedField(field)
            return extra[field](obj)

        return self.matches(getter)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def parse_field_selector(selector: str) -> FieldSelector:
    """Parse `a=b,c==d,e!=f`. Values may escape `\\`, `,` and `=` with a backslash."""
    requirements = []
    for term in sorted(_split_terms(selector)):
        if not term:
            continue
        for at in range(len(term)):
            operator = next((op for op in ("!=", "==", "=") if term.startswith(op, at)), None)
            if operator:
                break
        else:
            raise SelectorError(f"invalid selector: '{selector}'; can't understand '{term}'")
        value = _unescape(term[at + len(operator):])
        requirements.append(FieldRequirement(term[:at], "!=" if operator == "!=" else "=", value))
    return FieldSelector(tuple(requirements))


def _split_terms(selector: str) -> list[str]:
    """Split on the commas that no backslash escapes."""
    terms, start, escaped = [], 0, False
    for i, ch in enumerate(selector):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def _unescape(value: str) -> str:
    out, escaped = [], False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {ch!r}")
        else:
            out.append(ch)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)
