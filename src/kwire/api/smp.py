"""The PATCH content types the API server accepts, as pure functions on JSON values.

- application/strategic-merge-patch+json -> strategic_merge (what `kubectl apply` and
  the Python client send; k8s.io/apimachinery/pkg/util/strategicpatch semantics)
- application/merge-patch+json           -> merge_patch (RFC 7386)
- application/json-patch+json            -> json_patch (RFC 6902)
- application/apply-patch+yaml           -> apply_patch (server-side apply, no ownership)

Strategic merge needs to know how each list merges. Go reads that from struct tags;
kwire's kinds supply a schema instead (Kind.merge_schema). It maps a field name to a
spec dict whose optional entries are:

    "key": "<mergeKey>"  a list of objects merged item by item on that key
    "set": True          a list of primitives merged as a set (metadata.finalizers)
    "retainKeys": True   the map (or each keyed-list item) uses $retainKeys
    "fields": {...}      schema of the nested map, or of each item of a keyed list

Every other list is replaced whole; maps always merge recursively. Nothing here mutates
its arguments; each function returns a new object.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import jsonpatch
import jsonpointer

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ORDER = "$setElementOrder/"
DELETE_FROM = "$deleteFromPrimitiveList/"

_MISSING: Any = object()


class PatchError(ValueError):
    """The patch cannot be applied; the message says why (the REST layer answers 4xx)."""


# --- strategic merge patch ------------------------------------------------------


def strategic_merge(original: dict, patch: dict, schema: dict) -> dict:
    """Apply a strategic merge patch to original, as the Kubernetes API server does.

    Ordering follows upstream, not intuition: merged list items named by the patch (or by
    its $setElementOrder list) take that order, and items only the live object has keep
    their place relative to them. So a new item patched into [a, b] without an order
    list lands first, exactly as `kubectl patch` does on a real cluster.
    """
    if not isinstance(patch, dict):
        raise PatchError(f"a strategic merge patch must be a JSON object, not {_kind(patch)}")
    return _merge_map(copy.deepcopy(original), patch, schema or {})


def _merge_map(live: dict | None, patch: dict, fields: dict) -> dict:
    """Merge patch into live (which this call may reuse: callers pass copies)."""
    directive = patch.get(DIRECTIVE, "merge")
    if directive == "delete":
        return {}
    if directive == "replace":
        live = None
    elif directive != "merge":
        raise PatchError(f'invalid $patch directive {directive!r} in a map: use "replace", '
                         f'"delete" or "merge"')
    out = live if isinstance(live, dict) else {}
    _retain_keys(out, patch)

    orders: dict[str, list] = {}
    removals: dict[str, list] = {}
    names: dict[str, None] = {}  # every field the patch touches, in patch order
    for key, value in patch.items():
        if key in (DIRECTIVE, RETAIN_KEYS):
            continue
        if key.startswith(SET_ORDER):
            name = _directive_field(key, SET_ORDER)
            orders[name] = _list_arg(key, value)
        elif key.startswith(DELETE_FROM):
            name = _directive_field(key, DELETE_FROM)
            removals[name] = _list_arg(key, value)
        elif key.startswith("$"):
            raise PatchError(f"unknown patch directive {key!r}")
        else:
            name = key
        names[name] = None

    for name in names:
        value = patch.get(name, _MISSING)
        if value is None:
            out.pop(name, None)
            continue
        spec = _spec_for(fields.get(name) or {}, orders.get(name))
        merged = _merge_field(name, out.get(name, _MISSING), value, spec,
                              orders.get(name), removals.get(name))
        if merged is not _MISSING:
            out[name] = merged
    return out


def _merge_field(name: str, current: Any, value: Any, spec: dict,
                 order: list | None, removals: list | None) -> Any:
    """The new value of one field; _MISSING when the field stays absent."""
    if isinstance(value, dict):
        return _merge_map(current if isinstance(current, dict) else None, value,
                          spec.get("fields") or {})
    if value is not _MISSING and not isinstance(value, list):
        return value  # a scalar replaces whatever was there
    live = current if isinstance(current, list) else None
    if spec.get("key"):
        if removals is not None:
            raise PatchError(f"{DELETE_FROM}{name}: {name} is a list of objects; delete its "
                             f'items with {{"{DIRECTIVE}": "delete"}}')
        return _merge_keyed(name, live, value, spec, order)
    if spec.get("set") or removals is not None:
        return _merge_set(name, live, value, order, removals)
    if value is _MISSING:
        return current
    return _without_nulls(value)


def _spec_for(spec: dict, order: list | None) -> dict:
    """Fill a schema gap from $setElementOrder, which kubectl only sends for merging lists.

    kubectl computes patches from its compiled-in Go structs, so it can name a merging
    list kwire's schema does not know; replacing that list with the patch's partial
    items would lose data. The order list's items reveal the merge key ([{name: x}]) or
    that the list is a set of primitives.
    """
    if spec.get("key") or spec.get("set") or not order:
        return spec
    if all(isinstance(item, dict) and len(item) == 1 for item in order):
        keys = {next(iter(item)) for item in order}
        if len(keys) == 1:
            return {**spec, "key": keys.pop()}
    elif not any(isinstance(item, (dict, list)) for item in order):
        return {**spec, "set": True}
    return spec


def _merge_keyed(name: str, live: list | None, value: Any, spec: dict,
                 order: list | None) -> Any:
    if live is None and value is _MISSING:
        return _MISSING
    key = spec["key"]
    fields = spec.get("fields") or {}
    items, deletions, replace = _split_keyed_patch(name, [] if value is _MISSING else value, key)
    live = live or []
    for item in live:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"{name}: an existing item has no merge key {key!r}: {item!r}")

    def ident(item: dict) -> Any:
        return item[key]

    if replace:
        merged = [_merge_map(None, item, fields) for item in items]
    else:
        merged = [item for item in live if item[key] not in deletions]
        for item in items:
            at = next((i for i, m in enumerate(merged) if m[key] == item[key]), None)
            if at is None:
                merged.append(_merge_map(None, item, fields))
            else:
                merged[at] = _merge_map(merged[at], item, fields)
        merged = _reorder(merged, items, live, ident)
    if order is not None:
        for entry in order:
            if not isinstance(entry, dict) or key not in entry:
                raise PatchError(f"{SET_ORDER}{name}: every entry needs the merge key {key!r}, "
                                 f"got {entry!r}")
        _check_order(name, items, order, ident)
        merged = _reorder(merged, order, live, ident)
    return merged


def _split_keyed_patch(name: str, value: list, key: str) -> tuple[list, list, bool]:
    """Separate a keyed patch list into items to merge, keys to delete, and replace."""
    items, deletions, replace = [], [], False
    for item in value:
        if not isinstance(item, dict):
            raise PatchError(f"{name}: items must be objects merged by {key!r}, got {item!r}")
        directive = item.get(DIRECTIVE, "merge")
        if directive == "replace":
            replace = True
            continue
        if key not in item:
            raise PatchError(f"{name}: item {item!r} does not contain the merge key {key!r}")
        if directive == "delete":
            deletions.append(item[key])
        elif directive == "merge":
            items.append(item)
        else:
            raise PatchError(f'{name}: invalid $patch directive {directive!r} in a list item: '
                             f'use "delete", "replace" or "merge"')
    return items, deletions, replace


def _merge_set(name: str, live: list | None, value: Any, order: list | None,
               removals: list | None) -> Any:
    if live is None and value is _MISSING:
        return _MISSING
    items = [] if value is _MISSING else value
    for item in [*items, *(order or []), *(removals or [])]:
        if isinstance(item, (dict, list)):
            raise PatchError(f"{name}: a merged list of primitives cannot hold {item!r}")
    live = live or []
    merged: list = []
    for item in [*live, *items]:
        if item not in merged:
            merged.append(item)
    if order is None:
        merged = _reorder(merged, items, live, _same)
    else:
        _check_order(name, items, order, _same)
        merged = _reorder(merged, order, live, _same)
    return [item for item in merged if item not in (removals or [])]


def _same(item: Any) -> Any:
    return item


def _reorder(items: list, wanted: list, live: list, ident: Callable[[Any], Any]) -> list:
    """Order merged items the way apimachinery's normalizeElementOrder does.

    Items named in `wanted` come in that order; the others keep their live order and are
    slotted in before the first named item that the live list had after them.
    """
    wanted_ids = [ident(w) for w in wanted]
    live_ids = [ident(x) for x in live]

    def live_index(item: Any) -> int:
        ident_ = ident(item)
        return live_ids.index(ident_) if ident_ in live_ids else -1

    named = sorted((x for x in items if ident(x) in wanted_ids),
                   key=lambda x: wanted_ids.index(ident(x)))
    rest = sorted((x for x in items if ident(x) not in wanted_ids),
                  key=lambda x: live_index(x) if live_index(x) >= 0 else len(live_ids))
    out = []
    i = j = 0
    while i < len(rest) or j < len(named):
        if j == len(named) or (i < len(rest) and 0 <= live_index(rest[i]) < live_index(named[j])):
            out.append(rest[i])
            i += 1
        else:
            out.append(named[j])
            j += 1
    return out


def _check_order(name: str, items: list, order: list, ident: Callable[[Any], Any]) -> None:
    """The patch items must appear in $setElementOrder, in the same relative order."""
    if not items or not order:
        return
    remaining = iter([ident(entry) for entry in order])
    if not all(ident(item) in remaining for item in items):
        raise PatchError(f"the order of the items in {name} does not match {SET_ORDER}{name}")


def _retain_keys(out: dict, patch: dict) -> None:
    """$retainKeys: drop every key of out that the list does not name.

    Honoured wherever it appears, as upstream does; the schema's retainKeys flag only
    tells create_two_way_merge where to emit it.
    """
    if RETAIN_KEYS not in patch:
        return
    keep = patch[RETAIN_KEYS]
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise PatchError(f"{RETAIN_KEYS} must be a list of field names, got {keep!r}")
    for key, value in patch.items():
        if value is not None and not key.startswith("$") and key not in keep:
            raise PatchError(f"invalid {RETAIN_KEYS}: the patch sets {key!r}, which it does "
                             f"not list")
    for key in [k for k in out if k not in keep]:
        del out[key]


def _directive_field(key: str, prefix: str) -> str:
    name = key[len(prefix):]
    if not name or "/" in name:
        raise PatchError(f"invalid patch directive {key!r}")
    return name


def _list_arg(key: str, value: Any) -> list:
    if not isinstance(value, list):
        raise PatchError(f"{key} must be a list, got {_kind(value)}")
    return value


def _without_nulls(value: Any) -> Any:
    """A copy of a patch value stored whole. Nulls go, as Go's typed round trip drops them."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number")


