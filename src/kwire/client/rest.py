"""An asyncio client for the Kubernetes REST API, on aiohttp.

Controllers, node agents and the CLI reach the API server only through this
client (DESIGN rule 1). A resource is named by its apiVersion and plural
("v1", "pods"; "apps/v1", "deployments"); a namespace makes the path
namespaced, no namespace means cluster-scoped (or, for lists and watches of a
namespaced resource, every namespace). Objects are plain dicts as they travel
on the wire.

One Client owns one aiohttp session, created lazily on the running loop and
shared by every request and watch made through it; `close()` ends them all.
The connector has no connection limit because each watch holds a connection
for minutes: a limit would let long-lived watches starve short requests.
Callers bound their own concurrency. Failures the server reports raise
ApiError; transport failures surface as aiohttp.ClientError / OSError /
asyncio.TimeoutError.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

from kwire import __version__

JSON = "application/json"
PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
"""What a request raises when the server is not there or the connection breaks
(an API server restart): callers that must outlive it catch these and retry."""
WATCH_READ_SLACK = 30.0


class ApiError(Exception):
    """A failure the API server answered with (a metav1.Status)."""

    def __init__(self, status: dict):
        self.status = status
        super().__init__(f"{self.code} {self.reason}: {self.message}")

    @property
    def code(self) -> int:
        return int(self.status.get("code") or 0)

    @property
    def reason(self) -> str:
        return self.status.get("reason") or ""

    @property
    def message(self) -> str:
        return self.status.get("message") or ""


class KubeconfigError(Exception):
    pass


@dataclass(frozen=True)
class ApiResource:
    """One entry of the server's discovery (a resource, never a subresource)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def supports(self, *verbs: str) -> bool:
        return all(v in self.verbs for v in verbs)


def group_of(api_version: str) -> str:
    """"apps/v1" -> "apps"; "v1" -> "" (the core group)."""
    return api_version.rpartition("/")[0]


def resource_path(api_version: str, plural: str, namespace: str | None = None,
                  name: str | None = None, subresource: str | None = None) -> str:
    """The REST path of a collection, an object or an object's subresource."""
    parts = [f"/apis/{api_version}" if group_of(api_version) else f"/api/{api_version}"]
    if namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
    return "/".join(parts)


