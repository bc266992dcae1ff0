"""Pulling images from registries through the OCI distribution API (HTTP API v2).

A pull goes as containerd's does for the CRI:

1. resolve: ``GET /v2/<name>/manifests/<tag|digest>`` on each endpoint in turn
   (the mirrors configured for the image's registry, then the registry itself),
   accepting OCI and Docker v2 manifests and indexes; an index gives the manifest
   for the host's platform;
2. fetch the config and layer blobs the store lacks, a few at a time, each checked
   against its digest as it streams into the store;
3. store the manifest, tag the reference and unpack the layers (``layer_dirs``), so
   that a corrupt layer fails the pull (ErrImagePull), not the container start.

Authentication answers the registry's 401 challenge: ``Bearer realm=...,service=...,
scope=...`` (Docker Hub, distribution's token auth) gets a token from the realm,
anonymously or with the configured credentials; ``Basic`` sends the credentials.
Tokens are kept per endpoint and repository and fetched again when refused.

Endpoints and credentials come from a registries.yaml in k3s's shape (see
RegistriesConfig). The agent reads ``<cluster state dir>/registries.yaml``, else the
machine-wide ``/etc/kwire/registries.yaml`` (registries_for). An endpoint is plain
HTTP when its URL says ``http://``; a registry's own endpoint is HTTPS, except on a
loopback host (``localhost:5000``, ``127.0.0.1:5000``), which Docker and containerd
also treat as insecure.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hashlib
import ipaddress
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import aiohttp
import yaml

from kwire import __version__
from kwire.node.images.errors import ImageError
from kwire.node.images.reference import DEFAULT_DOMAIN, Reference, parse_reference
from kwire.node.images.store import (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, INDEX_TYPES,
                                     MANIFEST_TYPES, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
                                     Descriptor, Image, ImageStore, host_platform)

log = logging.getLogger(__name__)

REGISTRIES_FILE = "registries.yaml"
"""Its name in a cluster's state dir."""
MACHINE_REGISTRIES = Path("/etc/kwire/registries.yaml")
"""The machine-wide registries.yaml, for clusters that have none of their own."""
DOCKER_HUB_ENDPOINT = "https://registry-1.docker.io/v2"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
MANIFEST_ACCEPT = f"{OCI_MANIFEST}, {DOCKER_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST_LIST}"
MAX_MANIFEST_BYTES = 4 << 20
"""containerd's limit: a manifest is metadata, anything bigger is a mistake or an attack."""
MAX_INDEX_DEPTH = 4
MAX_CONCURRENT_DOWNLOADS = 3
"""containerd's default: enough to fill a link without starving other pulls."""
READ_TIMEOUT = 60.0
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=READ_TIMEOUT)
DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}
"""The variant an index entry without one means, as containerd's platform matcher
reads it."""

T = TypeVar("T")


# ---------------------------------------------------------------- errors


class PullError(ImageError):
    """A pull failed. The message, like containerd's, goes into the container's
    status (ErrImagePull); the subclasses say why."""


class PullNotFound(PullError):
    """No endpoint has the reference, or the image has no manifest for this platform."""


class PullUnauthorized(PullError):
    """The registry wants credentials, or refused those it got."""


class RegistryUnreachable(PullError):
    """No answer: connection refused, name not resolved, TLS failure, timeout, 5xx."""


class RegistriesConfigError(ImageError):
    """registries.yaml does not parse or has fields of the wrong shape."""


