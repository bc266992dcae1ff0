"""The generic registry: create, read, update, patch, delete and watch for every kind.

This is the part of the API server between HTTP and the store (upstream's
genericregistry.Store plus the strategies of each kind): it prepares objects
(server-set metadata, defaults, validation, allocation), enforces preconditions,
and implements graceful deletion and finalizers. Everything a kind does
differently comes from its registry entry; the few behaviours that are not data
(Service address allocation, Pod binding, Namespace lifecycle) sit in small,
named functions below.
"""
from __future__ import annotations

import base64
import copy
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from kwire.api import errors, schema, smp
from kwire.api.allocators import ServiceAllocator, addresses
from kwire.api.errors import APIError
from kwire.api.registry import Kind, Registry
from kwire.api.selectors import FieldSelector, LabelSelector, selector_from_object
from kwire.store import AlreadyExists, Conflict, Expired, NotFound, Store
from kwire.timestamps import format_time

GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
UNDELETABLE_NAMESPACES = ("default", "kube-system", "kube-public")
PATCH_RETRIES = 8


@dataclass
class Query:
    """What a list or watch asks for."""

    namespace: str | None = None
    label_selector: LabelSelector | None = None
    field_selector: FieldSelector | None = None
    limit: int = 0
    continue_token: str | None = None
    resource_version: str | None = None


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"
    field_manager: str | None = None
    force: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    preconditions: dict | None = None
    dry_run: bool = False


def key_prefix(kind: Kind, namespace: str | None) -> str:
    base = f"/registry/{kind.group or 'core'}/{kind.plural}/"
    if kind.namespaced and namespace:
        return f"{base}{namespace}/"
    return base


def object_key(kind: Kind, namespace: str | None, name: str) -> str:
    return key_prefix(kind, namespace) + name


def _rv(obj: dict) -> int:
    return int(obj["metadata"]["resourceVersion"])


