"""HTTP for the Kubernetes REST API: paths, query parameters, bodies, content
negotiation (JSON, Table), watch streams. The work itself is done by Resources."""
from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp.http_exceptions
import yaml
from aiohttp import web

from kwire.api import errors, protobuf, tables
from kwire.api.discovery import (OPENAPI_V2_PROTOBUF, OpenAPI, api_group, api_group_list, api_versions,
                                 resource_list, version_info)
from kwire.api.errors import APIError
from kwire.api.proxy import KubeletProxy
from kwire.api.registry import Kind, Registry
from kwire.api.resources import DeleteOptions, Query, Resources, WriteOptions
from kwire.api.selectors import SelectorError, parse_field_selector, parse_label_selector

MAX_BODY = 3 * 1024 * 1024
MAX_DEPTH = 100
JSON = "application/json"
PATCH_TYPES = {"application/json-patch+json": "json",
               "application/merge-patch+json": "merge",
               "application/strategic-merge-patch+json": "strategic",
               "application/apply-patch+yaml": "apply",
               "application/apply-patch+cbor": None}
BOOKMARK_INTERVAL = 5.0


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def respond(obj: Any, status: int = 200, content_type: str = JSON,
            warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(body=dumps(obj), status=status, content_type=None)
    resp.headers["Content-Type"] = content_type
    for w in warnings or ():
        resp.headers.add("Warning", '299 - ' + json.dumps(w))
    return resp


def error_response(e: APIError) -> web.Response:
    return respond(e.status(), e.code)


class _YAMLLoader(yaml.SafeLoader):
    """YAML as Kubernetes decodes it into JSON: timestamps stay strings and !!binary
    stays its base64 text, so every value is a JSON value."""


_YAMLLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_YAMLLoader.add_constructor("tag:yaml.org,2002:binary",
                            lambda loader, node: "".join(loader.construct_scalar(node).split()))


def _check_bounds(obj: Any) -> None:
    """Refuse documents too deep, self-referencing, with non-finite numbers, or whose
    YAML aliases expand past the body limit. Shared subtrees are measured once, so
    an alias bomb costs as little to refuse as it took to parse."""
    memo: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def walk(x: Any, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise errors.bad_request(f"the request body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(x, float):
            if x != x or x in (float("inf"), float("-inf")):
                raise errors.bad_request("the request body holds a number that is not finite")
            return 8, 0
        if isinstance(x, str):
            return len(x) + 2, 0
        if not isinstance(x, (dict, list)):
            return 8, 0
        key = id(x)
        if key in active:
            raise errors.bad_request("the request body refers to itself")
        if key not in memo:
            active.add(key)
            size, height = 2, 0
            items = x.items() if isinstance(x, dict) else ((None, v) for v in x)
            for k, v in items:
                sub, h = walk(v, depth + 1)
                size += sub + (len(str(k)) + 4 if k is not None else 1)
                height = max(height, h + 1)
                if size > MAX_BODY:
                    raise errors.bad_request(f"the request body expands to more than "
                                             f"{MAX_BODY} bytes")
            active.discard(key)
            memo[key] = (size, height)
        size, height = memo[key]
        if depth + height > MAX_DEPTH:
            raise errors.bad_request(f"the request body is nested deeper than {MAX_DEPTH} levels")
        return size, height

    walk(obj, 0)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def parse_body(raw: bytes, content_type: str) -> Any:
    if len(raw) > MAX_BODY:
        raise APIError(413, f"Request entity too large: limit is {MAX_BODY}",
                       "RequestEntityTooLarge")
    if not raw.strip():
        raise errors.bad_request("the request body is empty")
    try:
        if "protobuf" in content_type:
            data = protobuf.decode(raw)
        elif "yaml" in content_type:
            data = yaml.load(raw, Loader=_YAMLLoader)
        else:
            data = json.loads(raw, parse_constant=_reject_constant)
    except protobuf.ProtobufError as e:
        raise errors.bad_request(f"error decoding protobuf: {e}")
    except RecursionError:
        raise errors.bad_request(f"the request body is nested deeper than {MAX_DEPTH} levels")
    except (ValueError, yaml.YAMLError) as e:
        kind = "YAML" if "yaml" in content_type else "JSON"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise errors.bad_request(f"error decoding {kind}: {first}")
    try:
        _check_bounds(data)
    except RecursionError:
        raise errors.bad_request(f"the request body is nested deeper than {MAX_DEPTH} levels")
    return data


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


@dataclass
class Target:
    """What a resource path names."""

    kind: Kind
    namespace: str | None
    name: str | None
    subresource: str | None


BODY_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")


async def read_body(request: web.Request, optional: bool = False) -> Any:
    """The request's body as a JSON value, refusing media types Kubernetes does not read."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    except (aiohttp.ClientPayloadError, aiohttp.http_exceptions.HttpProcessingError,
            ValueError) as e:
        raise errors.bad_request(f"unable to read the request body: {e}")
    if optional and not raw.strip():
        return None
    # No Content-Type means JSON: the Python client sends none.
    ctype = request.content_type if "Content-Type" in request.headers else "application/json"
    if optional and ctype not in BODY_TYPES:
        ctype = "application/json"  # DeleteOptions bodies often come without a type
    if ctype not in BODY_TYPES:
        raise APIError(415, f'the body of the request was in an unknown format - accepted '
                       f'media types include: {", ".join(BODY_TYPES)}', "UnsupportedMediaType")
    return parse_body(raw, ctype)


class API:
    def __init__(self, resources: Resources, registry: Registry, address: str,
                 kubelet_token: str | None = None):
        self.res = resources
        self.registry = registry
        self.address = address
        self.kubelet = KubeletProxy(resources, kubelet_token)
        self.openapi = OpenAPI(registry)
        self.watches: set = set()
        self.closing = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/version", self.version),
            web.get("/healthz", self.health), web.get("/livez", self.health),
            web.get("/readyz", self.health),
            web.get("/healthz/{check:.*}", self.health), web.get("/livez/{check:.*}", self.health),
            web.get("/readyz/{check:.*}", self.health),
            web.get("/openapi/v2", self.openapi_v2),
            web.get("/openapi/v3", self.openapi_root),
            web.get("/openapi/v3/{path:.*}", self.openapi_doc),
            web.route("*", "/api", self.core_versions),
            web.route("*", "/apis", self.groups),
            web.route("*", "/api/{version}", self.dispatch_core),
            web.route("*", "/api/{version}/{rest:.*}", self.dispatch_core),
            web.route("*", "/apis/{group}", self.group),
            web.route("*", "/apis/{group}/{version}", self.dispatch_group),
            web.route("*", "/apis/{group}/{version}/{rest:.*}", self.dispatch_group),
        ]

    # --- non-resource endpoints ------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        return respond(version_info())

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", content_type="text/plain")

    async def openapi_v2(self, request: web.Request) -> web.Response:
        if "protobuf" not in request.headers.get("Accept", ""):
            raise errors.not_found_path()
        return web.Response(body=OPENAPI_V2_PROTOBUF,
                            content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")

    async def openapi_root(self, request: web.Request) -> web.Response:
        return web.Response(body=self.openapi.root, content_type=JSON)

    async def openapi_doc(self, request: web.Request) -> web.Response:
        doc = self.openapi.docs.get(request.match_info["path"])
        if doc is None:
            raise errors.not_found_path()
        return web.Response(body=doc, content_type=JSON)

    async def core_versions(self, request: web.Request) -> web.Response:
        _only_get(request)
        return respond(api_versions(self.address))

    async def groups(self, request: web.Request) -> web.Response:
        _only_get(request)
        return respond(api_group_list(self.registry))

    async def group(self, request: web.Request) -> web.Response:
        _only_get(request)
        doc = api_group(self.registry, request.match_info["group"])
        if doc is None:
            raise errors.not_found_path()
        return respond(doc)

    # --- resources ---------------------------------------------------------------------

    async def dispatch_core(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, "", request.match_info["version"],
                                    request.match_info.get("rest", ""))

    async def dispatch_group(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, request.match_info["group"],
                                    request.match_info["version"],
                                    request.match_info.get("rest", ""))

    async def _dispatch(self, request: web.Request, group: str, version: str,
                        rest: str) -> web.StreamResponse:
        parts = [p for p in rest.split("/") if p]
        if not parts:
            _only_get(request)
            doc = resource_list(self.registry, group, version)
            if doc is None:
                raise errors.not_found_path()
            return respond(doc)
        t = self._target(group, version, parts)
        m = request.method
        if t.subresource:
            return await self._subresource(request, t)
        if t.kind.review is not None and (m != "POST" or t.name is not None):
            raise _not_allowed(m)
        if t.name is None:
            if m == "GET":
                q = self._query(request, t)
                if _flag(request.query.get("watch")):
                    return await self._watch(request, t, q)
                return await self._list(request, t, q)
            if m == "POST":
                return await self._create(request, t)
            if m == "DELETE" and "deletecollection" in t.kind.verbs and (
                    t.namespace or not t.kind.namespaced):
                return await self._delete_collection(request, t)
            raise _not_allowed(m)
        if m == "GET":
            obj = await self.res.get(t.kind, t.namespace, t.name)
            return self._object(request, t.kind, obj)
        if m == "PUT":
            body = await read_body(request)
            opts = self._write_opts(request)
            obj, created = await self.res.update(t.kind, t.namespace, t.name, body, opts)
            return respond(obj, 201 if created else 200, warnings=opts.warnings)
        if m == "PATCH":
            return await self._patch(request, t)
        if m == "DELETE":
            return await self._delete(request, t)
        raise _not_allowed(m)

    def _target(self, group: str, version: str, parts: list[str]) -> Target:
        reg = self.registry
        ns: str | None = None
        if parts[0] == "namespaces" and len(parts) >= 3 and reg.resource(group, version, parts[2]):
            ns, parts = parts[1], parts[2:]
        kind = reg.resource(group, version, parts[0])
        if kind is None or len(parts) > 3:
            raise errors.not_found_path()
        if ns is not None and not kind.namespaced:
            raise errors.not_found_path()
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
        if sub is not None and sub not in kind.subresources:
            raise errors.not_found_path()
        if kind.namespaced and name is not None and ns is None:
            raise errors.not_found_path()
        return Target(kind, ns, name, sub)

    def _query(self, request: web.Request, t: Target) -> Query:
        qs = request.query
        q = Query(namespace=t.namespace)
        try:
            if qs.get("labelSelector"):
                q.label_selector = parse_label_selector(qs["labelSelector"])
            if qs.get("fieldSelector"):
                fs = parse_field_selector(qs["fieldSelector"])
                allowed = {"metadata.name", "metadata.namespace", *t.kind.field_labels}
                for f in fs.fields:
                    if f not in allowed:
                        raise errors.bad_request(f'field label not supported: {f}')
                q.field_selector = fs
        except SelectorError as e:
            raise errors.bad_request(str(e))
        q.limit = _int(qs.get("limit"), "limit") or 0
        q.continue_token = qs.get("continue") or None
        q.resource_version = qs.get("resourceVersion")
        return q

    def _write_opts(self, request: web.Request) -> WriteOptions:
        qs = request.query
        fv = qs.get("fieldValidation", "Warn") or "Warn"
        if fv not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(f'fieldValidation must be one of "Ignore", "Warn", or '
                                     f'"Strict", got "{fv}"')
        dry = qs.getall("dryRun", [])
        for d in dry:
            if d != "All":
                raise errors.bad_request(f'Invalid dry run value: "{d}"; supported: "All"')
        return WriteOptions(dry_run=bool(dry), field_validation=fv,
                            field_manager=qs.get("fieldManager"),
                            force=_flag(qs.get("force")))

    def _object(self, request: web.Request, kind: Kind, obj: dict,
                status: int = 200) -> web.Response:
        if wants_table(request):
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return respond(tables.table(kind, [obj], meta,
                                        request.query.get("includeObject", "Metadata")),
                           status, tables.TABLE_CONTENT_TYPE)
        return respond(obj, status)

    async def _list(self, request: web.Request, t: Target, q: Query) -> web.Response:
        items, meta = await self.res.list(t.kind, q)
        if wants_table(request):
            return respond(tables.table(t.kind, items, meta,
                                        request.query.get("includeObject", "Metadata")),
                           content_type=tables.TABLE_CONTENT_TYPE)
        return respond({"kind": t.kind.list_kind, "apiVersion": t.kind.api_version,
                        "metadata": meta, "items": items})

    async def _create(self, request: web.Request, t: Target) -> web.Response:
        body = await read_body(request)
        if t.kind.review is not None:
            if not isinstance(body, dict):
                raise errors.bad_request(f"{t.kind.kind} must be a JSON object")
            return respond(t.kind.review(body, request.get("user")), 201)
        opts = self._write_opts(request)
        obj = await self.res.create(t.kind, t.namespace, body, opts)
        return respond(obj, 201, warnings=opts.warnings)

    async def _patch(self, request: web.Request, t: Target,
                     subresource: str | None = None) -> web.Response:
        ctype = request.content_type
        if ctype not in PATCH_TYPES or PATCH_TYPES[ctype] is None:
            raise APIError(415, "the body of the request was in an unknown format - accepted "
                           "media types include: " + ", ".join(
                               k for k, v in PATCH_TYPES.items() if v), "UnsupportedMediaType")
        ptype = PATCH_TYPES[ctype]
        opts = self._write_opts(request)
        if ptype == "apply" and not opts.field_manager:
            raise errors.invalid("PatchOptions", "", [errors.Cause(
                "fieldManager", "FieldValueRequired",
                "Required value: is required for apply patch")], "meta.k8s.io")
        try:
            raw = await request.read()
        except (aiohttp.ClientPayloadError, ValueError) as e:
            raise errors.bad_request(f"unable to read the request body: {e}")
        patch = parse_body(raw, "yaml" if ptype == "apply" else JSON)
        obj, created = await self.res.patch(t.kind, t.namespace, t.name, ptype, patch, opts,
                                            subresource)
        return respond(obj, 201 if created else 200, warnings=opts.warnings)

    def _delete_options(self, request: web.Request, body: Any) -> DeleteOptions:
        qs = request.query
        opts = DeleteOptions()
        if isinstance(body, dict):
            opts.grace_period_seconds = body.get("gracePeriodSeconds")
            opts.propagation_policy = body.get("propagationPolicy")
            opts.preconditions = body.get("preconditions")
            opts.dry_run = bool(body.get("dryRun"))
            if body.get("orphanDependents") is True and not opts.propagation_policy:
                opts.propagation_policy = "Orphan"
        if "gracePeriodSeconds" in qs:
            opts.grace_period_seconds = _int(qs["gracePeriodSeconds"], "gracePeriodSeconds")
        if "propagationPolicy" in qs:
            opts.propagation_policy = qs["propagationPolicy"]
        if qs.get("orphanDependents") == "true" and not opts.propagation_policy:
            opts.propagation_policy = "Orphan"
        if qs.getall("dryRun", []):
            opts.dry_run = True
        return opts

    async def _delete(self, request: web.Request, t: Target) -> web.Response:
        opts = self._delete_options(request, await read_body(request, optional=True))
        obj = await self.res.delete(t.kind, t.namespace, t.name, opts)
        if t.kind.return_deleted_object or obj["metadata"].get("deletionTimestamp"):
            return respond(obj)
        return respond(errors.status_success({
            "name": t.name, "group": t.kind.group, "kind": t.kind.plural,
            "uid": obj["metadata"].get("uid")}))

    async def _delete_collection(self, request: web.Request, t: Target) -> web.Response:
        opts = self._delete_options(request, await read_body(request, optional=True))
        items = await self.res.delete_collection(t.kind, self._query(request, t), opts)
        return respond({"kind": t.kind.list_kind, "apiVersion": t.kind.api_version,
                        "metadata": {}, "items": items})

    async def _subresource(self, request: web.Request, t: Target) -> web.StreamResponse:
        m, sub = request.method, t.subresource
        if sub == "status":
            if m == "GET":
                return respond(await self.res.get(t.kind, t.namespace, t.name))
            if m == "PUT":
                body = await read_body(request)
                opts = self._write_opts(request)
                obj, _ = await self.res.update(t.kind, t.namespace, t.name, body, opts,
                                               "status")
                return respond(obj, warnings=opts.warnings)
            if m == "PATCH":
                return await self._patch(request, t, "status")
        elif sub == "finalize" and m == "PUT":
            body = await read_body(request)
            obj, _ = await self.res.update(t.kind, t.namespace, t.name, body,
                                           self._write_opts(request), "finalize")
            return respond(obj)
        elif sub == "scale":
            if m == "GET":
                return respond(await self.res.get_scale(t.kind, t.namespace, t.name))
            if m in ("PUT", "PATCH"):
                ptype = None if m == "PUT" else PATCH_TYPES.get(request.content_type)
                if m == "PATCH" and ptype in (None, "apply"):
                    raise APIError(415, "the body of the request was in an unknown format",
                                   "UnsupportedMediaType")
                body = await read_body(request) if m == "PUT" else parse_body(
                    await request.read(), JSON)
                opts = self._write_opts(request)
                return respond(await self.res.update_scale(t.kind, t.namespace, t.name, ptype,
                                                           body, opts))
        elif sub == "eviction" and m == "POST":
            body = await read_body(request)
            opts = self._delete_options(request, (body or {}).get("deleteOptions")
                                        if isinstance(body, dict) else None)
            await self.res.delete(t.kind, t.namespace, t.name, opts)
            return respond(errors.status_success(), 201)
        elif sub == "binding" and m == "POST":
            body = await read_body(request)
            await self.res.bind(t.kind, t.namespace, t.name, body)
            return respond(errors.status_success(), 201)
        elif sub == "log" and m == "GET":
            return await self.kubelet.log(request, t.namespace, t.name)
        elif sub in ("exec", "attach") and m in ("GET", "POST"):
            return await self.kubelet.stream(request, t.namespace, t.name, sub)
        elif sub == "portforward" and m in ("GET", "POST"):
            return await self.kubelet.port_forward(request, t.namespace, t.name)
        else:
            raise errors.not_found_path()
        raise _not_allowed(m)

    # --- watch -------------------------------------------------------------------------

    async def _watch(self, request: web.Request, t: Target, q: Query) -> web.StreamResponse:
        qs = request.query
        timeout = _int(qs.get("timeoutSeconds"), "timeoutSeconds")
        if not timeout:
            timeout = random.randint(1800, 3600)
        bookmarks = _flag(qs.get("allowWatchBookmarks"))
        table = wants_table(request)
        include = qs.get("includeObject", "Metadata")
        stream = await self.res.watch(t.kind, q)
        resp = web.StreamResponse()
        resp.content_type = tables.TABLE_CONTENT_TYPE if table else JSON
        resp.enable_chunked_encoding()
        self.watches.add(stream)
        deadline = time.monotonic() + timeout
        first = True
        try:
            await resp.prepare(request)
            while not self.closing.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    ev = await asyncio.wait_for(stream.next(), min(left, BOOKMARK_INTERVAL))
                except asyncio.TimeoutError:
                    if bookmarks and time.monotonic() < deadline:
                        await resp.write(self._bookmark(t.kind))
                    continue
                if ev is None:
                    break
                etype, obj = ev
                if etype == "ERROR":
                    await resp.write(dumps({"type": etype, "object": obj}) + b"\n")
                    break
                if table:
                    obj = tables.table(t.kind, [obj], {"resourceVersion":
                                                       obj["metadata"]["resourceVersion"]},
                                       include, with_columns=first)
                    first = False
                await resp.write(dumps({"type": etype, "object": obj}) + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            stream.close()
            self.watches.discard(stream)
        return resp

    def _bookmark(self, kind: Kind) -> bytes:
        return dumps({"type": "BOOKMARK", "object": {
            "kind": kind.kind, "apiVersion": kind.api_version,
            "metadata": {"resourceVersion": str(self.res.store.revision)}}}) + b"\n"

    async def close_watches(self) -> None:
        self.closing.set()
        for w in list(self.watches):
            w.close()


def _flag(v: str | None) -> bool:
    return v is not None and v.lower() in ("true", "1")


def _int(v: str | None, name: str) -> int | None:
    if v is None or v == "":
        return None
    try:
        n = int(v)
    except ValueError:
        raise errors.bad_request(f"invalid value for {name}: {v!r} is not an integer")
    if not -(2 ** 63) <= n < 2 ** 63:
        raise errors.bad_request(f"invalid value for {name}: {v} is out of range")
    return n


def _only_get(request: web.Request) -> None:
    if request.method != "GET":
        raise _not_allowed(request.method)


def _not_allowed(method: str) -> APIError:
    return APIError(405, "the server does not allow this method on the requested resource",
                    "MethodNotAllowed")