# --- computing a strategic merge patch ------------------------------------------------


def create_two_way_merge(original: dict, modified: dict, schema: dict) -> dict:
    """The strategic merge patch that turns original into modified (kubectl's 2-way diff).

    strategic_merge(original, patch, schema) == modified. Keyed lists get
    {"$patch": "delete"} items and a $setElementOrder list, sets get
    $deleteFromPrimitiveList, retainKeys maps get $retainKeys, removed keys get null.
    """
    return _diff_map(original, modified, schema or {}, retain=False)


def _diff_map(original: dict, modified: dict, fields: dict, retain: bool) -> dict:
    patch: dict = {}
    for key, new in modified.items():
        spec = fields.get(key) or {}
        if key not in original:
            patch[key] = copy.deepcopy(new)
            continue
        old = original[key]
        if isinstance(old, dict) and isinstance(new, dict):
            sub = _diff_map(old, new, spec.get("fields") or {}, bool(spec.get("retainKeys")))
            if sub:
                patch[key] = sub
        elif isinstance(old, list) and isinstance(new, list) and old and spec.get("key"):
            _diff_keyed(key, old, new, spec, patch)
        elif isinstance(old, list) and isinstance(new, list) and old and spec.get("set"):
            _diff_set(key, old, new, patch)
        elif old != new:
            patch[key] = copy.deepcopy(new)
    for key in original:
        if key not in modified:
            patch[key] = None
    keep = sorted(k for k, v in modified.items() if v is not None)
    if retain and patch and keep:
        patch[RETAIN_KEYS] = keep
    return patch


