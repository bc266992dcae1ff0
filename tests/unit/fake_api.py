"""An in-process fake of the Kubernetes REST API for client, informer and
controller tests: discovery, CRUD, merge/JSON patches, finalizers and
propagation policies, list paging and watches with resourceVersion semantics,
served on 127.0.0.1 (random port) by aiohttp's TestServer.

Knobs the tests turn to break watches on purpose:
- hold(): stop delivering live events (a partitioned watch), release() resumes;
- expire(): forget the event history, so older watches get 410 Expired
  (an in-stream ERROR event, or HTTP 410 when http_expired is set);
- end_watches(): end every stream normally (as timeoutSeconds does);
- break_watches(): drop every stream's connection mid-stream.
"""
from __future__ import annotations

import asyncio
import copy
import functools
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import jsonpatch
from aiohttp import web
from aiohttp.test_utils import TestServer

from kwire.client import Client

# (apiVersion, plural, kind, namespaced)
DEFAULT_RESOURCES = (
    ("v1", "namespaces", "Namespace", False),
    ("v1", "configmaps", "ConfigMap", True),
    ("v1", "pods", "Pod", True),
    ("v1", "nodes", "Node", False),
    ("apps/v1", "replicasets", "ReplicaSet", True),
)
END, BREAK = "END", "BREAK"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Failure", "code": code, "reason": reason,
                              "message": message}, status=code)


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


