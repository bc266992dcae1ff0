"""Image pulls through the OCI distribution API: WWW-Authenticate parsing, endpoint
order for mirrors, registries.yaml, platform choice, and whole pulls against fake
registries on 127.0.0.1 (token and basic auth, mirrors, rewrites, broken blobs)."""
import asyncio
import base64
import functools
import gzip
import hashlib
import io
import json
import socket
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kwire.node.images import ImageStore, InvalidReference
from kwire.node.images import registry as registry_mod
from kwire.node.images.registry import (DOCKER_HUB_ENDPOINT, Challenge, HostConfig, Mirror,
                                        Puller, PullError, PullNotFound, PullUnauthorized,
                                        RegistriesConfig, RegistriesConfigError, RegistryAuth,
                                        RegistryUnreachable, endpoints_for, load_registries,
                                        parse_challenges, parse_registries, registries_for,
                                        select_platform)
from kwire.node.images.store import (OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST,
                                     host_platform)

OS, ARCH = host_platform()
OTHER_ARCH = "s390x" if ARCH != "s390x" else "riscv64"


@pytest.fixture
def tmp_path():
    """A temporary directory removed after the test, pass or fail."""
    with tempfile.TemporaryDirectory(prefix="kwire-registry-") as d:
        yield Path(d)


# ---------------------------------------------------------------- challenges