def _at(obj: dict, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _encode_continue(rev: int, key: str) -> str:
    raw = json.dumps({"rv": rev, "start": key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError):
        raise errors.bad_request("continue key is not valid: illegal base64 data")


class Resources:
    def __init__(self, store: Store, registry: Registry, allocator: ServiceAllocator,
                 rng: random.Random | None = None):
        self.store = store
        self.registry = registry
        self.allocator = allocator
        self.rng = rng or random.Random()
        self._ns_kind = registry.resource("", "v1", "namespaces")
        self._svc_kind = registry.resource("", "v1", "services")
        self._pod_kind = registry.resource("", "v1", "pods")
        self._service_addresses: _AddressIndex | None = None
        """Which Service holds each ClusterIP and nodePort, loaded once and kept by this
        process's writes, so a create neither reads nor scans every Service (with 10,000
        Services, reading them all made each create cost a third of a second)."""

    # --- reads -----------------------------------------------------------------

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict:
        obj = await self.store.get(object_key(kind, namespace, name))
        if obj is None:
            raise errors.not_found(kind.plural, name, kind.group)
        return obj

    async def list(self, kind: Kind, q: Query) -> tuple[list[dict], dict]:
        """Matching objects and the list metadata (resourceVersion, continue)."""
        prefix = key_prefix(kind, q.namespace)
        revision, start = 0, None
        if q.continue_token:
            revision, start = _decode_continue(q.continue_token)
        if q.field_selector is not None:
            name = q.field_selector.exact("metadata.name")
            if name is not None and (q.namespace is not None or not kind.namespaced):
                obj = await self.store.get(prefix + name)
                items = [obj] if obj is not None and self._matches(kind, obj, q) else []
                return items, {"resourceVersion": str(self.store.revision)}
        out: list[dict] = []
        page = q.limit if q.limit > 0 else 0
        while True:
            try:
                items, revision, next_key = await self.store.list(
                    prefix, limit=page, continue_from=start, revision=revision)
            except Expired as e:
                raise errors.expired(
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter, or use "
                    f"the continue token in this response to retrieve the remainder of the "
                    f"results. ({e})")
            for i, o in enumerate(items):
                if not self._matches(kind, o, q):
                    continue
                out.append(o)
                if page and len(out) == page:
                    after = items[i + 1]["metadata"] if i + 1 < len(items) else None
                    resume = (key_prefix(kind, after.get("namespace")) + after["name"]
                              if after else next_key)
                    if resume is None:
                        return out, {"resourceVersion": str(revision)}
                    return out, {"resourceVersion": str(revision),
                                 "continue": _encode_continue(revision, resume)}
            if not page or next_key is None:
                return out, {"resourceVersion": str(revision)}
            start = next_key

    def _matches(self, kind: Kind, obj: dict, q: Query) -> bool:
        if q.label_selector is not None and not q.label_selector.matches(
                obj.get("metadata", {}).get("labels")):
            return False
        if q.field_selector is not None and not q.field_selector.matches_obj(obj,
                                                                             kind.field_labels):
            return False
        return True

    async def watch(self, kind: Kind, q: Query) -> "WatchStream":
        prefix = key_prefix(kind, q.namespace)
        initial: list[dict] = []
        rv = q.resource_version
        if rv in (None, "", "0"):
            items, revision, _ = await self.store.list(prefix)
            initial = [o for o in items if self._matches(kind, o, q)]
        else:
            try:
                revision = int(rv)
            except ValueError:
                raise errors.bad_request(f"invalid resource version: {rv}")
        try:
            w = self.store.watch(prefix, revision)
        except Expired as e:
            raise errors.expired(str(e))
        return WatchStream(self, kind, q, w, initial)

    # --- create ------------------------------------------------------------------

    def decode(self, kind: Kind, body: Any, opts: WriteOptions) -> dict:
        """Check apiVersion/kind and drop unknown fields per fieldValidation."""
        if not isinstance(body, dict):
            raise errors.bad_request(f"{kind.kind} in version \"{kind.version}\" cannot be "
                                     f"handled as a {kind.kind}: body must be a JSON object")
        api_version = body.get("apiVersion", kind.api_version)
        if body.get("kind", kind.kind) != kind.kind or api_version != kind.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({kind.api_version})" if api_version != kind.api_version else
                f"{body.get('kind')} in version \"{kind.version}\" cannot be handled as a "
                f"{kind.kind}: the kind in the data does not match the expected kind")
        return self.strict(kind, body, opts)

    def strict(self, kind: Kind, body: dict, opts: WriteOptions) -> dict:
        root = schema.root_type(kind.kind, kind.api_version)
        if root is None:
            return body
        out, res = schema.decode(body, root)
        if res.type_error:
            raise errors.bad_request(f'{kind.kind} in version "{kind.version}" cannot be '
                                     f"handled as a {kind.kind}: {res.type_error}")
        if res.unknown:
            if opts.field_validation == "Strict":
                shown = ", ".join(f'unknown field "{u}"' for u in res.unknown)
                raise errors.bad_request(f'{kind.kind} in version "{kind.version}" cannot be '
                                         f"handled as a {kind.kind}: strict decoding error: "
                                         f"{shown}")
            if opts.field_validation == "Warn":
                opts.warnings.extend(f'unknown field "{u}"' for u in res.unknown)
        out["apiVersion"], out["kind"] = kind.api_version, kind.kind
        return out

    async def create(self, kind: Kind, namespace: str | None, body: Any,
                     opts: WriteOptions) -> dict:
        obj = self.decode(kind, body, opts)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if kind.namespaced:
            ns = meta.get("namespace") or namespace
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            meta["namespace"] = ns
            if ns:
                await self._check_namespace_open(ns)
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                self.rng.choice(GENERATE_CHARS) for _ in range(5))
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "managedFields", "selfLink"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = format_time()
        if kind.spec_paths:
            meta["generation"] = 1
        if kind.status_subresource and not kind.keep_status_on_create:
            obj.pop("status", None)
        kind.default(obj)
        causes = kind.validate(obj)
        if causes:
            raise errors.invalid(kind.kind, meta.get("name") or "", causes, kind.group)
        await self._admit(kind, obj, None)
        if opts.dry_run:
            meta.setdefault("resourceVersion", "")
            return obj
        key = object_key(kind, meta.get("namespace"), meta["name"])
        try:
            return self._track(kind, key, await self.store.create(key, obj))
        except AlreadyExists:
            raise errors.already_exists(kind.plural, meta["name"], kind.group)

    async def _check_namespace_open(self, ns: str) -> None:
        nso = await self.store.get(object_key(self._ns_kind, None, ns))
        if nso is None:
            raise errors.not_found("namespaces", ns)
        if nso.get("metadata", {}).get("deletionTimestamp"):
            raise APIError(403, f"unable to create new content in namespace {ns} because it "
                           "is being terminated", "Forbidden",
                           {"name": ns, "kind": "namespaces",
                            "causes": [{"reason": "NamespaceTerminating",
                                        "message": f"namespace {ns} is being terminated",
                                        "field": "metadata.namespace"}]})

    async def _admit(self, kind: Kind, obj: dict, old: dict | None) -> None:
        """Kind behaviour that needs other objects: Service address allocation."""
        if kind is self._svc_kind:
            if self._service_addresses is None:
                listed, _, _ = await self.store.list(key_prefix(kind, None))
                index = _AddressIndex()
                for o in listed:
                    index.put(object_key(kind, o["metadata"].get("namespace"),
                                         o["metadata"]["name"]), o)
                self._service_addresses = index
            meta = obj["metadata"]
            me = object_key(kind, meta.get("namespace"), meta["name"]) if meta.get("name") \
                else None
            causes = self.allocator.allocate(
                obj, old, _HeldByOthers(self._service_addresses.ips, me),
                _HeldByOthers(self._service_addresses.ports, me))
            if causes:
                raise errors.invalid(kind.kind, obj["metadata"]["name"], causes, kind.group)

    def _track(self, kind: Kind, key: str, stored: dict, deleted: bool = False) -> dict:
        """Keep _service_addresses in step with a write this process just made (the only
        writer of its store)."""
        if kind is self._svc_kind and self._service_addresses is not None:
            self._service_addresses.put(key, None if deleted else stored)
        return stored

    # --- update and patch -----------------------------------------------------------

    async def update(self, kind: Kind, namespace: str | None, name: str, body: Any,
                     opts: WriteOptions, subresource: str | None = None) -> tuple[dict, bool]:
        """PUT. Returns (object, created)."""
        new = self.decode(kind, body, opts)
        meta = new.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(f"the name of the object ({meta['name']}) does not match "
                                     f"the name on the URL ({name})")
        if kind.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the "
                                     "namespace sent on the request")
        old = await self.store.get(object_key(kind, namespace, name))
        if old is None:
            raise errors.not_found(kind.plural, name, kind.group)
        want = meta.get("resourceVersion")
        if want and want != old["metadata"]["resourceVersion"]:
            raise errors.conflict(kind.plural, name, kind.group)
        if meta.get("uid") and meta["uid"] != old["metadata"].get("uid"):
            raise errors.conflict(kind.plural, name, kind.group,
                                  f"Precondition failed: UID in precondition: {meta['uid']}, "
                                  f"UID in object meta: {old['metadata'].get('uid')}")
        return await self._write_update(kind, old, new, opts, subresource), False

    async def patch(self, kind: Kind, namespace: str | None, name: str, patch_type: str,
                    patch: Any, opts: WriteOptions,
                    subresource: str | None = None) -> tuple[dict, bool]:
        key = object_key(kind, namespace, name)
        for _ in range(PATCH_RETRIES):
            old = await self.store.get(key)
            if old is None:
                if patch_type == "apply":
                    body = dict(patch) if isinstance(patch, dict) else patch
                    if isinstance(body, dict):
                        body.setdefault("metadata", {}).setdefault("name", name)
                    return await self.create(kind, namespace, body, opts), True
                raise errors.not_found(kind.plural, name, kind.group)
            patched = self._apply_patch(kind, old, patch_type, patch)
            want = (patch.get("metadata") or {}).get("resourceVersion") \
                if isinstance(patch, dict) and isinstance(patch.get("metadata"), dict) else None
            if want and want != old["metadata"]["resourceVersion"]:
                raise errors.conflict(kind.plural, name, kind.group)
            pmeta = patched.setdefault("metadata", {})
            for field_, what in (("name", "name"), ("namespace", "namespace")):
                if pmeta.get(field_) != old["metadata"].get(field_):
                    raise errors.bad_request(
                        f"the {what} of the object ({pmeta.get(field_)}) does not match the "
                        f"{what} on the URL ({old['metadata'].get(field_)})")
            if pmeta.get("uid") != old["metadata"].get("uid"):
                raise errors.invalid(kind.kind, name, [errors.Cause(
                    "metadata.uid", "FieldValueInvalid",
                    f'Invalid value: "{pmeta.get("uid")}": field is immutable')], kind.group)
            pmeta["resourceVersion"] = old["metadata"]["resourceVersion"]
            new = self.strict(kind, patched, opts)
            try:
                return await self._write_update(kind, old, new, opts, subresource), False
            except errors.APIError as e:
                if e.code == 409 and e.reason == "Conflict" and not want:
                    continue
                raise
        raise errors.conflict(kind.plural, name, kind.group)

    def _apply_patch(self, kind: Kind, old: dict, patch_type: str, patch: Any) -> dict:
        try:
            if patch_type == "json":
                if not isinstance(patch, list):
                    raise smp.PatchError("a JSON patch must be a list of operations")
                return smp.json_patch(old, patch)
            if not isinstance(patch, dict):
                raise smp.PatchError("the patch must be a JSON object")
            if patch_type == "merge":
                return smp.merge_patch(old, patch)
            if patch_type == "strategic":
                return smp.strategic_merge(old, patch, kind.merge_schema)
            if patch_type == "apply":
                return smp.apply_patch(old, patch, kind.merge_schema)
        except smp.PatchError as e:
            raise errors.APIError(422 if patch_type == "json" else 400, str(e))
        raise APIError(415, f"the server does not support the patch type {patch_type}",
                       "UnsupportedMediaType")

    async def _write_update(self, kind: Kind, old: dict, new: dict, opts: WriteOptions,
                            subresource: str | None) -> dict:
        name = old["metadata"]["name"]
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status", {})
            new = merged
        else:
            if kind.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            old_meta = old["metadata"]
            for k in ("uid", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "name", "namespace", "generation"):
                if k in old_meta:
                    meta[k] = old_meta[k]
                else:
                    meta.pop(k, None)
            if subresource == "finalize":
                meta["finalizers"] = old_meta.get("finalizers", [])
                merged = copy.deepcopy(old)
                merged.setdefault("spec", {})["finalizers"] = \
                    new.get("spec", {}).get("finalizers", [])
                new = merged
            elif kind is self._ns_kind:
                new.setdefault("spec", {})["finalizers"] = \
                    old.get("spec", {}).get("finalizers", [])
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if old["metadata"].get("deletionTimestamp") and subresource is None:
            added = set(new["metadata"].get("finalizers") or []) - set(
                old["metadata"].get("finalizers") or [])
            if added:
                causes = [errors.Cause("metadata.finalizers", "FieldValueForbidden",
                                       "Forbidden: no new finalizers can be added if the "
                                       "object is being deleted, found new finalizers "
                                       + json.dumps(sorted(added)))]
                raise errors.invalid(kind.kind, name, causes, kind.group)
        if subresource is None:
            kind.prepare_update(new, old)
        kind.default(new)
        causes = kind.validate(new) + kind.validate_update(new, old)
        if causes:
            raise errors.invalid(kind.kind, name, causes, kind.group)
        if subresource is None:
            await self._admit(kind, new, old)
            if any(_at(new, p) != _at(old, p) for p in kind.spec_paths):
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if new == old:
            return old
        if opts.dry_run:
            return new
        key = object_key(kind, old["metadata"].get("namespace"), name)
        if self._finished(kind, new):
            try:
                return self._track(kind, key, await self.store.delete(key, _rv(old)), True)
            except (Conflict, NotFound):
                raise errors.conflict(kind.plural, name, kind.group)
        try:
            return self._track(kind, key, await self.store.update(key, new, _rv(old)))
        except Conflict:
            raise errors.conflict(kind.plural, name, kind.group)
        except NotFound:
            raise errors.not_found(kind.plural, name, kind.group)

    def _finished(self, kind: Kind, obj: dict) -> bool:
        """Deleting an object completes once it has no finalizers left (and, for a
        graceful deletion, once the grace period was cut to zero)."""
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return False
        if self._namespace_finalizers(kind, obj):
            return False
        return not meta.get("deletionGracePeriodSeconds")

    def _namespace_finalizers(self, kind: Kind, obj: dict) -> list[str]:
        """A Namespace's spec.finalizers: they hold its deletion as metadata.finalizers do."""
        return (obj.get("spec") or {}).get("finalizers") or [] if kind is self._ns_kind else []

    # --- binding -------------------------------------------------------------------

    async def bind(self, kind: Kind, namespace: str, name: str, binding: Any) -> None:
        if not isinstance(binding, dict):
            raise errors.bad_request("binding must be a JSON object")
        target = (binding.get("target") or {})
        node = target.get("name")
        if not node:
            raise errors.invalid("Binding", name, [errors.Cause(
                "target.name", "FieldValueRequired", "Required value")])
        key = object_key(kind, namespace, name)
        for _ in range(PATCH_RETRIES):
            pod = await self.store.get(key)
            if pod is None:
                raise errors.not_found(kind.plural, name)
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("pods/binding", name, why="pod is being deleted, cannot "
                                      "be assigned to a host")
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise errors.conflict("pods/binding", name, why=f"pod {name} is already "
                                      f'assigned to node "{spec["nodeName"]}"')
            spec["nodeName"] = node
            conds = [c for c in pod.setdefault("status", {}).get("conditions", [])
                     if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": format_time()})
            pod["status"]["conditions"] = conds
            try:
                await self.store.update(key, pod, _rv(pod))
                return
            except Conflict:
                continue
        raise errors.conflict(kind.plural, name)

    # --- scale ----------------------------------------------------------------------

    async def get_scale(self, kind: Kind, namespace: str, name: str) -> dict:
        return _scale_of(await self.get(kind, namespace, name))

    async def update_scale(self, kind: Kind, namespace: str, name: str, patch_type: str | None,
                           body: Any, opts: WriteOptions) -> dict:
        """PUT (patch_type None) or PATCH of autoscaling/v1 Scale: only spec.replicas of
        the object changes."""
        for _ in range(PATCH_RETRIES):
            obj = await self.get(kind, namespace, name)
            scale = _scale_of(obj)
            new = body if patch_type is None else self._apply_patch(kind, scale, patch_type, body)
            if not isinstance(new, dict):
                raise errors.bad_request("Scale must be a JSON object")
            want = (new.get("metadata") or {}).get("resourceVersion")
            if patch_type is None and want and want != obj["metadata"]["resourceVersion"]:
                raise errors.conflict(kind.plural, name, kind.group)
            replicas = (new.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid("Scale", name, [errors.Cause(
                    "spec.replicas", "FieldValueInvalid",
                    f"Invalid value: {json.dumps(replicas)}: must be greater than or equal "
                    "to 0")], "autoscaling")
            updated = copy.deepcopy(obj)
            updated["spec"]["replicas"] = replicas
            try:
                return _scale_of(await self._write_update(kind, obj, updated, opts, None))
            except errors.APIError as e:
                if e.code == 409 and e.reason == "Conflict" and not want:
                    continue
                raise
        raise errors.conflict(kind.plural, name, kind.group)

    # --- delete ---------------------------------------------------------------------

    async def delete(self, kind: Kind, namespace: str | None, name: str,
                     opts: DeleteOptions) -> dict:
        key = object_key(kind, namespace, name)
        for _ in range(PATCH_RETRIES):
            obj = await self.store.get(key)
            if obj is None:
                raise errors.not_found(kind.plural, name, kind.group)
            self._check_preconditions(kind, obj, opts.preconditions)
            if kind is self._ns_kind and name in UNDELETABLE_NAMESPACES:
                raise APIError(403, f'namespaces "{name}" is forbidden: this namespace may not '
                               "be deleted", "Forbidden", {"name": name, "kind": "namespaces"})
            new = self._deletion_plan(kind, obj, opts)
            if opts.dry_run:
                return new or obj
            try:
                if new is None:
                    return self._track(kind, key, await self.store.delete(key, _rv(obj)), True)
                if new == obj:
                    return obj
                return self._track(kind, key, await self.store.update(key, new, _rv(obj)))
            except Conflict:
                continue
            except NotFound:
                raise errors.not_found(kind.plural, name, kind.group)
        raise errors.conflict(kind.plural, name, kind.group)

    def _check_preconditions(self, kind: Kind, obj: dict, pre: dict | None) -> None:
        if not pre:
            return
        meta = obj["metadata"]
        name = meta["name"]
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(kind.plural, name, kind.group,
                                  f"Precondition failed: UID in precondition: {pre['uid']}, "
                                  f"UID in object meta: {meta.get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise errors.conflict(kind.plural, name, kind.group,
                                  "Precondition failed: ResourceVersion in precondition: "
                                  f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                  f"{meta['resourceVersion']}")

    def _deletion_plan(self, kind: Kind, obj: dict, opts: DeleteOptions) -> dict | None:
        """None to remove the object now, else the object marked for deletion."""
        policy = opts.propagation_policy
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.invalid("DeleteOptions", "", [errors.Cause(
                "propagationPolicy", "FieldValueNotSupported",
                f'Unsupported value: "{policy}": supported values: "Foreground", '
                '"Background", "Orphan", "nil"')])
        grace = self._grace_period(kind, obj, opts.grace_period_seconds)
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        elif policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        ns_pending = self._namespace_finalizers(kind, obj)
        if not finalizers and not grace and not ns_pending:
            return None
        new = copy.deepcopy(obj)
        meta = new["metadata"]
        if meta.get("deletionTimestamp"):
            current = meta.get("deletionGracePeriodSeconds") or 0
            if grace is not None and grace < current:
                meta["deletionGracePeriodSeconds"] = grace
                meta["deletionTimestamp"] = format_time(
                    datetime.now(timezone.utc) + timedelta(seconds=grace))
            if not meta.get("finalizers") and not meta.get("deletionGracePeriodSeconds") \
                    and not ns_pending:
                return None
            return new
        meta["deletionTimestamp"] = format_time(
            datetime.now(timezone.utc) + timedelta(seconds=grace or 0))
        meta["deletionGracePeriodSeconds"] = grace or 0
        if finalizers:
            meta["finalizers"] = finalizers
        if kind is self._ns_kind:
            new.setdefault("status", {})["phase"] = "Terminating"
        return new

    def _grace_period(self, kind: Kind, obj: dict, asked: int | None) -> int | None:
        """Pods on a node end gracefully (the kubelet finishes them); others at once."""
        if kind is not self._pod_kind:
            return None
        if asked is not None and asked <= 0:
            return None
        spec, status = obj.get("spec", {}), obj.get("status", {})
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return None
        if asked is None:
            asked = spec.get("terminationGracePeriodSeconds", 30)
        return asked or None

    async def delete_collection(self, kind: Kind, q: Query, opts: DeleteOptions) -> list[dict]:
        items, _ = await self.list(kind, Query(namespace=q.namespace,
                                               label_selector=q.label_selector,
                                               field_selector=q.field_selector))
        out = []
        for o in items:
            try:
                out.append(await self.delete(kind, o["metadata"].get("namespace"),
                                             o["metadata"]["name"], opts))
            except APIError as e:
                if e.code != 404:
                    raise
        return out

    # --- bootstrap ------------------------------------------------------------------

    async def ensure(self, kind: Kind, obj: dict) -> dict:
        """Create obj unless it exists (start-up objects: namespaces, kubernetes Service)."""
        meta = obj["metadata"]
        existing = await self.store.get(object_key(kind, meta.get("namespace"), meta["name"]))
        if existing is not None:
            return existing
        try:
            return await self.create(kind, meta.get("namespace"), obj, WriteOptions())
        except APIError as e:
            if e.code == 403:  # its namespace is terminating: nothing to restore into
                return obj
            raise


def _scale_of(obj: dict) -> dict:
    meta = obj["metadata"]
    sel = (obj.get("spec") or {}).get("selector")
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": str(selector_from_object(sel)) if sel else ""}}


class WatchStream:
    """A Kubernetes watch over one kind: synthetic ADDED events for the initial
    state (resourceVersion unset or 0), then store events, filtered by the
    selectors; an object that stops matching is reported as DELETED."""

    def __init__(self, res: Resources, kind: Kind, q: Query, w: Any, initial: list[dict]):
        self.res, self.kind, self.q, self.w = res, kind, q, w
        self.initial = initial

    def close(self) -> None:
        self.w.close()

    async def next(self) -> tuple[str, dict] | None:
        """The next event to send; None when the store ends the watch. A watcher
        overtaken by compaction gets an ERROR event with a 410 Status, after which
        the handler ends the stream and the client re-lists."""
        if self.initial:
            return "ADDED", self.initial.pop(0)
        while True:
            try:
                ev = await self.w.__anext__()
            except StopAsyncIteration:
                return None
            except Expired as e:
                return "ERROR", errors.expired(str(e)).status()
            now_m = ev.type != "DELETED" and self.res._matches(self.kind, ev.value, self.q)
            was_m = ev.prev is not None and self.res._matches(self.kind, ev.prev, self.q)
            if ev.type == "ADDED" and now_m:
                return "ADDED", ev.value
            if ev.type == "MODIFIED":
                if now_m and was_m:
                    return "MODIFIED", ev.value
                if now_m:
                    return "ADDED", ev.value
                if was_m:
                    gone = copy.deepcopy(ev.prev)
                    gone["metadata"]["resourceVersion"] = ev.value["metadata"]["resourceVersion"]
                    return "DELETED", gone
            if ev.type == "DELETED" and (was_m or self.res._matches(self.kind, ev.value, self.q)):
                return "DELETED", ev.value



class _AddressIndex:
    """ClusterIP -> Service key and (nodePort, protocol) -> Service key."""

    def __init__(self) -> None:
        self.ips: dict[str, str] = {}
        self.ports: dict[tuple[int, str], str] = {}
        self._held: dict[str, tuple[list, list]] = {}

    def put(self, key: str, service: dict | None) -> None:
        """What the Service at key holds now (None: it is gone)."""
        ips, ports = self._held.pop(key, ((), ()))
        for ip in ips:
            if self.ips.get(ip) == key:
                del self.ips[ip]
        for port in ports:
            if self.ports.get(port) == key:
                del self.ports[port]
        if service is not None:
            ips, ports = addresses(service)
            self._held[key] = (ips, ports)
            self.ips.update(dict.fromkeys(ips, key))
            self.ports.update(dict.fromkeys(ports, key))


class _HeldByOthers:
    """`x in held` when a Service other than `me` holds x."""

    def __init__(self, owners: dict, me: str | None):
        self.owners, self.me = owners, me

    def __contains__(self, x) -> bool:
        owner = self.owners.get(x)
        return owner is not None and owner != self.me