class _Failed(Exception):
    """One endpoint's failure; pull() turns the last one into a PullError."""

    def __init__(self, kind: type[PullError], detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


# ---------------------------------------------------------------- registries.yaml


@dataclass(frozen=True)
class RegistryAuth:
    username: str
    password: str

    @property
    def header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class RegistryTLS:
    ca_file: str | None = None
    """Trusted in addition to the system's CAs."""
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What aiohttp's ``ssl=`` takes: False to skip verification, True for the
        defaults."""
        if self.insecure_skip_verify:
            return False
        if not (self.ca_file or self.cert_file):
            return True
        context = ssl.create_default_context()
        try:
            if self.ca_file:
                context.load_verify_locations(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as e:
            raise RegistriesConfigError(f"cannot load TLS files for a registry: {e}") from None
        return context


@dataclass(frozen=True)
class HostConfig:
    """registries.yaml ``configs.<host>``: credentials and TLS for one endpoint host."""

    auth: RegistryAuth | None = None
    tls: RegistryTLS = field(default_factory=RegistryTLS)


@dataclass(frozen=True)
class Mirror:
    """registries.yaml ``mirrors.<registry>``: endpoints to try first, and repository
    rewrites that apply on them (regex, Python replacement) in file order."""

    endpoints: tuple[str, ...]
    rewrites: tuple[tuple[re.Pattern[str], str], ...] = ()


@dataclass(frozen=True)
class RegistriesConfig:
    """k3s's registries.yaml, plus one kwire key::

        mirrors:
          docker.io:                       # a registry as image names spell it; "*": any
            endpoint: ["http://127.0.0.1:5000", "https://mirror.example.com"]
            rewrite: {"^library/(.*)": "hub/$1"}   # on the repository; $1, ${name} as in k3s
        configs:
          mirror.example.com:              # an endpoint's host[:port] (or docker.io)
            auth: {username: u, password: p}       # or auth: base64("u:p")
            tls: {ca_file: ..., cert_file: ..., key_file: ..., insecure_skip_verify: false}
        disable_default_endpoint: false    # k3s's --disable-default-registry-endpoint

    A mirrored registry is tried at its endpoints in order and then at its own
    (default) endpoint, unless disable_default_endpoint is set. An endpoint without
    a path gets ``/v2``, one whose path does not end in ``/v2`` gets it appended.
    ``configs`` are looked up by endpoint host; a registry's own endpoint also by
    the registry's name, so ``docker.io`` credentials apply to registry-1.docker.io.
    """

    mirrors: dict[str, Mirror] = field(default_factory=dict)
    configs: dict[str, HostConfig] = field(default_factory=dict)
    disable_default_endpoint: bool = False


def load_registries(path: Path) -> RegistriesConfig:
    """Read and check a registries.yaml; raises RegistriesConfigError."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise RegistriesConfigError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise RegistriesConfigError(f"{path}: not YAML: {e}") from None
    return parse_registries(data, str(path))


def registries_for(state_dir: Path | None) -> RegistriesConfig:
    """The registries a node of the cluster in ``state_dir`` uses: its
    registries.yaml, else the machine's, else none (every registry at its own
    endpoint, anonymously)."""
    for path in (Path(state_dir) / REGISTRIES_FILE if state_dir else None, MACHINE_REGISTRIES):
        if path is not None and path.exists():
            return load_registries(path)
    return RegistriesConfig()


def parse_registries(data: Any, source: str = REGISTRIES_FILE) -> RegistriesConfig:
    """Check the parsed YAML; unknown keys are errors, so a typo like ``endpoints:``
    is reported instead of silently pulling from the wrong place."""
    if data is None:
        return RegistriesConfig()
    root = _mapping(data, source, {"mirrors", "configs", "disable_default_endpoint"})
    mirrors = {}
    for registry, body in _mapping(root.get("mirrors") or {}, f"{source}: mirrors").items():
        where = f"{source}: mirrors.{registry}"
        body = _mapping(body or {}, where, {"endpoint", "rewrite"})
        endpoints = body.get("endpoint") or []
        if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
            raise RegistriesConfigError(f"{where}.endpoint: want a list of URLs")
        for url in endpoints:
            _api_root(url, where)
        rewrites = []
        for pattern, replacement in _mapping(body.get("rewrite") or {}, f"{where}.rewrite").items():
            try:
                rewrites.append((re.compile(pattern), _go_replacement(str(replacement))))
            except re.error as e:
                raise RegistriesConfigError(f"{where}.rewrite: bad pattern {pattern!r}: {e}") \
                    from None
        mirrors[str(registry)] = Mirror(tuple(endpoints), tuple(rewrites))
    configs = {}
    for host, body in _mapping(root.get("configs") or {}, f"{source}: configs").items():
        where = f"{source}: configs.{host}"
        body = _mapping(body or {}, where, {"auth", "tls"})
        configs[str(host)] = HostConfig(_parse_auth(body.get("auth"), f"{where}.auth"),
                                        _parse_tls(body.get("tls"), f"{where}.tls"))
    disable = root.get("disable_default_endpoint", False)
    if not isinstance(disable, bool):
        raise RegistriesConfigError(f"{source}: disable_default_endpoint: want true or false")
    return RegistriesConfig(mirrors, configs, disable)


def _parse_auth(data: Any, where: str) -> RegistryAuth | None:
    if data is None:
        return None
    data = _mapping(data, where, {"username", "password", "auth", "identity_token"})
    if data.get("identity_token"):
        raise RegistriesConfigError(f"{where}.identity_token: not supported; "
                                    "give username and password")
    if data.get("auth"):
        try:
            username, sep, password = base64.b64decode(str(data["auth"]),
                                                       validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise RegistriesConfigError(f"{where}.auth: want base64 of username:password")
        return RegistryAuth(username, password)
    if "username" not in data:
        raise RegistriesConfigError(f"{where}: want username and password (or auth)")
    return RegistryAuth(str(data["username"]), str(data.get("password") or ""))


def _parse_tls(data: Any, where: str) -> RegistryTLS:
    data = _mapping(data or {}, where, {"ca_file", "cert_file", "key_file",
                                        "insecure_skip_verify"})
    skip = data.get("insecure_skip_verify", False)
    if not isinstance(skip, bool):
        raise RegistriesConfigError(f"{where}.insecure_skip_verify: want true or false")
    if data.get("key_file") and not data.get("cert_file"):
        raise RegistriesConfigError(f"{where}: key_file needs cert_file")
    return RegistryTLS(data.get("ca_file"), data.get("cert_file"), data.get("key_file"), skip)


def _mapping(value: Any, where: str, allowed: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RegistriesConfigError(f"{where}: want a mapping, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if allowed is not None and k not in allowed)
    if unknown:
        raise RegistriesConfigError(f"{where}: unknown field {unknown[0]!r} "
                                    f"(known: {', '.join(sorted(allowed or ()))})")
    return value


def _go_replacement(text: str) -> str:
    """A Go regexp replacement (``$1``, ``${1}``, ``${name}``, ``$$``) in Python's
    re.sub syntax."""
    out = text.replace("\\", "\\\\")
    return re.sub(r"\$(?:\$|(\w+)|\{(\w+)\})",
                  lambda m: "$" if m.group(0) == "$$" else f"\\g<{m.group(1) or m.group(2)}>",
                  out)


# ---------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    """One place to pull a registry's images from: a mirror or the registry itself."""

    url: str
    """The API root, ending in /v2."""
    registry: str
    """The registry the image names, e.g. docker.io."""
    mirror: bool
    config: HostConfig = field(default_factory=HostConfig)
    rewrites: tuple[tuple[re.Pattern[str], str], ...] = ()

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def repository(self, path: str) -> str:
        """The repository to ask this endpoint for: rewritten on mirrors only, as k3s."""
        if self.mirror:
            for pattern, replacement in self.rewrites:
                if pattern.search(path):
                    return pattern.sub(replacement, path)
        return path


def endpoints_for(registries: RegistriesConfig, registry: str) -> list[Endpoint]:
    """The endpoints to try for images of ``registry`` (a reference's domain), in order."""
    mirror = registries.mirrors.get(registry) or registries.mirrors.get("*")
    default = default_endpoint(registry)
    urls = [_api_root(url, f"mirror of {registry}") for url in mirror.endpoints] if mirror else []
    if mirror is None or not registries.disable_default_endpoint:
        urls.append(default)
    out: list[Endpoint] = []
    for url in dict.fromkeys(urls):
        host = urlsplit(url).netloc
        is_mirror = url != default
        config = registries.configs.get(host) or (
            registries.configs.get(registry) if not is_mirror else None) or HostConfig()
        out.append(Endpoint(url, registry, is_mirror, config,
                            mirror.rewrites if mirror and is_mirror else ()))
    return out


def default_endpoint(registry: str) -> str:
    """A registry's own API root: Docker Hub's, plain HTTP on loopback, else HTTPS."""
    if registry == DEFAULT_DOMAIN:
        return DOCKER_HUB_ENDPOINT
    scheme = "http" if _is_loopback(urlsplit(f"//{registry}").hostname or "") else "https"
    return f"{scheme}://{registry}/v2"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_root(url: str, where: str) -> str:
    """An endpoint URL as its API root: https unless it says http, /v2 at the end."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RegistriesConfigError(f"{where}: endpoint {url!r} is not an http(s) URL")
    path = parts.path.rstrip("/")
    if not path.endswith("/v2"):
        path += "/v2"
    return f"{parts.scheme}://{parts.netloc}{path}"


# ---------------------------------------------------------------- auth challenges


@dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate header (RFC 7235)."""

    scheme: str
    """Lower-case: "bearer", "basic"."""
    params: dict[str, str]


_AUTH_ITEM = re.compile(r"""[\s,]*([!#$%&'*+.^_`|~\w-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*))?""")


def parse_challenges(headers: Sequence[str]) -> list[Challenge]:
    """Every challenge in the WWW-Authenticate headers of a response: a name
    without ``=`` starts a challenge, ``name=value`` pairs are its parameters."""
    out: list[Challenge] = []
    for header in headers:
        pos = 0
        while (m := _AUTH_ITEM.match(header, pos)) and m.end() > pos:
            pos = m.end()
            name, value = m.group(1), m.group(2)
            if value is None:
                out.append(Challenge(name.lower(), {}))
            elif out:
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                out[-1].params[name.lower()] = value
    return out


# ---------------------------------------------------------------- platforms


def select_platform(index: dict[str, Any],
                    platform: tuple[str, str] | None = None) -> Descriptor | None:
    """The entry of an image index for ``platform`` (os, architecture; default the
    host's), None if it has none. An entry with the architecture's usual variant
    (or none) wins over other variants; attestation entries (unknown/unknown)
    never match."""
    os_name, arch = platform or host_platform()
    entries = index.get("manifests") or []
    fits = [e for e in entries
            if (e.get("platform") or {}).get("os") == os_name
            and (e.get("platform") or {}).get("architecture") == arch]
    if not fits and len(entries) == 1 and "platform" not in entries[0]:
        fits = entries
    if not fits:
        return None
    usual = DEFAULT_VARIANT.get(arch)
    fits.sort(key=lambda e: (e.get("platform") or {}).get("variant") not in (None, "", usual))
    return Descriptor.from_json(fits[0])


# ---------------------------------------------------------------- pulling


class Puller:
    """Pulls images into a store. One Puller can serve every pull of an agent: it
    keeps connections and tokens, and bounds the downloads in flight.

        async with Puller(store, registries_for(state_dir)) as puller:
            image = await puller.pull("nginx:alpine")
    """

    def __init__(self, store: ImageStore, registries: RegistriesConfig | None = None, *,
                 max_concurrent_downloads: int = MAX_CONCURRENT_DOWNLOADS):
        self.store = store
        self.registries = registries or RegistriesConfig()
        self._downloads = asyncio.Semaphore(max_concurrent_downloads)
        self._session: aiohttp.ClientSession | None = None
        self._auth: dict[tuple[str, str], str] = {}
        """Authorization header per (endpoint, repository), once a challenge was met."""
        self._ssl: dict[str, ssl.SSLContext | bool] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def pull(self, ref: Reference | str) -> Image:
        """Pull ``ref`` (kubelet's spelling is fine: ``busybox``, ``nginx:alpine``) and
        return it as the store now has it, unpacked. Raises InvalidReference for a
        bad name and a PullError subclass for everything else."""
        ref = ref if isinstance(ref, Reference) else parse_reference(ref)
        try:
            return await self._pull(ref)
        except _Failed as e:
            raise e.kind(f'failed to pull and unpack image "{ref}": {e.detail}') from None
        except (ImageError, OSError) as e:
            raise PullError(f'failed to pull and unpack image "{ref}": {e}') from None

    async def _pull(self, ref: Reference) -> Image:
        endpoints = endpoints_for(self.registries, ref.domain)
        endpoint, digest, body = await self._across(
            endpoints, lambda ep: self._resolve(ep, ref),
            f'failed to resolve reference "{ref}"')
        manifest = json.loads(body)
        config, layers = _image_parts(manifest, digest)
        # Blobs come from the endpoint that had the manifest, then from the others.
        ordered = [endpoint] + [ep for ep in endpoints if ep is not endpoint]
        try:
            async with asyncio.TaskGroup() as group:
                for desc, what in [(config, "config"), *((la, "layer") for la in layers)]:
                    group.create_task(self._fetch_blob(ordered, ref, desc, what))
        except ExceptionGroup as failures:
            raise failures.exceptions[0] from None
        return await asyncio.to_thread(self._commit, ref, digest, body)

    def _commit(self, ref: Reference, digest: str, body: bytes) -> Image:
        """Store the manifest, name it and unpack it; a layer that does not unpack
        takes the new name away again."""
        self.store.put_blob(body, digest)
        if ref.digest and ref.digest != digest:
            # The reference pins an index: name the platform's manifest by its own digest.
            ref = Reference(ref.domain, ref.path, ref.tag, digest)
        changed = self.store.tag(ref, digest)
        try:
            self.store.layer_dirs(ref)
        except (ImageError, OSError):
            if changed:
                self.store.remove(ref)
            raise
        return self.store.resolve(ref)

    # ---- resolving

    async def _resolve(self, endpoint: Endpoint, ref: Reference) -> tuple[Endpoint, str, bytes]:
        """(endpoint, digest, bytes) of the image manifest ``ref`` names for this platform."""
        media_type, digest, body = await self._manifest(endpoint, ref, ref.digest or ref.tag,
                                                        ref.digest)
        for _ in range(MAX_INDEX_DEPTH):
            if media_type in MANIFEST_TYPES:
                return endpoint, digest, body
            if media_type not in INDEX_TYPES:
                raise _Failed(PullError, f"{ref}: {media_type or 'an unknown document'} is "
                                         "neither an image manifest nor an index")
            child = select_platform(json.loads(body))
            if child is None:
                os_name, arch = host_platform()
                raise _Failed(PullNotFound, f"{ref}: no match for platform {os_name}/{arch} "
                                            "in manifest")
            media_type, digest, body = await self._manifest(endpoint, ref, child.digest,
                                                            child.digest)
        raise _Failed(PullError, f"{ref}: image indexes nested too deep")

    async def _manifest(self, endpoint: Endpoint, ref: Reference, target: str,
                        expected: str | None) -> tuple[str, str, bytes]:
        """(media type, digest, bytes) of one manifest or index, digest checked."""
        resp = await self._get(endpoint, ref, f"manifests/{target}", MANIFEST_ACCEPT)
        async with resp:
            await _check(resp, f"{ref.name}:{target}" if ":" not in target
                         else f"{ref.name}@{target}")
            if (resp.content_length or 0) > MAX_MANIFEST_BYTES:
                raise _Failed(PullError, f"{resp.url}: manifest larger than "
                                         f"{MAX_MANIFEST_BYTES} bytes")
            body = await _read_body(resp, MAX_MANIFEST_BYTES)
            header_digest = resp.headers.get("Docker-Content-Digest", "")
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        want = expected or (header_digest if header_digest.startswith("sha256:") else None)
        if want and want != digest:
            raise _Failed(PullError, f"manifest {target} from {endpoint.url}: "
                                     f"content digest {digest} does not match {want}")
        try:
            doc = json.loads(body)
        except ValueError:
            raise _Failed(PullError, f"manifest {target} from {endpoint.url} is not JSON") \
                from None
        if not isinstance(doc, dict):
            raise _Failed(PullError, f"manifest {target} from {endpoint.url} is not an object")
        if doc.get("schemaVersion") == 1:
            raise _Failed(PullError, f"{ref} is a Docker schema 1 image, which kwire (like "
                                     "containerd 2) does not pull; push it again with a "
                                     "current client")
        return _media_type(doc, content_type), digest, body

    # ---- blobs

    async def _fetch_blob(self, endpoints: list[Endpoint], ref: Reference,
                          desc: Descriptor, what: str) -> None:
        if self.store.claim_blob(desc.digest):
            return
        async with self._downloads:
            if self.store.claim_blob(desc.digest):  # another pull brought it meanwhile
                return
            await self._across(endpoints, lambda ep: self._download(ep, ref, desc, what),
                               f"failed to fetch {what} {desc.digest}")

    async def _download(self, endpoint: Endpoint, ref: Reference, desc: Descriptor,
                        what: str) -> None:
        log.debug("fetching %s %s of %s from %s", what, desc.digest, ref, endpoint.url)
        resp = await self._get(endpoint, ref, f"blobs/{desc.digest}")
        async with resp:
            await _check(resp, f"{what} {desc.digest}")
            body = _BodyReader(resp.content, asyncio.get_running_loop(), desc)
            try:
                await asyncio.to_thread(self.store.put_blob, body, desc.digest)
            except (aiohttp.ClientError, TimeoutError) as e:
                raise _Failed(RegistryUnreachable, f"reading {resp.url}: {_reason(e)}") \
                    from None
            except ImageError as e:
                raise _Failed(PullError, f"from {endpoint.url}: {e}") from None
            finally:
                body.abandon()

    # ---- HTTP

    async def _get(self, endpoint: Endpoint, ref: Reference, path: str,
                   accept: str | None = None) -> aiohttp.ClientResponse:
        """GET ``<endpoint>/<repository>/<path>``, answering one auth challenge."""
        repository = endpoint.repository(ref.path)
        url = f"{endpoint.url}/{repository}/{path}"
        # containerd names the upstream registry to mirrors, for those serving several.
        params = {"ns": endpoint.registry} if endpoint.mirror else None
        headers = {"Accept": accept} if accept else {}
        key = (endpoint.url, repository)
        if key in self._auth:
            headers["Authorization"] = self._auth[key]
        resp = await self._send(endpoint, url, headers, params)
        if resp.status != 401:
            return resp
        challenges = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
        resp.release()
        self._auth[key] = await self._authorize(endpoint, repository, challenges, url)
        headers["Authorization"] = self._auth[key]
        return await self._send(endpoint, url, headers, params)

    async def _send(self, endpoint: Endpoint, url: str, headers: dict[str, str],
                    params: dict[str, str] | list[tuple[str, str]] | None = None,
                    ) -> aiohttp.ClientResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=TIMEOUT, auto_decompress=False,
                headers={"User-Agent": f"kwire/{__version__}"})
        try:
            return await self._session.get(url, headers=headers, params=params,
                                           ssl=self._ssl_for(endpoint, url))
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise _Failed(RegistryUnreachable,
                          f'failed to do request: GET "{url}": {_reason(e)}') from None

    def _ssl_for(self, endpoint: Endpoint, url: str) -> ssl.SSLContext | bool:
        """The endpoint's TLS settings for its own host; defaults elsewhere (a token
        realm on another host)."""
        if urlsplit(url).netloc != endpoint.host:
            return True
        if endpoint.host not in self._ssl:
            self._ssl[endpoint.host] = endpoint.config.tls.ssl_context()
        return self._ssl[endpoint.host]

    async def _authorize(self, endpoint: Endpoint, repository: str,
                         challenges: list[Challenge], url: str) -> str:
        """The Authorization header that answers a 401's challenges."""
        auth = endpoint.config.auth
        for challenge in challenges:
            if challenge.scheme == "bearer":
                return "Bearer " + await self._token(endpoint, repository, challenge, auth)
        if any(c.scheme == "basic" for c in challenges):
            if auth is None:
                raise _Failed(PullUnauthorized,
                              f"pull access denied: {endpoint.host} wants a username and "
                              f"password (configs.{endpoint.host}.auth in registries.yaml)")
            return auth.header
        raise _Failed(PullUnauthorized, f"failed to authorize: {url} answered 401 without "
                                        "a Bearer or Basic challenge")

    async def _token(self, endpoint: Endpoint, repository: str, challenge: Challenge,
                     auth: RegistryAuth | None) -> str:
        """A token from the challenge's realm (distribution's token auth), for the
        scope the registry asked for, else pulling this repository."""
        realm = challenge.params.get("realm", "")
        if urlsplit(realm).scheme not in ("http", "https"):
            raise _Failed(PullUnauthorized, f"failed to authorize: bad token realm {realm!r}")
        scopes = (challenge.params.get("scope") or f"repository:{repository}:pull").split()
        params = [("scope", s) for s in scopes]
        if "service" in challenge.params:
            params.insert(0, ("service", challenge.params["service"]))
        headers = {"Authorization": auth.header} if auth else {}
        kind = "oauth" if auth else "anonymous"
        resp = await self._send(endpoint, realm, headers, params)
        async with resp:
            if resp.status != 200:
                raise _Failed(PullUnauthorized,
                              f"failed to authorize: failed to fetch {kind} token: unexpected "
                              f"status from GET request to {realm}: {resp.status} {resp.reason}")
            try:
                body = json.loads(await _read_body(resp, MAX_MANIFEST_BYTES))
                token = body.get("token") or body.get("access_token")
            except (ValueError, AttributeError):
                token = None
        if not token or not isinstance(token, str):
            raise _Failed(PullUnauthorized, f"failed to authorize: {realm} gave no token")
        return token

    async def _across(self, endpoints: list[Endpoint],
                      attempt: Callable[[Endpoint], Awaitable[T]], context: str) -> T:
        """The first endpoint's success. When all fail, the last failure that is not
        "not found" decides the error, as in containerd's resolver: a mirror without
        the image and an upstream that is down means "unreachable"."""
        failures: list[_Failed] = []
        for endpoint in endpoints:
            try:
                return await attempt(endpoint)
            except _Failed as e:
                log.info("%s: %s: %s", context, endpoint.url, e.detail)
                failures.append(e)
        if not failures:
            raise _Failed(RegistryUnreachable, f"{context}: no endpoint to pull from "
                                               "(disable_default_endpoint is set)")
        kind = next((f.kind for f in reversed(failures) if f.kind is not PullNotFound),
                    PullNotFound)
        details = "; ".join(dict.fromkeys(f.detail for f in failures))
        raise _Failed(kind, f"{context}: {details}")


async def pull(store: ImageStore, ref: Reference | str, *,
               registries: RegistriesConfig | None = None) -> Image:
    """Pull one image with a Puller of its own (see Puller.pull)."""
    async with Puller(store, registries) as puller:
        return await puller.pull(ref)


def pull_sync(store: ImageStore, ref: Reference | str, *,
              registries: RegistriesConfig | None = None) -> Image:
    """pull() for callers without an event loop, such as the CLI."""
    return asyncio.run(pull(store, ref, registries=registries))


# ---------------------------------------------------------------- helpers


class _BodyReader:
    """A blocking file over a response body, so that ImageStore.put_blob can hash and
    write it in a worker thread while each read() runs on the event loop. It refuses
    more bytes than the descriptor announces, and stops once abandoned."""

    def __init__(self, content: aiohttp.StreamReader, loop: asyncio.AbstractEventLoop,
                 desc: Descriptor):
        self._content = content
        self._loop = loop
        self._desc = desc
        self._size = 0
        self._pending: concurrent.futures.Future[bytes] | None = None
        self._abandoned = False

    def read(self, n: int = -1) -> bytes:
        if self._abandoned:
            raise ImageError(f"download of {self._desc.digest} abandoned")
        self._pending = asyncio.run_coroutine_threadsafe(self._content.read(n), self._loop)
        chunk = self._pending.result(timeout=READ_TIMEOUT)
        self._size += len(chunk)
        if self._size > self._desc.size:
            raise ImageError(f"blob {self._desc.digest} is larger than the "
                             f"{self._desc.size} bytes its descriptor says")
        return chunk

    def abandon(self) -> None:
        """Called when the pull stops waiting: a read still pending fails now."""
        self._abandoned = True
        if self._pending is not None:
            self._pending.cancel()


async def _read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    body = await resp.content.read(limit + 1)
    if len(body) > limit:
        raise _Failed(PullError, f"{resp.url}: answer larger than {limit} bytes")
    return body


async def _check(resp: aiohttp.ClientResponse, what: str) -> None:
    """Turn an error status into an endpoint failure of the matching kind."""
    if resp.status == 200:
        return
    if resp.status == 404:
        raise _Failed(PullNotFound, f"{what}: not found")
    message = _registry_errors(await resp.content.read(64 << 10))
    if resp.status in (401, 403):
        raise _Failed(PullUnauthorized, "pull access denied, repository does not exist or "
                                        f"may require authorization: server message: "
                                        f"{message or resp.reason}")
    status = f"unexpected status from GET request to {resp.url}: {resp.status} {resp.reason}"
    if message:
        status += f": {message}"
    raise _Failed(RegistryUnreachable if resp.status >= 500 else PullError, status)


def _registry_errors(body: bytes) -> str:
    """The distribution API's error body, ``{"errors": [{"code", "message"}]}``,
    as ``code: message`` (Docker Hub: "insufficient_scope: authorization failed")."""
    try:
        errors = json.loads(body).get("errors") or []
        return "; ".join(f"{str(e.get('code', '')).lower()}: {e.get('message', '')}"
                         for e in errors)
    except (ValueError, AttributeError):
        return ""


def _media_type(doc: dict[str, Any], content_type: str) -> str:
    """A manifest's type: its own mediaType, else the response's, else its shape (OCI
    documents may leave mediaType out)."""
    if doc.get("mediaType"):
        return str(doc["mediaType"])
    if content_type in MANIFEST_TYPES + INDEX_TYPES:
        return content_type
    if "manifests" in doc:
        return OCI_INDEX
    return OCI_MANIFEST if "config" in doc else ""


def _image_parts(manifest: dict[str, Any], digest: str) -> tuple[Descriptor, list[Descriptor]]:
    """The config and layer descriptors of a manifest that is a runnable image."""
    if not isinstance(manifest.get("config"), dict):
        raise _Failed(PullError, f"manifest {digest} has no config")
    config = Descriptor.from_json(manifest["config"])
    if config.media_type not in CONFIG_TYPES:
        raise _Failed(PullError, f"manifest {digest} is not a container image "
                                 f"(config type {config.media_type})")
    layers = [Descriptor.from_json(d) for d in manifest.get("layers") or []]
    for layer in layers:
        if "zstd" in layer.media_type:
            raise _Failed(PullError, f"layer {layer.digest} is zstd-compressed "
                                     f"({layer.media_type}), which kwire cannot unpack")
    return config, layers


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__
