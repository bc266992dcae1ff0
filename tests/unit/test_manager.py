"""The embedded controller manager: starts the controllers on shared informers,
restarts a crashed one, and stops everything when asked."""
import asyncio

from fake_api import eventually, with_fake

from kwire.controllers import manager


def leftover_tasks():
    return [t for t in asyncio.all_tasks()
            if t.get_name().startswith(("<Informer", "controller-", "gc-", "namespace-"))]


@with_fake
async def test_runs_the_controllers_until_stopped(fake, client):
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(client, stop))
    rs = await client.create("apps/v1", "replicasets",
                             {"metadata": {"name": "rs", "namespace": "default"}})
    await client.create("v1", "pods", {"metadata": {
        "name": "p", "namespace": "default",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                             "uid": rs["metadata"]["uid"]}]}})
    await client.create("v1", "namespaces", {"metadata": {"name": "gone"}})
    await client.create("v1", "configmaps", {"metadata": {"name": "c", "namespace": "gone"}})
    await eventually(lambda: len(fake.watchers) == 5)
    await client.delete("apps/v1", "replicasets", "rs", "default")
    await client.delete("v1", "namespaces", "gone")
    await eventually(lambda: fake.get("v1", "pods", "p", "default") is None)
    await eventually(lambda: fake.get("v1", "namespaces", "gone") is None)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert leftover_tasks() == []
    await eventually(lambda: not fake.watchers)


def test_a_crashing_controller_is_restarted(monkeypatch):
    monkeypatch.setattr(manager, "RESTART_DELAY", (0.01, 0.01))
    runs = []

    class Crashy:
        def __init__(self, client, informers):
            self.informers = informers

        async def run(self):
            runs.append(self.informers)
            if len(runs) == 1:
                raise RuntimeError("boom")
            await asyncio.Event().wait()

    @with_fake
    async def body(fake, client):
        stop = asyncio.Event()
        task = asyncio.create_task(manager.run(client, stop, (("crashy", Crashy),)))
        await eventually(lambda: len(runs) == 2)
        assert runs[0] is runs[1]  # the informers stay shared across restarts
        stop.set()
        await asyncio.wait_for(task, 5)
        assert leftover_tasks() == []
    body()
