"""kwire.client.rest against the in-process fake API: paths, verbs, errors,
paging, watch streams, discovery, kubeconfig and TLS."""
import asyncio
from contextlib import aclosing

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from fake_api import FakeAPI, with_fake

from kwire.client import ApiError, Client, KubeconfigError, resource_path


def cm(name, ns="default", labels=None, **data):
    meta = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


@pytest.mark.parametrize("args, path", [
    (("v1", "pods"), "/api/v1/pods"),
    (("v1", "pods", "ns1"), "/api/v1/namespaces/ns1/pods"),
    (("v1", "pods", "ns1", "web"), "/api/v1/namespaces/ns1/pods/web"),
    (("v1", "pods", "ns1", "web", "binding"), "/api/v1/namespaces/ns1/pods/web/binding"),
    (("v1", "namespaces", None, "ns1", "finalize"), "/api/v1/namespaces/ns1/finalize"),
    (("apps/v1", "deployments", "x"), "/apis/apps/v1/namespaces/x/deployments"),
    (("discovery.k8s.io/v1", "endpointslices"), "/apis/discovery.k8s.io/v1/endpointslices"),
    (("v1", "configmaps", "a b", "c/d"), "/api/v1/namespaces/a%20b/configmaps/c%2Fd"),
])
def test_resource_path(args, path):
    assert resource_path(*args) == path


@with_fake
async def test_crud(fake, client):
    created = await client.create("v1", "configmaps", cm("one", a="1"))
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    assert fake.requests[-1][:2] == ("POST", "/api/v1/namespaces/default/configmaps")
    got = await client.get("v1", "configmaps", "one", "default")
    assert got["data"] == {"a": "1"}
    got["data"]["b"] = "2"
    updated = await client.update("v1", "configmaps", got)
    assert updated["data"] == {"a": "1", "b": "2"}
    patched = await client.patch("v1", "configmaps", "one", {"data": {"a": None, "c": "3"}},
                                 "default")
    assert patched["data"] == {"b": "2", "c": "3"}
    patched = await client.patch("v1", "configmaps", "one",
                                 [{"op": "replace", "path": "/data/b", "value": "x"}],
                                 "default", patch_type="json")
    assert patched["data"] == {"b": "x", "c": "3"}
    await client.delete("v1", "configmaps", "one", "default", propagation_policy="Background",
                        grace_period_seconds=0, preconditions={"uid": created["metadata"]["uid"]})
    assert fake.bodies[-1] == {"kind": "DeleteOptions", "apiVersion": "v1",
                               "propagationPolicy": "Background", "gracePeriodSeconds": 0,
                               "preconditions": {"uid": created["metadata"]["uid"]}}
    assert fake.get("v1", "configmaps", "one", "default") is None


@with_fake
async def test_update_status_and_subresource_request(fake, client):
    ns = await client.create("v1", "namespaces", {"metadata": {"name": "n1"}})
    ns["status"]["conditions"] = [{"type": "X", "status": "True"}]
    await client.update_status("v1", "namespaces", ns)
    assert fake.requests[-1][:2] == ("PUT", "/api/v1/namespaces/n1/status")
    ns = await client.get("v1", "namespaces", "n1")
    ns["spec"]["finalizers"] = []
    done = await client.request("PUT", resource_path("v1", "namespaces", name="n1",
                                                     subresource="finalize"), body=ns)
    assert done["spec"]["finalizers"] == []


@with_fake
async def test_errors_carry_the_status(fake, client):
    with pytest.raises(ApiError) as e:
        await client.get("v1", "configmaps", "missing", "default")
    assert (e.value.code, e.value.reason) == (404, "NotFound")
    assert e.value.message == 'configmaps "missing" not found'
    await client.create("v1", "configmaps", cm("dup"))
    with pytest.raises(ApiError) as e:
        await client.create("v1", "configmaps", cm("dup"))
    assert e.value.code == 409 and e.value.reason == "AlreadyExists"


def test_non_status_error_bodies_become_a_status():
    async def main():
        async def handler(request):
            return web.Response(status=503, text="upstream down")
        app = web.Application()
        app.router.add_get("/api/v1/pods", handler)
        async with TestServer(app, host="127.0.0.1") as server:
            async with Client(str(server.make_url("")).rstrip("/")) as client:
                with pytest.raises(ApiError) as e:
                    await client.list("v1", "pods")
        assert e.value.code == 503 and e.value.message == "upstream down"
    asyncio.run(main())


@with_fake
async def test_list_follows_continue_tokens_and_fills_kind(fake, client):
    for i in range(5):
        fake.put("v1", "configmaps", cm(f"c{i}", labels={"even": str(i % 2 == 0)}))
    fake.put("v1", "configmaps", cm("other", ns="elsewhere"))
    items, rv = await client.list("v1", "configmaps", "default", limit=2)
    assert [i["metadata"]["name"] for i in items] == [f"c{i}" for i in range(5)]
    assert fake.count("GET", "/api/v1/namespaces/default/configmaps") == 3
    assert rv == str(fake.revision)
    assert all(i["kind"] == "ConfigMap" and i["apiVersion"] == "v1" for i in items)
    evens, _ = await client.list("v1", "configmaps", label_selector="even=True")
    assert [i["metadata"]["name"] for i in evens] == ["c0", "c2", "c4"]
    everywhere, _ = await client.list("v1", "configmaps")
    assert len(everywhere) == 6


