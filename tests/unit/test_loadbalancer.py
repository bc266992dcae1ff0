"""The service load-balancer controller: the pure assignment of pool addresses, then the
controller against the in-process fake API (status, finalizer, events, release)."""
import asyncio

from fake_api import DEFAULT_RESOURCES, FakeAPI, eventually

from kwire.client import Client, Informers
from kwire.controllers.loadbalancer import (FINALIZER, Assignment, LoadBalancerController,
                                            assign, load_balancer_controller)

POOL = "172.30.5.192/29"
RESERVED = ("172.30.5.0", "172.30.5.1", "172.30.5.255")


def service(name: str, *, created: str = "2026-01-01T00:00:00Z", type_: str = "LoadBalancer",
            ips: tuple[str, ...] = (), lb_ip: str | None = None, lb_class: str | None = None,
            namespace: str = "default", deleting: bool = False) -> dict:
    spec = {"type": type_, "ports": [{"port": 80, "protocol": "TCP"}]}
    if lb_ip:
        spec["loadBalancerIP"] = lb_ip
    if lb_class:
        spec["loadBalancerClass"] = lb_class
    meta = {"name": name, "namespace": namespace, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ips]}}}


# -- assign --------------------------------------------------------------------------------

def test_lowest_free_addresses_go_oldest_first_and_held_ones_stay():
    services = [service("new", created="2026-01-02T00:00:00Z"), service("old"),
                service("held", ips=("172.30.5.196",), created="2026-01-03T00:00:00Z")]
    assert assign(services, POOL, RESERVED) == {
        "default/old": Assignment("172.30.5.193"), "default/new": Assignment("172.30.5.194"),
        "default/held": Assignment("172.30.5.196")}


def test_only_default_class_load_balancers_not_being_deleted_want_one():
    services = [service("cluster-ip", type_="ClusterIP"), service("metallb", lb_class="x/y"),
                service("going", deleting=True, ips=("172.30.5.193",)), service("lb")]
    assert assign(services, POOL) == {"default/lb": Assignment("172.30.5.193")}


def test_a_conflict_leaves_the_address_to_the_older_service():
    services = [service("b", ips=("172.30.5.193",), created="2026-01-02T00:00:00Z"),
                service("a", ips=("172.30.5.193",))]
    assert assign(services, POOL) == {"default/a": Assignment("172.30.5.193"),
                                      "default/b": Assignment("172.30.5.194")}


def test_requested_load_balancer_ip_is_honoured_only_when_free_and_in_the_pool():
    services = [service("asks", lb_ip="172.30.5.197"),
                service("outside", lb_ip="10.0.0.1"),
                service("reserved", lb_ip="172.30.5.1"),
                service("late", lb_ip="172.30.5.197", created="2026-01-02T00:00:00Z",
                        ips=("172.30.5.193",))]
    assert assign(services, "172.30.5.0/24", RESERVED) == {
        "default/asks": Assignment("172.30.5.197"),
        "default/outside": Assignment(problem="requested loadBalancerIP 10.0.0.1 is not an "
                                              "address of the pool 172.30.5.0/24"),
        "default/reserved": Assignment(problem="requested loadBalancerIP 172.30.5.1 is not an "
                                               "address of the pool 172.30.5.0/24"),
        "default/late": Assignment(problem="requested loadBalancerIP 172.30.5.197 is in use "
                                           "by service default/asks")}


def test_an_exhausted_pool_leaves_the_newest_pending():
    services = [service(f"s{i}", created=f"2026-01-0{i}T00:00:00Z") for i in range(1, 4)]
    # A /31 has two addresses, both usable, the broadcast address of the underlay not.
    assert assign(services, "172.30.5.254/31", RESERVED) == {
        "default/s1": Assignment("172.30.5.254"),
        "default/s2": Assignment(problem="no free address in pool 172.30.5.254/31"),
        "default/s3": Assignment(problem="no free address in pool 172.30.5.254/31")}
    assert assign(services[:1], None) == {
        "default/s1": Assignment(problem="this cluster has no load-balancer pool")}