def ssl_context(ca_file: str | None = None, cert_file: str | None = None,
                key_file: str | None = None, *, ca_data: bytes | None = None,
                cert_data: bytes | None = None, key_data: bytes | None = None,
                insecure: bool = False) -> ssl.SSLContext:
    """A client TLS context: the server is checked against the given CA only
    (as kubectl does; the system CAs when none is given; nothing when
    insecure), with an optional client certificate from files or PEM bytes.
    ALPN offers only http/1.1, as the server speaks nothing else."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    if ca_data:
        ctx.load_verify_locations(cadata=ca_data.decode())
    if not (ca_file or ca_data or insecure):
        ctx.load_default_certs()
    if cert_data or key_data:
        # load_cert_chain reads only files: hand it private temporary ones.
        with tempfile.TemporaryDirectory(prefix="kwire-cert-") as tmp:
            cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert_path.write_bytes(cert_data or _read(cert_file, "client certificate"))
            key_path.write_bytes(key_data or _read(key_file, "client key"))
            ctx.load_cert_chain(str(cert_path), str(key_path))
    elif cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _read(path: str | None, what: str) -> bytes:
    if not path:
        raise KubeconfigError(f"no {what} given")
    return Path(path).read_bytes()


def _named(entries: Iterable[dict] | None, name: str, what: str) -> dict:
    for entry in entries or ():
        if entry.get("name") == name:
            return entry.get(what) or {}
    raise KubeconfigError(f"kubeconfig has no {what} named {name!r}")


def _file_or_data(section: dict, key: str, base: Path) -> tuple[str | None, bytes | None]:
    """(path, None) for `key`, (None, bytes) for `key-data`; relative paths are
    relative to the kubeconfig, as kubectl resolves them."""
    if section.get(f"{key}-data"):
        return None, base64.b64decode(section[f"{key}-data"])
    if section.get(key):
        return str(base / os.path.expanduser(section[key])), None
    return None, None


class Client:
    """The REST client. Use `async with Client(...)` or call `close()`."""

    def __init__(self, server: str, token: str | None = None, ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None, *,
                 ssl_ctx: ssl.SSLContext | None = None):
        self.server = server.rstrip("/")
        self.token = token
        if ssl_ctx is None and self.server.startswith("https:"):
            ssl_ctx = ssl_context(ca_file, cert_file, key_file)
        self._ssl = ssl_ctx
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike | None = None,
                        context: str | None = None) -> "Client":
        """A client for a kubeconfig context (default: the current one). `path`
        defaults to the first file in $KUBECONFIG, else ~/.kube/config."""
        if path is None:
            first = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
            path = first[0] if first else Path.home() / ".kube" / "config"
        path = Path(path).expanduser()
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise KubeconfigError(f"cannot read kubeconfig {path}: {e}") from None
        context = context or config.get("current-context")
        if not context:
            raise KubeconfigError(f"{path}: no context given and no current-context set")
        ctx = _named(config.get("contexts"), context, "context")
        cluster = _named(config.get("clusters"), ctx.get("cluster", ""), "cluster")
        user = _named(config.get("users"), ctx["user"], "user") if ctx.get("user") else {}
        base = path.parent
        ca_file, ca_data = _file_or_data(cluster, "certificate-authority", base)
        cert_file, cert_data = _file_or_data(user, "client-certificate", base)
        key_file, key_data = _file_or_data(user, "client-key", base)
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = (base / user["tokenFile"]).read_text().strip()
        server = cluster.get("server")
        if not server:
            raise KubeconfigError(f"{path}: cluster of context {context!r} has no server")
        ctx_ssl = None
        if server.startswith("https:"):
            ctx_ssl = ssl_context(ca_file, cert_file, key_file, ca_data=ca_data,
                                  cert_data=cert_data, key_data=key_data,
                                  insecure=bool(cluster.get("insecure-skip-tls-verify")))
        return cls(server, token, ssl_ctx=ctx_ssl)

    # --- session -------------------------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        """The shared session, for streams and WebSockets that request() does not cover."""
        if self._session is None or self._session.closed:
            headers = {"User-Agent": f"kwire/{__version__}", "Accept": JSON}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False, limit=0),
                headers=headers, timeout=REQUEST_TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # --- raw requests --------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      body: Any = None, content_type: str = JSON, accept: str = JSON) -> Any:
        """Any request; the decoded JSON answer (None when empty). Non-2xx -> ApiError.
        `accept` asks for another form of the answer, such as a meta.k8s.io Table."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = content_type
        async with self.session().request(method, self.server + path,
                                               params=_params(params), data=data,
                                               headers=headers) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise api_error(resp.status, resp.reason, raw)
            return json.loads(raw) if raw.strip() else None

    # --- verbs ---------------------------------------------------------------------

    async def get(self, api_version: str, plural: str, name: str,
                  namespace: str | None = None) -> dict:
        return await self.request("GET", resource_path(api_version, plural, namespace, name))

    async def list(self, api_version: str, plural: str, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int | None = None) -> tuple[list[dict], str]:
        """Every matching object, following continue tokens (`limit` is the page
        size), and the list's resourceVersion. Items get the kind and apiVersion
        the server leaves out inside lists."""
        path = resource_path(api_version, plural, namespace)
        params = {"labelSelector": label_selector, "fieldSelector": field_selector,
                  "limit": limit}
        items: list[dict] = []
        while True:
            page = await self.request("GET", path, params=params)
            kind = (page.get("kind") or "").removesuffix("List")
            for item in page.get("items") or ():
                item.setdefault("apiVersion", page.get("apiVersion", api_version))
                if kind:
                    item.setdefault("kind", kind)
                items.append(item)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, meta.get("resourceVersion", "")
            params = {**params, "continue": meta["continue"]}

    async def create(self, api_version: str, plural: str, body: dict,
                     namespace: str | None = None, *, field_manager: str | None = None) -> dict:
        """POST; the namespace defaults to body.metadata.namespace."""
        namespace = namespace or (body.get("metadata") or {}).get("namespace")
        return await self.request("POST", resource_path(api_version, plural, namespace),
                                  params={"fieldManager": field_manager}, body=body)

    async def update(self, api_version: str, plural: str, body: dict, *,
                     field_manager: str | None = None) -> dict:
        """PUT the object (name, namespace and resourceVersion from its metadata)."""
        return await self._put(api_version, plural, body, None, field_manager)

    async def update_status(self, api_version: str, plural: str, body: dict, *,
                            field_manager: str | None = None) -> dict:
        return await self._put(api_version, plural, body, "status", field_manager)

    async def _put(self, api_version: str, plural: str, body: dict, subresource: str | None,
                   field_manager: str | None) -> dict:
        meta = body.get("metadata") or {}
        path = resource_path(api_version, plural, meta.get("namespace"), meta["name"],
                             subresource)
        return await self.request("PUT", path, params={"fieldManager": field_manager},
                                  body=body)

    async def patch(self, api_version: str, plural: str, name: str, patch: Any,
                    namespace: str | None = None, *, patch_type: str = "merge",
                    field_manager: str | None = None, force: bool | None = None,
                    subresource: str | None = None) -> dict:
        """PATCH with patch_type "merge", "strategic", "json" (a list of
        operations) or "apply" (server-side apply; needs field_manager)."""
        if patch_type not in PATCH_CONTENT_TYPES:
            raise ValueError(f"unknown patch type {patch_type!r}")
        path = resource_path(api_version, plural, namespace, name, subresource)
        params = {"fieldManager": field_manager, "force": force}
        return await self.request("PATCH", path, params=params, body=patch,
                                  content_type=PATCH_CONTENT_TYPES[patch_type])

    async def delete(self, api_version: str, plural: str, name: str,
                     namespace: str | None = None, *, propagation_policy: str | None = None,
                     grace_period_seconds: int | None = None,
                     preconditions: dict | None = None) -> dict:
        """DELETE with a DeleteOptions body. Returns the deleted object, the object
        marked for deletion (finalizers, graceful deletion), or a Status."""
        return await self.request("DELETE", resource_path(api_version, plural, namespace, name),
                                  body=_delete_options(propagation_policy, grace_period_seconds,
                                                       preconditions))

    async def delete_collection(self, api_version: str, plural: str,
                                namespace: str | None = None, *,
                                label_selector: str | None = None,
                                field_selector: str | None = None,
                                propagation_policy: str | None = None,
                                grace_period_seconds: int | None = None) -> dict:
        return await self.request(
            "DELETE", resource_path(api_version, plural, namespace),
            params={"labelSelector": label_selector, "fieldSelector": field_selector},
            body=_delete_options(propagation_policy, grace_period_seconds, None))

    async def watch(self, api_version: str, plural: str, namespace: str | None = None, *,
                    resource_version: str | None = None, timeout_seconds: int | None = None,
                    allow_bookmarks: bool = False, label_selector: str | None = None,
                    field_selector: str | None = None) -> AsyncIterator[tuple[str, dict]]:
        """Watch events as (type, object) until the server ends the stream. An
        ERROR event raises ApiError (code 410 when resource_version is too old).
        The stream holds a connection: iterate inside contextlib.aclosing() so
        leaving early releases it at once."""
        params = {"resourceVersion": resource_version, "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if allow_bookmarks else None,
                  "labelSelector": label_selector, "fieldSelector": field_selector}
        async for event in self.watch_path(resource_path(api_version, plural, namespace),
                                           params):
            yield event

    async def watch_path(self, path: str, params: dict | None = None, *,
                         accept: str = JSON) -> AsyncIterator[tuple[str, dict]]:
        """`watch` on a collection path, with the query and Accept given."""
        params = {**(params or {}), "watch": "true"}
        timeout_seconds = params.get("timeoutSeconds")
        read = timeout_seconds + WATCH_READ_SLACK if timeout_seconds else None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read)
        async with self.session().get(self.server + path, params=_params(params),
                                           headers={"Accept": accept},
                                           timeout=timeout) as resp:
            if resp.status >= 400:
                raise api_error(resp.status, resp.reason, await resp.read())
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _event(json.loads(line))
            if buf.strip():
                yield _event(json.loads(buf))

    # --- discovery -----------------------------------------------------------------

    async def discover(self) -> list[ApiResource]:
        """Every resource the server serves, in the preferred version of each
        group (subresources left out), as the garbage collector and the namespace
        controller need them."""
        out: list[ApiResource] = []
        core = await self.request("GET", "/api")
        versions = [("", v) for v in core.get("versions") or ()]
        groups = await self.request("GET", "/apis")
        for g in groups.get("groups") or ():
            preferred = (g.get("preferredVersion") or (g.get("versions") or [{}])[0])
            if preferred.get("version"):
                versions.append((g["name"], preferred["version"]))
        lists = await asyncio.gather(*(
            self.request("GET", f"/apis/{g}/{v}" if g else f"/api/{v}") for g, v in versions))
        for (group, version), doc in zip(versions, lists):
            for r in doc.get("resources") or ():
                if "/" in r["name"]:
                    continue
                out.append(ApiResource(group, version, r["name"], r.get("kind", ""),
                                       bool(r.get("namespaced")), frozenset(r.get("verbs") or ())))
        return out


def _params(params: dict | None) -> dict[str, str]:
    """Query parameters without the unset ones; booleans as Kubernetes spells them."""
    out = {}
    for k, v in (params or {}).items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def _delete_options(policy: str | None, grace: int | None, preconditions: dict | None) -> dict:
    body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if policy is not None:
        body["propagationPolicy"] = policy
    if grace is not None:
        body["gracePeriodSeconds"] = grace
    if preconditions:
        body["preconditions"] = preconditions
    return body


def api_error(code: int, reason: str | None, raw: bytes) -> ApiError:
    try:
        status = json.loads(raw)
    except ValueError:
        status = None
    if not isinstance(status, dict) or status.get("kind") != "Status":
        status = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                  "message": raw.decode(errors="replace").strip() or (reason or ""),
                  "reason": reason or "", "code": code}
    status.setdefault("code", code)
    return ApiError(status)


def _event(ev: dict) -> tuple[str, dict]:
    etype, obj = ev.get("type", ""), ev.get("object") or {}
    if etype == "ERROR":
        raise ApiError(obj)
    return etype, obj