def _diff_keyed(name: str, old: list, new: list, spec: dict, patch: dict) -> None:
    key = spec["key"]
    for item in [*old, *new]:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"{name}: item {item!r} does not contain the merge key {key!r}")
    by_key = {item[key]: item for item in old}
    new_keys = [item[key] for item in new]
    changes = []
    for item in new:
        if item[key] not in by_key:
            changes.append(copy.deepcopy(item))
            continue
        sub = _diff_map(by_key[item[key]], item, spec.get("fields") or {},
                        bool(spec.get("retainKeys")))
        if sub:
            changes.append({**sub, key: item[key]})
    changes += [{DIRECTIVE: "delete", key: item[key]} for item in old if item[key] not in new_keys]
    if changes:
        patch[name] = changes
    if new and (changes or [item[key] for item in old] != new_keys):
        patch[SET_ORDER + name] = [{key: k} for k in new_keys]


def _diff_set(name: str, old: list, new: list, patch: dict) -> None:
    added = _unique(item for item in new if item not in old)
    removed = _unique(item for item in old if item not in new)
    if added:
        patch[name] = added
    if removed:
        patch[DELETE_FROM + name] = removed
    if new and (removed or old != new):
        patch[SET_ORDER + name] = list(new)


def _unique(items) -> list:
    out: list = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