def test_the_default_pool_never_hands_out_the_underlay_broadcast():
    services = [service(f"s{i:02}") for i in range(64)]
    got = assign(services, "172.30.5.192/26", RESERVED)
    ips = [a.ip for a in got.values() if a.ip]
    assert len(ips) == 62 and "172.30.5.255" not in ips and "172.30.5.192" not in ips


# -- the controller ------------------------------------------------------------------------

RESOURCES = (*DEFAULT_RESOURCES, ("v1", "services", "Service", True),
             ("v1", "events", "Event", True))


def run_controller(body, pool: str = "172.30.5.192/31"):
    async def main():
        async with FakeAPI(RESOURCES) as fake:
            async with Client(str(fake.server.make_url("")).rstrip("/")) as client:
                informers = Informers(client)
                controller = load_balancer_controller(pool, "172.30.5.0/24")(client, informers)
                assert isinstance(controller, LoadBalancerController)
                assert controller.reserved == list(RESERVED)
                task = asyncio.create_task(controller.run())
                try:
                    await body(fake, client)
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    await informers.stop()
    asyncio.run(main())


def ips_of(fake, name: str) -> list[str]:
    obj = fake.get("v1", "services", name, "default")
    return [i["ip"] for i in obj["status"]["loadBalancer"].get("ingress") or []] if obj else []


def reasons(fake, name: str) -> list[str]:
    return [e["reason"] for (_, _), e in sorted(fake.objects[("v1", "events")].items())
            if e["involvedObject"]["name"] == name]


def test_controller_assigns_releases_and_lets_deletion_finish():
    async def body(fake, client):
        fake.put("v1", "services", service("a"))
        fake.put("v1", "services", service("b", created="2026-01-02T00:00:00Z"))
        fake.put("v1", "services", service("c", created="2026-01-03T00:00:00Z"))
        await eventually(lambda: ips_of(fake, "a") == ["172.30.5.192"]
                         and ips_of(fake, "b") == ["172.30.5.193"])
        a = fake.get("v1", "services", "a", "default")
        assert a["metadata"]["finalizers"] == [FINALIZER]
        assert a["status"]["loadBalancer"]["ingress"] == [{"ip": "172.30.5.192",
                                                           "ipMode": "VIP"}]
        await eventually(lambda: "SyncLoadBalancerFailed" in reasons(fake, "c"))
        assert ips_of(fake, "c") == []
        assert {"EnsuringLoadBalancer", "EnsuredLoadBalancer"} <= set(reasons(fake, "a"))
        message = next(e["message"] for e in fake.objects[("v1", "events")].values()
                       if e["involvedObject"]["name"] == "c")
        assert message == "Error syncing load balancer: no free address in pool 172.30.5.192/31"

        # Deleting a: the finalizer holds it until the address is released, then it goes
        # and the pending Service gets the address.
        await client.delete("v1", "services", "a", "default")
        await eventually(lambda: fake.get("v1", "services", "a", "default") is None)
        await eventually(lambda: ips_of(fake, "c") == ["172.30.5.192"])
        # b stops being a LoadBalancer: status emptied, finalizer gone.
        b = fake.get("v1", "services", "b", "default")
        fake.put("v1", "services", {**b, "spec": {**b["spec"], "type": "ClusterIP"}})
        await eventually(lambda: ips_of(fake, "b") == [] and not
                         fake.get("v1", "services", "b", "default")["metadata"]["finalizers"])
        assert ips_of(fake, "c") == ["172.30.5.192"]

    run_controller(body)


def test_controller_after_a_restart_keeps_the_addresses_in_use():
    async def body(fake, client):
        held = service("held", ips=("172.30.5.193",), created="2026-01-05T00:00:00Z")
        held["metadata"]["finalizers"] = [FINALIZER]
        fake.put("v1", "services", held)
        fake.put("v1", "services", service("new", created="2026-01-06T00:00:00Z"))
        await eventually(lambda: ips_of(fake, "new") == ["172.30.5.192"])
        assert ips_of(fake, "held") == ["172.30.5.193"]

    run_controller(body)
