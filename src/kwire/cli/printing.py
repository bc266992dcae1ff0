"""What the kubectl-shaped verbs print, as pure functions from API dicts to text.

kubectl is the reference: its tables are Go's text/tabwriter over tab-separated
cells (elastic tabstops), its yaml and json are the server's objects with sorted
keys, and its failures have fixed shapes ("Error from server (NotFound): ...").
Everything here is reproduced byte for byte where a user could tell the
difference, so scripts written against kubectl work against kwire too.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml

from kwire.api.tables import parse_time


class TabWriter:
    """Go's text/tabwriter with ' ' padding: lines of tab-terminated cells, each
    column padded to its widest cell in a block of consecutive lines that have
    that column (the text after a line's last tab belongs to no column).

    remember_widths is kubectl's fork of the flag: a column never shrinks
    across flush() calls, so rows printed later by `get -w` stay aligned under
    the header printed first."""

    def __init__(self, minwidth: int, padding: int, remember_widths: bool = False):
        self.minwidth = minwidth
        self.padding = padding
        self.remember = remember_widths
        self.max_widths: list[int] = []
        self._text = ""

    def write(self, text: str) -> None:
        self._text += text

    def reset_widths(self) -> None:
        self.max_widths = []

    def flush(self) -> str:
        """Everything written since the last flush, aligned."""
        text, self._text = self._text, ""
        if not text:
            return ""
        lines = [line.split("\t") for line in text.split("\n")]
        out: list[str] = []
        self._format(lines, [], 0, len(lines), out)
        return "\n".join(out)

    def _format(self, lines: list[list[str]], widths: list[int], line0: int, line1: int,
                out: list[str]) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            # A block of lines that all have a cell in this column starts here.
            self._write_lines(lines, widths, line0, this, out)
            line0 = this
            width = self.minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + self.padding)
                this += 1
            if self.remember:
                if len(self.max_widths) <= column:
                    self.max_widths.extend([0] * (column + 1 - len(self.max_widths)))
                width = max(width, self.max_widths[column])
                self.max_widths[column] = width
            self._format(lines, widths + [width], line0, this, out)
            line0 = this
        self._write_lines(lines, widths, line0, line1, out)

    @staticmethod
    def _write_lines(lines: list[list[str]], widths: list[int], line0: int, line1: int,
                     out: list[str]) -> None:
        for cells in lines[line0:line1]:
            out.append("".join(c.ljust(widths[j]) if j < len(widths) else c
                               for j, c in enumerate(cells)))


# --- get: server-side Tables ------------------------------------------------------------

def kind_label(kind: str, group: str) -> str:
    """How kubectl names a kind in "pod/web" and 'deployment.apps "web"'."""
    return f"{kind.lower()}.{group}" if group else kind.lower()


def format_cell(value: Any) -> str:
    """A Table cell as kubectl prints it: text up to its first line break."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        for i, ch in enumerate(value):
            if ch in "\n\r\f":
                return value[:i] + "..."
        return value
    return str(value)


def table_lines(table: dict, *, wide: bool = False, with_namespace: bool = False,
                kind_prefix: str | None = None, header: bool = True) -> str:
    """A meta.k8s.io/v1 Table as tab-separated lines for a TabWriter: kubectl's
    printTable after decorateTable (NAMESPACE column first with -A, "kind/"
    before names when several kinds are printed; priority>0 columns only when
    wide). No header above zero rows, as kubectl."""
    columns = list(table.get("columnDefinitions") or ())
    rows = list(table.get("rows") or ())
    shown = [i for i, c in enumerate(columns) if wide or not c.get("priority")]
    name_col = next((i for i, c in enumerate(columns)
                     if c.get("format") == "name" and c.get("type") == "string"), None)
    out = []
    if header and rows:
        names = [columns[i]["name"].upper() for i in shown]
        out.append("\t".join((["NAMESPACE"] if with_namespace else []) + names))
    for row in rows:
        cells = list(row.get("cells") or ())
        if kind_prefix and name_col is not None and name_col < len(cells):
            cells[name_col] = f"{kind_prefix}/{cells[name_col]}"
        line = [format_cell(cells[i]) if i < len(cells) else "" for i in shown]
        if with_namespace:
            meta = (row.get("object") or {}).get("metadata") or {}
            line.insert(0, meta.get("namespace") or "")
        out.append("\t".join(line))
    return "".join(line + "\n" for line in out)


def no_resources_message(namespace: str | None) -> str:
    """What kubectl says on stderr when a get or delete matched nothing; without a
    namespace when any resource asked for was cluster-scoped or with -A."""
    return f"No resources found in {namespace} namespace." if namespace \
        else "No resources found"


# --- get -o yaml|json|name ------------------------------------------------------------

_STR = "tag:yaml.org,2002:str"


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Quote as kubectl's YAML does: double quotes for strings that would read
    back as another type ("1", "true", timestamps), a literal block for
    multi-line strings."""
    style = None
    if "\n" in value:
        style = "|"
    elif dumper.resolve(yaml.ScalarNode, value, (True, False)) != _STR:
        style = '"'
    return dumper.represent_scalar(_STR, value, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=True, width=1 << 30)


def to_json(obj: Any) -> str:
    """As Go's json.MarshalIndent(obj, "", "    "), HTML-safe escapes included."""
    text = json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text + "\n"


def as_list(items: Iterable[dict]) -> dict:
    """The v1 List kubectl prints around several objects."""
    return {"apiVersion": "v1", "items": list(items), "kind": "List",
            "metadata": {"resourceVersion": ""}}


# --- failures ---------------------------------------------------------------------------

def server_error(status: dict, action: str | None = None, source: str | None = None) -> str:
    """A metav1.Status as kubectl reports it (StandardErrorMessage / checkErr).
    `action` and `source` name the manifest the object came from, as in
    'error when creating "web.yaml": ...'."""
    details = status.get("details") or {}
    reason = status.get("reason") or ""
    message = status.get("message") or ""
    if reason == "Invalid" and status.get("code") == 422 and details:
        return _invalid(details)
    if reason == "Unauthorized":
        return f"error: You must be logged in to the server ({message})"
    if source:
        message = f'error when {action} "{source}": {message}'
    return f"Error from server ({reason}): {message}" if reason \
        else f"Error from server: {message}"


def list_error(status: dict, resource: str, label_selector: str | None,
               field_selector: str | None) -> str:
    """A list refused as BadRequest or NotFound, with the selectors named as
    kubectl names them; `resource` is like "/v1, Resource=pods"."""
    if status.get("reason") in ("BadRequest", "NotFound"):
        if label_selector or field_selector:
            prefix = (f'Unable to find "{resource}" that match label selector '
                      f'"{label_selector or ""}", field selector "{field_selector or ""}"')
        else:
            prefix = f'Unable to list "{resource}"'
        status = {**status, "message": f'{prefix}: {status.get("message", "")}'}
    return server_error(status)


def _invalid(details: dict) -> str:
    """The 422 shape: 'The Pod "x" is invalid: ' and one "* field: message" line per
    distinct cause (a single cause stays on the first line)."""
    if details.get("kind") or details.get("name"):
        head = f'The {details.get("kind", "")} "{details.get("name", "")}" is invalid'
    else:
        head = "The request is invalid"
    causes: list[str] = []
    for c in details.get("causes") or ():
        text = f'{c.get("field", "")}: {c.get("message", "")}'
        if text not in causes:
            causes.append(text)
    if not causes:
        return head
    if len(causes) == 1:
        return f"{head}: {causes[0]}"
    return f"{head}: \n" + "\n".join(f"* {c}" for c in causes)


# --- times ------------------------------------------------------------------------------

def rfc1123z(timestamp: str | None) -> str:
    """A timestamp in the local zone, as kubectl describe shows them."""
    t = parse_time(timestamp)
    return t.astimezone().strftime("%a, %d %b %Y %H:%M:%S %z") if t else "<unknown>"