def test_parse_docker_hub_challenge():
    header = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
              'scope="repository:library/busybox:pull"')
    assert parse_challenges([header]) == [Challenge("bearer", {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull"})]


def test_parse_several_challenges_with_quoted_commas_and_escapes():
    headers = ['Basic realm="a, \\"b\\"", Bearer realm="http://x/token", error=invalid_token',
               'Negotiate']
    assert parse_challenges(headers) == [
        Challenge("basic", {"realm": 'a, "b"'}),
        Challenge("bearer", {"realm": "http://x/token", "error": "invalid_token"}),
        Challenge("negotiate", {}),
    ]


def test_parse_no_challenge():
    assert parse_challenges([]) == []
    assert parse_challenges([""]) == []


# ---------------------------------------------------------------- endpoints


def urls(registries, registry):
    return [(e.url, e.mirror) for e in endpoints_for(registries, registry)]


def test_default_endpoints():
    none = RegistriesConfig()
    assert urls(none, "docker.io") == [(DOCKER_HUB_ENDPOINT, False)]
    assert urls(none, "ghcr.io") == [("https://ghcr.io/v2", False)]
    assert urls(none, "registry.example.com:5000") == [("https://registry.example.com:5000/v2",
                                                        False)]
    # Loopback registries are plain HTTP, as Docker and containerd treat them.
    assert urls(none, "localhost:5000") == [("http://localhost:5000/v2", False)]
    assert urls(none, "127.0.0.1:5000") == [("http://127.0.0.1:5000/v2", False)]
    assert urls(none, "[::1]:5000") == [("http://[::1]:5000/v2", False)]


def test_mirrors_come_first_then_the_registry_itself():
    registries = parse_registries({"mirrors": {
        "docker.io": {"endpoint": ["http://127.0.0.1:5000", "mirror.example.com/hub/",
                                   "https://registry-1.docker.io", "https://other.example/v2"]},
        "*": {"endpoint": ["https://catchall.example"]},
    }})
    assert urls(registries, "docker.io") == [
        ("http://127.0.0.1:5000/v2", True),
        ("https://mirror.example.com/hub/v2", True),
        (DOCKER_HUB_ENDPOINT, False),  # listed among the mirrors: once, where listed
        ("https://other.example/v2", True),
    ]
    assert urls(registries, "quay.io") == [("https://catchall.example/v2", True),
                                           ("https://quay.io/v2", False)]


def test_disable_default_endpoint_only_for_mirrored_registries():
    registries = parse_registries({
        "mirrors": {"docker.io": {"endpoint": ["http://127.0.0.1:5000"]},
                    "airgap.example": {}},
        "disable_default_endpoint": True})
    assert urls(registries, "docker.io") == [("http://127.0.0.1:5000/v2", True)]
    assert urls(registries, "airgap.example") == []
    assert urls(registries, "quay.io") == [("https://quay.io/v2", False)]


def test_configs_by_endpoint_host_and_by_registry_for_its_own_endpoint():
    registries = parse_registries({
        "mirrors": {"docker.io": {"endpoint": ["https://mirror.example.com:8443"]}},
        "configs": {"mirror.example.com:8443": {"auth": {"username": "m", "password": "p"}},
                    "docker.io": {"auth": {"username": "hub", "password": "q"}}}})
    mirror, hub = endpoints_for(registries, "docker.io")
    assert mirror.config.auth == RegistryAuth("m", "p")
    assert hub.config.auth == RegistryAuth("hub", "q")
    assert endpoints_for(registries, "quay.io")[0].config == HostConfig()


def test_rewrites_apply_on_mirrors_only():
    registries = parse_registries({"mirrors": {"docker.io": {
        "endpoint": ["https://mirror.example.com"],
        "rewrite": {"^rancher/(.*)": "mirrorproject/rancher-images/$1",
                    "^library/(?P<name>.*)": "hub/${name}-$$"}}}})
    mirror, hub = endpoints_for(registries, "docker.io")
    assert mirror.repository("rancher/coredns") == "mirrorproject/rancher-images/coredns"
    assert mirror.repository("library/busybox") == "hub/busybox-$"
    assert mirror.repository("team/app") == "team/app"
    assert hub.repository("rancher/coredns") == "rancher/coredns"


# ---------------------------------------------------------------- registries.yaml

REGISTRIES_YAML = """\
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
    rewrite:
      "^library/(.*)": "hub/$1"
configs:
  "127.0.0.1:5000":
    auth:
      auth: dXNlcjpwYTpzcw==
    tls:
      insecure_skip_verify: true
  registry.example.com:
    auth: {username: u, password: p}
    tls: {ca_file: /etc/ssl/certs/ca-certificates.crt}
"""


def test_load_registries(tmp_path):
    path = tmp_path / "registries.yaml"
    path.write_text(REGISTRIES_YAML)
    config = load_registries(path)
    assert config.mirrors["docker.io"].endpoints == ("http://127.0.0.1:5000",)
    assert config.configs["127.0.0.1:5000"].auth == RegistryAuth("user", "pa:ss")
    assert config.configs["127.0.0.1:5000"].tls.ssl_context() is False
    assert config.configs["registry.example.com"].auth == RegistryAuth("u", "p")
    assert config.configs["registry.example.com"].tls.ca_file.endswith("ca-certificates.crt")
    assert not config.disable_default_endpoint


def test_empty_registries_yaml(tmp_path):
    path = tmp_path / "registries.yaml"
    path.write_text("")
    assert load_registries(path) == RegistriesConfig()


@pytest.mark.parametrize("doc, complaint", [
    ("- docker.io", "want a mapping"),
    ("mirrors: {docker.io: {endpoints: [x]}}", "unknown field 'endpoints'"),
    ("mirror: {}", "unknown field 'mirror'"),
    ("mirrors: {docker.io: {endpoint: http://x}}", "want a list of URLs"),
    ("mirrors: {docker.io: {endpoint: ['ftp://x']}}", "is not an http(s) URL"),
    ("mirrors: {docker.io: {rewrite: {'(': x}}}", "bad pattern"),
    ("configs: {x: {auth: {auth: '!!!'}}}", "want base64 of username:password"),
    ("configs: {x: {auth: {password: p}}}", "want username and password"),
    ("configs: {x: {auth: {identity_token: t}}}", "identity_token: not supported"),
    ("configs: {x: {tls: {insecure_skip_verify: 'yes'}}}", "want true or false"),
    ("configs: {x: {tls: {key_file: k}}}", "key_file needs cert_file"),
    ("disable_default_endpoint: 1", "want true or false"),
    ("mirrors: [", "not YAML"),
])
def test_bad_registries_yaml(tmp_path, doc, complaint):
    path = tmp_path / "registries.yaml"
    path.write_text(doc)
    with pytest.raises(RegistriesConfigError, match=str(path)) as e:
        load_registries(path)
    assert complaint in str(e.value)


def test_missing_registries_yaml(tmp_path):
    with pytest.raises(RegistriesConfigError, match="cannot read"):
        load_registries(tmp_path / "nope.yaml")


def test_registries_for_prefers_the_cluster_file(tmp_path, monkeypatch):
    machine = tmp_path / "etc-kwire-registries.yaml"
    monkeypatch.setattr(registry_mod, "MACHINE_REGISTRIES", machine)
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    assert registries_for(cluster) == RegistriesConfig()
    machine.write_text("mirrors: {docker.io: {endpoint: ['http://127.0.0.1:1']}}")
    assert registries_for(cluster).mirrors["docker.io"].endpoints == ("http://127.0.0.1:1",)
    assert registries_for(None).mirrors["docker.io"].endpoints == ("http://127.0.0.1:1",)
    (cluster / "registries.yaml").write_text("mirrors: {quay.io: {endpoint: ['http://127.0.0.1:2']}}")
    assert set(registries_for(cluster).mirrors) == {"quay.io"}


# ---------------------------------------------------------------- platforms


def entry(digest_char, os_name, arch, variant=None):
    platform = {"os": os_name, "architecture": arch}
    if variant:
        platform["variant"] = variant
    return {"mediaType": OCI_MANIFEST, "digest": "sha256:" + digest_char * 64, "size": 1,
            "platform": platform}


def test_select_platform_picks_the_host_and_skips_attestations():
    index = {"manifests": [entry("a", "unknown", "unknown"), entry("b", OS, OTHER_ARCH),
                           entry("c", OS, ARCH), entry("d", "windows", ARCH)]}
    assert select_platform(index).digest == "sha256:" + "c" * 64
    assert select_platform(index, ("linux", OTHER_ARCH)).digest == "sha256:" + "b" * 64
    assert select_platform(index, ("linux", "mips64le")) is None


def test_select_platform_prefers_the_usual_variant():
    index = {"manifests": [entry("a", "linux", "arm", "v6"), entry("b", "linux", "arm", "v7"),
                           entry("c", "linux", "arm64", "v9"), entry("d", "linux", "arm64")]}
    assert select_platform(index, ("linux", "arm")).digest == "sha256:" + "b" * 64
    assert select_platform(index, ("linux", "arm64")).digest == "sha256:" + "d" * 64


def test_select_platform_takes_a_lone_entry_without_platform():
    lone = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "e" * 64, "size": 1}
    assert select_platform({"manifests": [lone]}).digest == lone["digest"]


# ---------------------------------------------------------------- a fake registry


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class FakeImage:
    manifest: bytes
    blobs: dict[str, bytes]
    layer_digest: str

    @property
    def digest(self) -> str:
        return sha(self.manifest)


def make_image(text: str, arch: str = ARCH, layer_type: str = OCI_LAYER_GZIP) -> FakeImage:
    """A one-layer image whose /hello.txt holds ``text``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(text.encode())
        tf.addfile(info, io.BytesIO(text.encode()))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = canonical({"os": OS, "architecture": arch, "config": {"Cmd": ["cat", "/hello.txt"]},
                        "rootfs": {"type": "layers", "diff_ids": [sha(raw.getvalue())]}})
    manifest = canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": sha(layer), "size": len(layer)}]})
    return FakeImage(manifest, {sha(config): config, sha(layer): layer}, sha(layer))


def make_index(*images: tuple[FakeImage, str]) -> bytes:
    return canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest),
         "platform": {"os": OS, "architecture": arch}} for image, arch in images]})


@dataclass
class FakeRegistry:
    """The pull half of the distribution API, with distribution's token auth
    ("bearer"), basic auth ("basic") or none, recording what it was asked."""

    auth: str | None = None
    credentials: tuple[str, str] | None = None
    """Required at the token realm (bearer) or on every request (basic)."""
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    """Valid token -> the scope it grants."""
    stall: bool = False
    """Send half of each blob, then nothing more."""
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def push(self, repo: str, tag: str, image: FakeImage) -> None:
        self.manifests[(repo, tag)] = (OCI_MANIFEST, image.manifest)
        self.manifests[(repo, image.digest)] = (OCI_MANIFEST, image.manifest)
        self.blobs.update(image.blobs)

    def push_index(self, repo: str, tag: str, index: bytes, *images: FakeImage) -> None:
        self.manifests[(repo, tag)] = (OCI_INDEX, index)
        self.manifests[(repo, sha(index))] = (OCI_INDEX, index)
        for image in images:
            self.push(repo, image.digest, image)

    def blob_requests(self) -> list[str]:
        return [path for path, _ in self.requests if "/blobs/" in path]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._token)
        app.router.add_get("/v2/{name:.+}/manifests/{reference}", self._manifest)
        app.router.add_get("/v2/{name:.+}/blobs/{digest}", self._blob)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    def _basic_ok(self, request: web.Request) -> bool:
        user, password = self.credentials or ("", "")
        good = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return self.credentials is None or request.headers.get("Authorization") == good

    def _denied(self, request: web.Request) -> web.Response | None:
        name = request.match_info["name"]
        if self.auth == "basic" and not self._basic_ok(request):
            return web.json_response({"errors": [{"code": "UNAUTHORIZED", "message": "login"}]},
                                     status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        if self.auth == "bearer":
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if self.tokens.get(token) != f"repository:{name}:pull":
                challenge = (f'Bearer realm="http://{self.host}/token",service="fake",'
                             f'scope="repository:{name}:pull"')
                return web.json_response(
                    {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                    status=401, headers={"WWW-Authenticate": challenge})
        return None

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests.append(dict(request.query))
        if not self._basic_ok(request):
            return web.Response(status=401)
        token = f"token-{len(self.tokens)}"
        self.tokens[token] = request.query["scope"]
        return web.json_response({"token": token, "expires_in": 300})

    async def _manifest(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.query)))
        if (denied := self._denied(request)) is not None:
            return denied
        found = self.manifests.get((request.match_info["name"], request.match_info["reference"]))
        if found is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        media_type, body = found
        return web.Response(body=body, headers={"Content-Type": media_type,
                                                "Docker-Content-Digest": sha(body)})

    async def _blob(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.query)))
        if (denied := self._denied(request)) is not None:
            return denied
        body = self.blobs.get(request.match_info["digest"])
        if body is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        if self.stall:
            resp = web.StreamResponse(headers={"Content-Length": str(len(body))})
            await resp.prepare(request)
            await resp.write(body[:len(body) // 2])
            self.stalled.set()
            await asyncio.Event().wait()  # until the server closes
        return web.Response(body=body, content_type="application/octet-stream")


def with_registries(*specs: dict):
    """Run ``async def body(store, *registries)`` with started FakeRegistry(**spec)s
    and an empty store in a temporary directory (no asyncio plugin needed)."""
    def wrap(body):
        @functools.wraps(body)
        def test():
            async def main(root: Path):
                fakes = [FakeRegistry(**spec) for spec in specs]
                try:
                    for fake in fakes:
                        await fake.start()
                    await body(ImageStore(root / "store"), *fakes)
                finally:
                    for fake in fakes:
                        if fake.server is not None:
                            await fake.server.close()
            with tempfile.TemporaryDirectory(prefix="kwire-registry-") as d:
                asyncio.run(main(Path(d)))
        del test.__wrapped__  # pytest must see test's signature (none), not body's
        return test
    return wrap


def hello_text(store: ImageStore, image) -> str:
    dirs = store.layer_dirs(image.reference)
    return (dirs[-1] / "hello.txt").read_text()


# ---------------------------------------------------------------- pulls


@with_registries({"auth": "bearer"})
async def test_pull_index_with_anonymous_token(store, reg):
    mine, other = make_image("mine"), make_image("other", OTHER_ARCH)
    index = make_index((other, OTHER_ARCH), (mine, ARCH))
    reg.push_index("team/app", "1", index, mine, other)
    async with Puller(store) as puller:
        image = await puller.pull(f"{reg.host}/team/app:1")
        assert image.digest == mine.digest
        assert image.layers[0].descriptor.digest == mine.layer_digest
        assert image.cmd == ["cat", "/hello.txt"]
        assert hello_text(store, image) == "mine"
        assert store.resolve(f"{reg.host}/team/app:1").digest == mine.digest
        # One token, then kept for the manifests and blobs that follow.
        assert reg.token_requests == [{"service": "fake", "scope": "repository:team/app:pull"}]
        assert len(reg.blob_requests()) == 2
        assert not store.has_blob(other.layer_digest)

        # A second pull asks for the manifests again, but for no blob.
        await puller.pull(f"{reg.host}/team/app:1")
        assert len(reg.blob_requests()) == 2

        # A token the registry no longer honours is fetched anew.
        reg.tokens.clear()
        await puller.pull(f"{reg.host}/team/app:1")
        assert len(reg.token_requests) == 2


@with_registries({"auth": "bearer", "credentials": ("alice", "s3cret")})
async def test_token_realm_with_credentials(store, reg):
    reg.push("private/app", "1", make_image("private"))
    ref = f"{reg.host}/private/app:1"
    with pytest.raises(PullUnauthorized, match="failed to fetch anonymous token"):
        await registry_mod.pull(store, ref)
    registries = parse_registries({"configs": {reg.host: {
        "auth": {"username": "alice", "password": "s3cret"}}}})
    image = await registry_mod.pull(store, ref, registries=registries)
    assert hello_text(store, image) == "private"


@with_registries({"auth": "basic", "credentials": ("bob", "pw")})
async def test_basic_auth(store, reg):
    reg.push("app", "v1", make_image("basic"))
    ref = f"{reg.host}/app:v1"
    with pytest.raises(PullUnauthorized, match=f"configs.{reg.host}.auth"):
        await registry_mod.pull(store, ref)
    wrong = RegistriesConfig(configs={reg.host: HostConfig(RegistryAuth("bob", "nope"))})
    with pytest.raises(PullUnauthorized, match="may require authorization: "
                                               "server message: unauthorized: login"):
        await registry_mod.pull(store, ref, registries=wrong)
    right = RegistriesConfig(configs={reg.host: HostConfig(RegistryAuth("bob", "pw"))})
    image = await registry_mod.pull(store, ref, registries=right)
    assert hello_text(store, image) == "basic"


@with_registries({})
async def test_not_found_reads_like_containerd(store, reg):
    reg.push("team/app", "1", make_image("x"))
    ref = f"{reg.host}/team/app:nope"
    with pytest.raises(PullNotFound) as e:
        await registry_mod.pull(store, ref)
    assert str(e.value) == (f'failed to pull and unpack image "{ref}": failed to resolve '
                            f'reference "{ref}": {ref}: not found')
    with pytest.raises(PullNotFound):
        await registry_mod.pull(store, f"{reg.host}/team/other:1")
    assert store.list() == []


@with_registries({})
async def test_platform_missing_from_index(store, reg):
    other = make_image("other", OTHER_ARCH)
    reg.push_index("app", "1", make_index((other, OTHER_ARCH)), other)
    with pytest.raises(PullNotFound, match=f"no match for platform {OS}/{ARCH}"):
        await registry_mod.pull(store, f"{reg.host}/app:1")


def test_unreachable_registry(tmp_path):
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        ref = f"127.0.0.1:{s.getsockname()[1]}/app:1"
        with pytest.raises(RegistryUnreachable, match="failed to do request: GET"):
            registry_mod.pull_sync(ImageStore(tmp_path), ref)


def test_invalid_reference_is_not_a_pull_error(tmp_path):
    with pytest.raises(InvalidReference):
        registry_mod.pull_sync(ImageStore(tmp_path), "Bad//Name")


@with_registries({}, {})
async def test_mirror_then_default_endpoint(store, mirror, upstream):
    upstream.push("team/app", "1", make_image("upstream"))
    ref = f"{upstream.host}/team/app:1"
    registries = RegistriesConfig(mirrors={upstream.host: Mirror((f"http://{mirror.host}",))})
    image = await registry_mod.pull(store, ref, registries=registries)
    assert hello_text(store, image) == "upstream"
    # The mirror was asked first, and told which registry the image is from.
    assert mirror.requests == [("/v2/team/app/manifests/1", {"ns": upstream.host})]

    mirror.push("team/app", "2", make_image("mirrored"))
    image = await registry_mod.pull(store, f"{upstream.host}/team/app:2", registries=registries)
    assert hello_text(store, image) == "mirrored"
    assert not any("/manifests/2" in path for path, _ in upstream.requests)


@with_registries({}, {})
async def test_disable_default_endpoint(store, mirror, upstream):
    upstream.push("team/app", "1", make_image("upstream"))
    registries = RegistriesConfig(mirrors={upstream.host: Mirror((f"http://{mirror.host}",))},
                                  disable_default_endpoint=True)
    with pytest.raises(PullNotFound):
        await registry_mod.pull(store, f"{upstream.host}/team/app:1", registries=registries)
    assert upstream.requests == []


@with_registries({})
async def test_mirror_rewrite(store, mirror):
    mirror.push("mirrored/team/app", "1", make_image("rewritten"))
    registries = parse_registries({
        "mirrors": {"registry.invalid": {"endpoint": [f"http://{mirror.host}"],
                                         "rewrite": {"^team/(.*)": "mirrored/team/$1"}}},
        "disable_default_endpoint": True})
    image = await registry_mod.pull(store, "registry.invalid/team/app:1", registries=registries)
    assert hello_text(store, image) == "rewritten"
    assert str(image.reference) == "registry.invalid/team/app:1"  # stored under its own name


@with_registries({}, {})
async def test_failure_kind_follows_containerd(store, mirror, upstream):
    """Not found on the mirror and unreachable upstream: unreachable, both told."""
    ref = f"{upstream.host}/app:1"
    registries = RegistriesConfig(mirrors={upstream.host: Mirror((f"http://{mirror.host}",))})
    await upstream.server.close()
    with pytest.raises(RegistryUnreachable) as e:
        await registry_mod.pull(store, ref, registries=registries)
    assert f"{ref}: not found; failed to do request" in str(e.value)


@with_registries({})
async def test_corrupt_blob_is_refused(store, reg):
    image = make_image("good")
    reg.push("app", "1", image)
    reg.blobs[image.layer_digest] = gzip.compress(b"evil")[:len(reg.blobs[image.layer_digest])]
    with pytest.raises(PullError, match="does not match"):
        await registry_mod.pull(store, f"{reg.host}/app:1")
    assert not store.has_blob(image.layer_digest)
    assert store.list() == []
    assert list((store.root / "tmp").iterdir()) == []


@with_registries({})
async def test_oversized_blob_is_cut_off(store, reg):
    image = make_image("good")
    reg.push("app", "1", image)
    reg.blobs[image.layer_digest] += b"trailing junk"
    with pytest.raises(PullError, match="larger than"):
        await registry_mod.pull(store, f"{reg.host}/app:1")
    assert store.list() == []


@with_registries({})
async def test_pull_by_digest(store, reg):
    mine, other = make_image("mine"), make_image("other", OTHER_ARCH)
    index = make_index((mine, ARCH), (other, OTHER_ARCH))
    reg.push_index("app", "1", index, mine, other)
    by_manifest = await registry_mod.pull(store, f"{reg.host}/app@{mine.digest}")
    assert by_manifest.digest == mine.digest
    assert store.resolve(f"{reg.host}/app@{mine.digest}").digest == mine.digest
    # An index digest names the platform's manifest by that manifest's own digest.
    by_index = await registry_mod.pull(store, f"{reg.host}/app@{sha(index)}")
    assert by_index.digest == mine.digest
    assert str(by_index.reference) == f"{reg.host}/app@{mine.digest}"


@with_registries({})
async def test_wrong_manifest_for_a_digest_is_refused(store, reg):
    mine, other = make_image("mine"), make_image("other")
    reg.manifests[("app", mine.digest)] = (OCI_MANIFEST, other.manifest)
    with pytest.raises(PullError, match=f"does not match {mine.digest}"):
        await registry_mod.pull(store, f"{reg.host}/app@{mine.digest}")


@with_registries({})
async def test_zstd_layers_are_refused_before_download(store, reg):
    reg.push("app", "1", make_image("z", layer_type="application/vnd.oci.image.layer.v1.tar+zstd"))
    with pytest.raises(PullError, match="zstd"):
        await registry_mod.pull(store, f"{reg.host}/app:1")
    assert reg.blob_requests() == []


@with_registries({"stall": True})
async def test_cancelled_pull_leaves_nothing_behind(store, reg):
    """The agent cancels the pull of a deleted pod: the download stops, its worker
    thread ends and no partial blob or name stays."""
    reg.push("app", "1", make_image("slow" * 10000))
    task = asyncio.create_task(registry_mod.pull(store, f"{reg.host}/app:1"))
    await asyncio.wait_for(reg.stalled.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    for _ in range(100):
        if not any((store.root / "tmp").iterdir()):
            break
        await asyncio.sleep(0.05)
    assert list((store.root / "tmp").iterdir()) == []
    assert list((store.root / "blobs" / "sha256").iterdir()) == []
    assert store.list() == []