# --- JSON merge patch, JSON patch ------------------------------------------------------


def merge_patch(original: dict, patch: dict) -> dict:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        raise PatchError(f"a merge patch must be a JSON object, not {_kind(patch)}")
    return _rfc7386(original, patch)


def _rfc7386(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _rfc7386(out.get(key), value)
    return out


def json_patch(original: dict, ops: list) -> dict:
    """RFC 6902 operations applied to a copy of original."""
    if not isinstance(ops, list):
        raise PatchError(f"a JSON patch must be a JSON array of operations, not {_kind(ops)}")
    try:
        result = jsonpatch.JsonPatch(ops).apply(original)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise PatchError(f"the JSON patch could not be applied: {exc}") from exc
    if not isinstance(result, dict):
        raise PatchError(f"the JSON patch must leave an object, not {_kind(result)}")
    return result


# --- server-side apply ----------------------------------------------------------------


def apply_patch(original: dict, applied: dict, schema: dict) -> dict:
    """Merge an applied configuration into the live object (server-side apply, minus
    field ownership).

    Maps merge, keyed lists merge item by item on their key (live order, new items
    appended), sets are unioned, other lists and scalars take the applied value. Fields
    the configuration omits, or sets to null, are left alone: only ownership tracking
    could tell which of them to remove.
    """
    if not isinstance(applied, dict):
        raise PatchError(f"an apply configuration must be an object, not {_kind(applied)}")
    return _apply_map(copy.deepcopy(original), applied, schema or {})


def _apply_map(live: dict | None, applied: dict, fields: dict) -> dict:
    out = live if isinstance(live, dict) else {}
    for key, value in applied.items():
        if value is None:
            continue
        spec = fields.get(key) or {}
        current = out.get(key)
        if isinstance(value, dict):
            out[key] = _apply_map(current, value, spec.get("fields") or {})
        elif isinstance(value, list) and spec.get("key"):
            out[key] = _apply_keyed(key, current if isinstance(current, list) else [], value, spec)
        elif isinstance(value, list) and spec.get("set"):
            out[key] = _unique([*(current if isinstance(current, list) else []), *value])
        else:
            out[key] = _without_nulls(value)
    return out


def _apply_keyed(name: str, live: list, applied: list, spec: dict) -> list:
    key = spec["key"]
    fields = spec.get("fields") or {}
    merged = list(live)
    for item in applied:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"{name}: item {item!r} does not contain the key {key!r}")
        at = next((i for i, m in enumerate(merged)
                   if isinstance(m, dict) and m.get(key, _MISSING) == item[key]), None)
        if at is None:
            merged.append(_apply_map(None, item, fields))
        else:
            merged[at] = _apply_map(merged[at], item, fields)
    return merged