@dataclass(eq=False)
class Watcher:
    api_version: str
    plural: str
    namespace: str | None
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class FakeAPI:
    def __init__(self, resources=DEFAULT_RESOURCES, token: str | None = None):
        self.resources = {(av, plural): (kind, namespaced)
                          for av, plural, kind, namespaced in resources}
        self.token = token
        self.revision = 0
        self.compacted = 0
        self.objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = {
            k: {} for k in self.resources}
        self.history: list[tuple[int, str, str, str, dict]] = []
        self.watchers: set[Watcher] = set()
        self.requests: list[tuple[str, str, dict]] = []
        self.bodies: list = []
        self.http_expired = False
        self._held: list | None = None
        self.server: TestServer | None = None

    # --- server ----------------------------------------------------------------------

    async def start(self, ssl=None) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server(ssl=ssl)
        return str(self.server.make_url("")).rstrip("/")

    async def close(self) -> None:
        self.end_watches()
        await self.server.close()

    async def __aenter__(self) -> "FakeAPI":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # --- direct state changes (no HTTP) ----------------------------------------------

    def put(self, api_version: str, plural: str, obj: dict) -> dict:
        """Create or replace obj as the server would store it; returns the stored copy."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        kind, _ = self.resources[(api_version, plural)]
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        key = (meta.get("namespace", ""), meta["name"])
        existing = self.objects[(api_version, plural)].get(key)
        meta.setdefault("uid", existing["metadata"]["uid"] if existing else str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now())
        if plural == "namespaces" and existing is None:
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj.setdefault("status", {}).setdefault("phase", "Active")
        return self._write(api_version, plural, obj, "MODIFIED" if existing else "ADDED")

    def remove(self, api_version: str, plural: str, name: str, namespace: str = "") -> None:
        obj = self.objects[(api_version, plural)].pop((namespace, name))
        self._write(api_version, plural, obj, "DELETED", store=False)

    def get(self, api_version: str, plural: str, name: str, namespace: str = "") -> dict | None:
        return self.objects[(api_version, plural)].get((namespace, name))

    def names(self, api_version: str, plural: str, namespace: str = "") -> list[str]:
        return sorted(n for ns, n in self.objects[(api_version, plural)] if ns == namespace)

    def _write(self, api_version: str, plural: str, obj: dict, etype: str,
               store: bool = True) -> dict:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        if store:
            key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            self.objects[(api_version, plural)][key] = obj
        event = (self.revision, api_version, plural, etype, copy.deepcopy(obj))
        self.history.append(event)
        if self._held is not None:
            self._held.append(event)
        else:
            self._deliver(event)
        return copy.deepcopy(obj)

    def _deliver(self, event) -> None:
        _, api_version, plural, etype, obj = event
        for w in self.watchers:
            if (w.api_version, w.plural) == (api_version, plural) and \
                    w.namespace in (None, obj["metadata"].get("namespace")):
                w.queue.put_nowait((etype, obj))

    # --- knobs -----------------------------------------------------------------------

    def hold(self) -> None:
        self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        for event in held:
            self._deliver(event)

    def expire(self) -> None:
        self.compacted = self.revision
        self.history.clear()

    def end_watches(self) -> None:
        for w in self.watchers:
            w.queue.put_nowait(END)

    def break_watches(self) -> None:
        for w in self.watchers:
            w.queue.put_nowait(BREAK)

    def bookmark(self) -> None:
        for w in self.watchers:
            w.queue.put_nowait(("BOOKMARK", {"kind": "Bookmark", "apiVersion": w.api_version,
                                             "metadata": {"resourceVersion":
                                                          str(self.revision)}}))

    def count(self, method: str, path: str, watch: bool | None = None) -> int:
        return sum(1 for m, p, q in self.requests if m == method and p == path and
                   (watch is None or (q.get("watch") == "true") == watch))

    def watch_rvs(self, path: str) -> list[str | None]:
        return [q.get("resourceVersion") for m, p, q in self.requests
                if p == path and q.get("watch") == "true"]

    # --- HTTP ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return status(401, "Unauthorized", "Unauthorized")
        body = None
        if request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw.strip() else None
            self.bodies.append(body)
        parts = [p for p in request.path.split("/") if p]
        if parts == ["api"]:
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if parts == ["apis"]:
            return web.json_response(self._groups())
        if parts[:1] == ["api"] and len(parts) >= 2:
            api_version, rest = parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            return status(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return web.json_response(self._resource_list(api_version))
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and (api_version, rest[2]) in self.resources:
            namespace, rest = rest[1], rest[2:]
        if (api_version, rest[0]) not in self.resources:
            return status(404, "NotFound", "the server could not find the requested resource")
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        sub = rest[2] if len(rest) > 2 else None
        m = request.method
        if name is None:
            if m == "GET" and request.query.get("watch") == "true":
                return await self._watch(request, api_version, plural, namespace)
            if m == "GET":
                return self._list(request, api_version, plural, namespace)
            if m == "POST":
                return self._create(api_version, plural, namespace, body)
            if m == "DELETE":
                items = [o for (ns, _), o in sorted(self.objects[(api_version, plural)].items())
                         if namespace in (None, ns)]
                for o in items:
                    self._delete(api_version, plural, o, body or {})
                return web.json_response({"kind": "List", "items": []})
        key = (namespace or "", name)
        obj = self.objects[(api_version, plural)].get(key)
        if obj is None:
            return status(404, "NotFound", f'{plural} "{name}" not found')
        if m == "GET":
            return web.json_response(obj)
        if m == "PUT":
            return self._replace(api_version, plural, obj, body, sub)
        if m == "PATCH":
            if request.content_type == "application/json-patch+json":
                try:
                    new = jsonpatch.JsonPatch(body).apply(obj)
                except jsonpatch.JsonPatchException as e:
                    return status(422, "Invalid", str(e))
            else:
                want = (body.get("metadata") or {}).get("resourceVersion")
                if want and want != obj["metadata"]["resourceVersion"]:
                    return status(409, "Conflict", "the object has been modified")
                new = merge_patch(obj, body)
            return web.json_response(self._update(api_version, plural, obj, new))
        if m == "DELETE":
            return self._delete(api_version, plural, obj, body or {})
        return status(405, "MethodNotAllowed", "no")

    def _groups(self) -> dict:
        groups = sorted({av for av, _ in self.resources if "/" in av})
        return {"kind": "APIGroupList", "groups": [
            {"name": av.split("/")[0],
             "versions": [{"groupVersion": av, "version": av.split("/")[1]}],
             "preferredVersion": {"groupVersion": av, "version": av.split("/")[1]}}
            for av in groups]}

    def _resource_list(self, api_version: str) -> dict:
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update",
                 "watch"]
        resources = []
        for (av, plural), (kind, namespaced) in self.resources.items():
            if av == api_version:
                resources.append({"name": plural, "kind": kind, "namespaced": namespaced,
                                  "verbs": verbs})
                resources.append({"name": f"{plural}/status", "kind": kind,
                                  "namespaced": namespaced, "verbs": ["get", "update"]})
        return {"kind": "APIResourceList", "groupVersion": api_version, "resources": resources}

    def _list(self, request, api_version, plural, namespace) -> web.Response:
        items = [o for (ns, _), o in sorted(self.objects[(api_version, plural)].items())
                 if namespace in (None, ns)]
        selector = request.query.get("labelSelector")
        if selector:
            want = dict(p.split("=", 1) for p in selector.split(","))
            items = [o for o in items if all((o["metadata"].get("labels") or {}).get(k) == v
                                             for k, v in want.items())]
        start = int(request.query.get("continue") or 0)
        limit = int(request.query.get("limit") or 0)
        meta = {"resourceVersion": str(self.revision)}
        if limit:
            if start + limit < len(items):
                meta["continue"] = str(start + limit)
            items = items[start:start + limit]
        kind, _ = self.resources[(api_version, plural)]
        # Items inside lists carry no kind/apiVersion, as on the real server.
        bare = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        return web.json_response({"kind": f"{kind}List", "apiVersion": api_version,
                                  "metadata": meta, "items": bare})

    def _create(self, api_version, plural, namespace, body) -> web.Response:
        meta = body.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        if (meta.get("namespace", ""), meta["name"]) in self.objects[(api_version, plural)]:
            return status(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists')
        for k in ("uid", "resourceVersion"):
            meta.pop(k, None)
        return web.json_response(self.put(api_version, plural, body), status=201)

    def _replace(self, api_version, plural, obj, body, sub) -> web.Response:
        if body["metadata"].get("resourceVersion") not in (None,
                                                           obj["metadata"]["resourceVersion"]):
            return status(409, "Conflict", "the object has been modified")
        new = copy.deepcopy(obj)
        if sub == "status":
            new["status"] = body.get("status")
        elif sub == "finalize":
            new.setdefault("spec", {})["finalizers"] = body.get("spec", {}).get("finalizers", [])
        else:
            new = copy.deepcopy(body)
            for k in ("uid", "deletionTimestamp", "creationTimestamp"):
                if k in obj["metadata"]:
                    new["metadata"][k] = obj["metadata"][k]
        return web.json_response(self._update(api_version, plural, obj, new))

    def _update(self, api_version, plural, old, new) -> dict:
        new["metadata"]["uid"] = old["metadata"]["uid"]
        if old["metadata"].get("deletionTimestamp"):
            new["metadata"]["deletionTimestamp"] = old["metadata"]["deletionTimestamp"]
        if self._finished(new):
            del self.objects[(api_version, plural)][(new["metadata"].get("namespace", ""),
                                                     new["metadata"]["name"])]
            return self._write(api_version, plural, new, "DELETED", store=False)
        return self._write(api_version, plural, new, "MODIFIED")

    @staticmethod
    def _finished(obj) -> bool:
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return False
        return not (obj.get("kind") == "Namespace" and (obj.get("spec") or {}).get("finalizers"))

    def _delete(self, api_version, plural, obj, options) -> web.Response:
        meta = obj["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            return status(409, "Conflict", "Precondition failed: UID")
        new = copy.deepcopy(obj)
        finalizers = list(meta.get("finalizers") or [])
        policy = options.get("propagationPolicy")
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        spec_finalizers = (obj.get("spec") or {}).get("finalizers") if plural == "namespaces" \
            else None
        if not finalizers and not spec_finalizers:
            self.remove(api_version, plural, meta["name"], meta.get("namespace", ""))
            return web.json_response(obj)
        if meta.get("deletionTimestamp"):
            return web.json_response(obj)
        new["metadata"]["deletionTimestamp"] = now()
        if finalizers:
            new["metadata"]["finalizers"] = finalizers
        if plural == "namespaces":
            new.setdefault("status", {})["phase"] = "Terminating"
        return web.json_response(self._write(api_version, plural, new, "MODIFIED"))

    async def _watch(self, request, api_version, plural, namespace) -> web.StreamResponse:
        rv = request.query.get("resourceVersion")
        timeout = float(request.query.get("timeoutSeconds") or 3600)
        if rv not in (None, "", "0") and int(rv) < self.compacted and self.http_expired:
            return status(410, "Expired", f"too old resource version: {rv} ({self.revision})")
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if rv not in (None, "", "0") and int(rv) < self.compacted:
            await self._send(resp, "ERROR", {"kind": "Status", "apiVersion": "v1",
                                             "status": "Failure", "code": 410,
                                             "reason": "Expired",
                                             "message": f"too old resource version: {rv}"})
            return resp
        if rv in (None, "", "0"):
            backlog = [("ADDED", o) for (ns, _), o in
                       sorted(self.objects[(api_version, plural)].items())
                       if namespace in (None, ns)]
        else:
            backlog = [(t, o) for r, av, p, t, o in self.history
                       if r > int(rv) and (av, p) == (api_version, plural)
                       and namespace in (None, o["metadata"].get("namespace"))]
        watcher = Watcher(api_version, plural, namespace)
        for item in backlog:
            watcher.queue.put_nowait(item)
        self.watchers.add(watcher)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
                if item == END:
                    break
                if item == BREAK:
                    request.transport.abort()
                    break
                await self._send(resp, *item)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self.watchers.discard(watcher)
        return resp

    @staticmethod
    async def _send(resp, etype, obj) -> None:
        await resp.write(json.dumps({"type": etype, "object": obj}).encode() + b"\n")


# --- test helpers ----------------------------------------------------------------------

def with_fake(body):
    """Run `async def body(fake, client)` against a started FakeAPI and a
    kwire Client for it (no asyncio plugin needed); both are closed after."""
    @functools.wraps(body)
    def test():
        async def main():
            async with FakeAPI() as fake:
                async with Client(str(fake.server.make_url("")).rstrip("/")) as client:
                    await body(fake, client)
        asyncio.run(main())
    del test.__wrapped__  # pytest must see test's signature (none), not body's
    return test


async def eventually(predicate, timeout: float = 5.0, interval: float = 0.01):
    """Wait until predicate() is true (fails the test after timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