@with_fake
async def test_watch_streams_events_from_a_resource_version(fake, client):
    fake.put("v1", "configmaps", cm("before"))
    _, rv = await client.list("v1", "configmaps", "default")
    fake.put("v1", "configmaps", cm("a"))
    fake.put("v1", "configmaps", cm("a", k="v"))
    fake.remove("v1", "configmaps", "a", "default")
    seen = []
    async with aclosing(client.watch("v1", "configmaps", "default", resource_version=rv,
                                     timeout_seconds=5, allow_bookmarks=True)) as events:
        async for etype, obj in events:
            seen.append((etype, obj["metadata"]["name"]))
            if len(seen) == 3:
                break
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    query = fake.requests[-1][2]
    assert query == {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "5",
                     "allowWatchBookmarks": "true"}


@with_fake
async def test_watch_ends_when_the_server_ends_the_stream(fake, client):
    fake.put("v1", "configmaps", cm("a"))
    seen = []

    async def consume():
        async for etype, obj in client.watch("v1", "configmaps"):
            seen.append(etype)
    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    fake.end_watches()
    await asyncio.wait_for(task, 5)
    assert seen == ["ADDED"]


@with_fake
async def test_watch_expired_raises_410(fake, client):
    fake.put("v1", "configmaps", cm("a"))
    fake.put("v1", "configmaps", cm("b"))
    fake.expire()
    with pytest.raises(ApiError) as e:
        async for _ in client.watch("v1", "configmaps", resource_version="1"):
            pass
    assert (e.value.code, e.value.reason) == (410, "Expired")
    fake.http_expired = True
    with pytest.raises(ApiError) as e:
        async for _ in client.watch("v1", "configmaps", resource_version="1"):
            pass
    assert e.value.code == 410


@with_fake
async def test_discover_skips_subresources(fake, client):
    resources = await client.discover()
    assert sorted((r.api_version, r.plural) for r in resources) == [
        ("apps/v1", "replicasets"), ("v1", "configmaps"), ("v1", "namespaces"), ("v1", "nodes"),
        ("v1", "pods")]
    rs = next(r for r in resources if r.plural == "replicasets")
    assert (rs.group, rs.version, rs.kind, rs.namespaced) == ("apps", "v1", "ReplicaSet", True)
    assert rs.supports("list", "watch", "delete") and not rs.supports("escalate")


def test_from_kubeconfig_token_and_context(tmp_path):
    async def main():
        async with FakeAPI(token="s3cret") as fake:
            url = str(fake.server.make_url("")).rstrip("/")
            path = tmp_path / "config"
            path.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "other",
                "clusters": [{"name": "c", "cluster": {"server": url}},
                             {"name": "o", "cluster": {"server": "http://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "s3cret"}}],
                "contexts": [{"name": "mine", "context": {"cluster": "c", "user": "u"}},
                             {"name": "other", "context": {"cluster": "o", "user": "u"}}]}))
            async with Client.from_kubeconfig(path, context="mine") as client:
                assert (await client.create("v1", "configmaps", cm("a")))["metadata"]["name"] == "a"
            async with Client(url) as anonymous:
                with pytest.raises(ApiError) as e:
                    await anonymous.get("v1", "configmaps", "a", "default")
                assert e.value.code == 401
    asyncio.run(main())
    with pytest.raises(KubeconfigError):
        Client.from_kubeconfig(tmp_path / "config", context="absent")


def test_tls_with_the_cluster_kubeconfig(tmp_path):
    """The kubeconfig `kwire up` writes (CA, token and client certificate as
    *-data) gives a client that verifies the server and presents its certificate."""
    from kwire.cluster import kubeconfig, pki
    from kwire.cluster.config import ClusterConfig

    config = ClusterConfig(name="tls-test", state_dir=tmp_path / "state")
    config.state_dir.mkdir(parents=True)
    pki.ensure_pki(config)
    path = tmp_path / "kubeconfig"
    kubeconfig.write(path, kubeconfig.build(config, "tok"))

    async def main():
        fake = FakeAPI(token="tok")
        url = await fake.start(ssl=pki.server_ssl_context(config))
        try:
            doc = yaml.safe_load(path.read_text())
            doc["clusters"][0]["cluster"]["server"] = url
            path.write_text(yaml.safe_dump(doc))
            async with Client.from_kubeconfig(path) as client:
                items, _ = await client.list("v1", "namespaces")
                assert items == []
            untrusted = Client(url, token="tok")
            with pytest.raises(Exception) as e:
                await untrusted.list("v1", "namespaces")
            await untrusted.close()
            assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)
        finally:
            await fake.close()
    asyncio.run(main())
