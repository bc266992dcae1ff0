"""The prober and lifecycle handlers: the pure worker state, ports and requests,
each handler against small servers on 127.0.0.1, and the Prober's workers with
probe periods scaled down to milliseconds."""
import asyncio
import contextlib
import socket
import time
from pathlib import Path

import pytest
from aiohttp import web

from kwire.cluster.config import ClusterConfig
from kwire.cluster.pki import ensure_pki, server_ssl_context
from kwire.node.probes import (
    MAX_BODY, PortError, Prober, ProbeResult, ProbeState, ProbeType, expand_command, format_pod,
    go_quote, http_get_request, resolve_port, run_handler, run_probe, runtime_exec)
from kwire.node.runtime.runc import ExecResult

S, F, U, W = ProbeResult.Success, ProbeResult.Failure, ProbeResult.Unknown, ProbeResult.Warning
LOOPBACK = "127.0.0.1"
CONTAINER = {"name": "app", "ports": [{"name": "http", "containerPort": 80}],
             "env": [{"name": "FILE", "value": "/tmp/healthy"},
                     {"name": "FROM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
POD = {"metadata": {"name": "web", "namespace": "default", "uid": "u1"}}


# --- worker state ------------------------------------------------------------------------

def test_initial_results_and_defaults():
    for probe_type, initial in ((ProbeType.liveness, S), (ProbeType.readiness, F), (ProbeType.startup, U)):
        state = ProbeState.for_probe(probe_type, {})
        assert (state.success_threshold, state.failure_threshold) == (1, 3)
        assert state.result is None
        assert state.observe("c1") is initial
        assert state.observe("c1") is None


def test_success_threshold_is_one_except_for_readiness():
    spec = {"successThreshold": 3, "failureThreshold": 5}
    assert ProbeState.for_probe(ProbeType.liveness, spec).success_threshold == 1
    assert ProbeState.for_probe(ProbeType.startup, spec).success_threshold == 1
    readiness = ProbeState.for_probe(ProbeType.readiness, spec)
    assert (readiness.success_threshold, readiness.failure_threshold) == (3, 5)


def test_thresholds_count_runs_of_equal_outcomes():
    state = ProbeState.for_probe(ProbeType.readiness, {"successThreshold": 2, "failureThreshold": 3})
    state.observe("c1")
    assert state.record(S) is None
    assert state.record(S) is S
    assert state.record(F) is None
    assert state.record(F) is None
    assert state.record(S) is None  # a success breaks the failure run
    assert [state.record(F) for _ in range(3)] == [None, None, F]
    assert state.record(F) is None  # still Failure: no change to report
    assert state.result is F and not state.on_hold  # readiness never holds


def test_failed_liveness_holds_until_a_new_container():
    state = ProbeState.for_probe(ProbeType.liveness, {"failureThreshold": 2})
    state.observe("c1")
    assert state.record(F) is None
    assert state.record(F) is F
    assert state.on_hold
    assert not state.due(running_for=100, initial_delay=0, started=True)
    assert state.observe("c2") is S
    assert not state.on_hold and state.due(running_for=100, initial_delay=0, started=True)
    assert state.record(F) is None  # the new container starts a new run


def test_new_container_must_earn_success_threshold_again():
    state = ProbeState.for_probe(ProbeType.readiness, {"successThreshold": 2})
    state.observe("c1")
    state.record(S)
    assert state.record(S) is S
    assert state.observe("c2") is F
    assert state.record(S) is None
    assert state.record(S) is S


def test_due_initial_delay_and_startup_gating():
    startup = ProbeState.for_probe(ProbeType.startup, {})
    liveness = ProbeState.for_probe(ProbeType.liveness, {})
    assert startup.due(running_for=0, initial_delay=0, started=False)
    assert not startup.due(running_for=0, initial_delay=0, started=True)
    assert not liveness.due(running_for=0, initial_delay=0, started=False)
    assert liveness.due(running_for=0, initial_delay=0, started=True)
    assert not liveness.due(running_for=4.99, initial_delay=5, started=True)  # whole seconds
    assert liveness.due(running_for=5.0, initial_delay=5, started=True)


# --- ports, requests, messages -------------------------------------------------------------

def test_resolve_port():
    assert resolve_port(8080, CONTAINER) == 8080
    assert resolve_port("http", CONTAINER) == 80
    assert resolve_port("8081", CONTAINER) == 8081
    for port, message in (("web", 'strconv.Atoi: parsing "web": invalid syntax'),
                          (0, "invalid port number: 0"), (70000, "invalid port number: 70000")):
        with pytest.raises(PortError) as e:
            resolve_port(port, CONTAINER)
        assert str(e.value) == message


def test_http_get_request_defaults_and_overrides():
    req = http_get_request({"port": "http", "path": "/healthz?full=1"}, CONTAINER, "10.244.1.5")
    assert req.url == "http://10.244.1.5:80/healthz?full=1"
    assert req.headers == (("User-Agent", "kube-probe/1.32"), ("Accept", "*/*"))
    assert http_get_request({"port": 80}, CONTAINER, "10.244.1.5").url == "http://10.244.1.5:80/"
    assert http_get_request({"port": 443, "scheme": "HTTPS", "host": "10.0.0.9"}, CONTAINER,
                            "10.244.1.5").url == "https://10.0.0.9:443/"
    assert http_get_request({"port": 80}, CONTAINER, "fd00::5").url == "http://[fd00::5]:80/"
    custom = http_get_request({"port": 80, "httpHeaders": [
        {"name": "x-custom-thing", "value": "1"}, {"name": "user-agent", "value": "mine"},
        {"name": "Accept", "value": ""}, {"name": "host", "value": "example.com"}]}, CONTAINER, "10.0.0.1",
        "lifecycle")
    assert custom.headers == (("X-Custom-Thing", "1"), ("User-Agent", "mine"), ("Host", "example.com"))
    assert http_get_request({"port": 80}, CONTAINER, "10.0.0.1", "lifecycle").headers[0] == \
        ("User-Agent", "kube-lifecycle/1.32")


def test_go_spellings():
    assert go_quote('say "hi"\n\x00') == '"say \\"hi\\"\\n\\x00"'
    assert format_pod(POD) == "web_default(u1)"
    assert expand_command(["cat", "$(FILE)", "$(FROM)", "$(NOPE)", "$$(FILE)"], CONTAINER) == \
        ["cat", "/tmp/healthy", "", "$(NOPE)", "$(FILE)"]


# --- servers ---------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def serve(routes, ssl_context=None):
    """An aiohttp app on 127.0.0.1 at a free port; yields the port."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)  # cut /slow short
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]
    finally:
        await runner.cleanup()


def free_port() -> int:
    """A port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def probe_routes(seen):
    async def ok(request):
        seen.append(dict(request.headers))
        return web.Response(text="fine")

    async def other_host(request):
        port = request.url.port
        body = "x" * int(request.query["size"]) if "size" in request.query else "moved"
        return web.Response(status=302, text=body,
                            headers={"Location": f"http://localhost:{port}/ok"})

    async def loop(request):
        seen.append("loop")
        raise web.HTTPFound("/loop")

    async def slow(request):
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def host(request):
        return web.Response(text=request.host)

    async def same(request):
        raise web.HTTPFound("/ok")

    async def fail(request):
        return web.Response(status=500, text="secret")

    return {"/ok": ok, "/same": same, "/other": other_host, "/fail": fail, "/loop": loop,
            "/slow": slow, "/host": host}


def http_probe(port, path, **extra):
    return {"httpGet": {"port": port, "path": path, **extra}}


async def no_exec(argv, timeout):
    raise AssertionError("no exec expected")


def check(spec, container=CONTAINER):
    """run_probe of an httpGet or tcpSocket probe of a pod at 127.0.0.1."""
    return run_probe(spec, pod_ip=LOOPBACK, container=container, exec_fn=no_exec)


def probe(spec, exec_fn=no_exec):
    return asyncio.run(run_probe(spec, pod_ip=LOOPBACK, container=CONTAINER, exec_fn=exec_fn))


def test_http_probe_outcomes():
    seen = []

    async def main():
        async with serve(probe_routes(seen)) as port:
            named = {**CONTAINER, "ports": [{"name": "web", "containerPort": port}]}
            return [
                await check(http_probe(port, "/ok", httpHeaders=[{"name": "X-Probe", "value": "yes"}])),
                await check(http_probe(port, "/same")),
                await check(http_probe(port, "/other")),
                await check(http_probe(port, "/other?size=20000")),
                await check(http_probe(port, "/fail")),
                await check(http_probe(port, "/host", httpHeaders=[{"name": "Host", "value": "example.com"}])),
                await check(http_probe("web", "/ok"), named),
                await check(http_probe("nope", "/ok")),
            ]

    ok, same, other, big, fail, host, named, unnamed = asyncio.run(main())
    assert ok == (S, "fine")
    assert seen[0]["User-Agent"] == "kube-probe/1.32" and seen[0]["Accept"] == "*/*"
    assert seen[0]["X-Probe"] == "yes" and "Accept-Encoding" not in seen[0]
    assert same == (S, "fine")
    assert other == (W, "Probe terminated redirects, Response body: moved")
    assert big[0] is W and big[1] == "Probe terminated redirects, Response body: " + "x" * MAX_BODY
    assert fail == (F, "HTTP probe failed with statuscode: 500")
    assert host == (S, "example.com")
    assert named == (S, "fine")
    assert unnamed == (U, 'strconv.Atoi: parsing "nope": invalid syntax')


def test_http_probe_errors():
    seen = []

    async def main():
        async with serve(probe_routes(seen)) as port:
            slow = await check(http_probe(port, "/slow") | {"timeoutSeconds": 0.3})
            loop = await check(http_probe(port, "/loop"))
            tls = await check(http_probe(port, "/ok", scheme="HTTPS"))
            return port, slow, loop, tls

    port, slow, loop, tls = asyncio.run(main())
    assert slow == (F, (f'Get "http://127.0.0.1:{port}/slow": context deadline exceeded '
                        "(Client.Timeout exceeded while awaiting headers)"))
    assert loop == (F, f'Get "http://127.0.0.1:{port}/loop": stopped after 10 redirects')
    assert seen.count("loop") == 10
    assert tls == (F, f'Get "https://127.0.0.1:{port}/ok": http: server gave HTTP response to HTTPS client')
    closed = free_port()
    assert probe(http_probe(closed, "/")) == (
        F, f'Get "http://127.0.0.1:{closed}/": dial tcp 127.0.0.1:{closed}: connect: connection refused')


def test_https_probe_does_not_verify_the_certificate(tmp_path: Path):
    config = ClusterConfig(name="probe", state_dir=tmp_path)
    ensure_pki(config)  # a serving certificate from a CA the prober has never seen

    async def main():
        async def secure(request):
            return web.Response(text="secure")

        async with serve({"/ok": secure}, server_ssl_context(config)) as port:
            return await check(http_probe(port, "/ok", scheme="HTTPS"))

    assert asyncio.run(main()) == (S, "secure")


def test_tcp_probe():
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        named = {**CONTAINER, "ports": [{"name": "db", "containerPort": port}]}
        try:
            return [
                await check({"tcpSocket": {"port": port}}),
                await run_probe({"tcpSocket": {"port": "db", "host": LOOPBACK}}, pod_ip="10.0.0.1",
                                container=named, exec_fn=no_exec),
            ]
        finally:
            server.close()
            await server.wait_closed()

    plain, named = asyncio.run(main())
    assert plain == (S, "") and named == (S, "")
    closed = free_port()
    assert probe({"tcpSocket": {"port": closed}}) == (
        F, f"dial tcp 127.0.0.1:{closed}: connect: connection refused")


def fake_exec(code=0, output=b"", raises=None):
    calls = []

    async def run(argv, timeout):
        calls.append((argv, timeout))
        if raises:
            raise raises
        return code, output
    run.calls = calls
    return run


def test_exec_probe():
    ok = fake_exec(0, b"all good\n")
    assert probe({"exec": {"command": ["cat", "$(FILE)"]}}, exec_fn=ok) == (S, "all good\n")
    assert ok.calls == [(["cat", "/tmp/healthy"], 1.0)]
    assert probe({"exec": {"command": ["false"]}, "timeoutSeconds": 5},
                 exec_fn=fake_exec(1, b"cat: /tmp/healthy: No such file")) == (
        F, "cat: /tmp/healthy: No such file")
    assert probe({"exec": {"command": ["big"]}}, exec_fn=fake_exec(1, b"y" * 50000))[1] == "y" * 10240
    assert probe({"exec": {"command": ["sh", "-c", "sleep 5"]}}, exec_fn=fake_exec(raises=TimeoutError())) == (
        F, 'command "sh -c sleep 5" timed out')
    assert probe({"exec": {"command": ["x"]}}, exec_fn=fake_exec(raises=RuntimeError("runc: no such container"))) \
        == (U, "runc: no such container")
    assert probe({"grpc": {"port": 9000}}) == (U, "grpc probes are not supported")


# --- lifecycle handlers ----------------------------------------------------------------------

def hook(handler, exec_fn=no_exec, pod_ip=LOOPBACK):
    return asyncio.run(run_handler(handler, pod_ip=pod_ip, container=CONTAINER, exec_fn=exec_fn, pod=POD))


def test_exec_hook():
    assert hook({"exec": {"command": ["touch", "/ready"]}}, fake_exec(0)) is None
    assert hook({"exec": {"command": ["sh", "-c", "exit 3"]}}, fake_exec(3, b"boom\n")) == (
        "Exec lifecycle hook ([sh -c exit 3]) for Container \"app\" in Pod \"web_default(u1)\" failed - "
        "error: command 'sh -c exit 3' exited with 3: boom\n, message: \"boom\\n\"")


def test_http_hook_ignores_the_status_but_not_a_refused_connection():
    seen = []

    async def failing_hook(request):
        seen.append(request.headers["User-Agent"])
        return web.Response(status=500)

    async def main():
        async with serve({"/hook": failing_hook}) as port:
            return await run_handler({"httpGet": {"port": port, "path": "/hook"}}, pod_ip=LOOPBACK,
                                     container=CONTAINER, exec_fn=no_exec, pod=POD)

    assert asyncio.run(main()) is None
    assert seen == ["kube-lifecycle/1.32"]
    closed = free_port()
    assert hook({"httpGet": {"port": closed, "path": "/hook"}}) == (
        f'HTTP lifecycle hook (/hook) for Container "app" in Pod "web_default(u1)" failed - error: '
        f'Get "http://127.0.0.1:{closed}/hook": dial tcp 127.0.0.1:{closed}: connect: connection refused')
    assert hook({"httpGet": {"port": 80, "path": "/"}}, pod_ip="").endswith(
        "failed - error: failed to find networking container: the pod has no IP")


def test_sleep_and_unsupported_hooks():
    assert hook({"sleep": {"seconds": 0}}) is None

    async def cut_short():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run_handler({"sleep": {"seconds": 30}}, pod_ip=LOOPBACK,
                                               container=CONTAINER, exec_fn=no_exec), 0.05)
    asyncio.run(cut_short())
    assert hook({"tcpSocket": {"port": 80}}) == 'Cannot run handler: invalid handler: {"tcpSocket": {"port": 80}}'


# --- the Prober ------------------------------------------------------------------------

SCALE = 0.01
"""A probe second is 10 ms in these tests."""


async def eventually(check, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class Node:
    """Fake containers: exec answers from ``codes[command]`` per container ID, and
    every callback is recorded."""

    def __init__(self):
        self.codes = {}
        self.calls = []
        self.changes = []
        self.events = []

    def exec_factory(self, cid):
        async def run(argv, timeout):
            self.calls.append((cid, argv[0]))
            return self.codes.get((cid, argv[0]), self.codes.get(argv[0], 0)), argv[0].encode() + b" said no"
        return run

    async def on_change(self, uid, name, probe_type, result):  # async on purpose: both kinds work
        self.changes.append((name, probe_type.value, result))

    def on_event(self, uid, name, reason, message):
        self.events.append((reason, message))

    def count(self, command, cid=None):
        return sum(1 for c, a in self.calls if a == command and cid in (None, c))

    def prober(self):
        return Prober(self.on_change, self.exec_factory, on_event=self.on_event, time_scale=SCALE)


def exec_pod(uid="u1", deleting=False, **probes):
    container = {"name": "app", **{f"{kind}Probe": {"exec": {"command": [kind]}, "periodSeconds": 1, **spec}
                                   for kind, spec in probes.items()}}
    meta = {"name": "web", "namespace": "default", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"containers": [container]}}


def running(cid="c1", started_at=None):
    return {"app": (cid, time.time() if started_at is None else started_at)}


def test_readiness_follows_its_thresholds():
    node = Node()

    async def main():
        prober = node.prober()
        try:
            pod = exec_pod(readiness={"failureThreshold": 2})
            assert not prober.ready("u1", "app")  # nothing running yet
            prober.update_pod(pod, running(), LOOPBACK)
            await eventually(lambda: prober.ready("u1", "app"))
            node.codes["readiness"] = 1
            await eventually(lambda: prober.result("u1", "app", "readiness") is F)
            assert not prober.ready("u1", "app")
            prober.update_pod(pod, {}, LOOPBACK)  # the container stopped
            assert not prober.ready("u1", "app")
        finally:
            await prober.close()

    asyncio.run(main())
    assert node.changes == [("app", "readiness", F), ("app", "readiness", S), ("app", "readiness", F)]
    assert node.events[0] == ("Unhealthy", "Readiness probe failed: readiness said no")
    assert node.count("readiness") >= 3  # one success, then two failures to reach the threshold


def test_startup_probe_gates_the_others_and_stops_once_it_succeeds():
    node = Node()
    node.codes["startup"] = 1

    async def main():
        prober = node.prober()
        try:
            prober.update_pod(exec_pod(startup={"failureThreshold": 1000}, liveness={}, readiness={}),
                              running(), LOOPBACK)
            await eventually(lambda: node.count("startup") >= 5)
            assert node.count("liveness") == node.count("readiness") == 0
            assert not prober.started("u1", "app") and not prober.ready("u1", "app")
            assert prober.result("u1", "app", ProbeType.startup) is U
            node.codes["startup"] = 0
            await eventually(lambda: prober.ready("u1", "app"))
            assert prober.started("u1", "app")
            await eventually(lambda: node.count("liveness") >= 3)
            startups = node.count("startup")
            await eventually(lambda: node.count("liveness") >= 8)
            assert node.count("startup") == startups
        finally:
            await prober.close()

    asyncio.run(main())
    assert ("app", "startup", S) in node.changes


def test_failed_liveness_is_reported_once_then_held_until_the_container_restarts():
    node = Node()
    node.codes[("c1", "liveness")] = 1

    async def main():
        prober = node.prober()
        try:
            pod = exec_pod(liveness={"failureThreshold": 2})
            prober.update_pod(pod, running("c1"), LOOPBACK)
            await eventually(lambda: prober.result("u1", "app", "liveness") is F)
            held = node.count("liveness", "c1")
            assert held == 2
            prober.update_pod(pod, running("c2"), LOOPBACK)
            await eventually(lambda: node.count("liveness", "c2") >= 3)
            assert prober.result("u1", "app", "liveness") is S
            assert node.count("liveness", "c1") == held
        finally:
            await prober.close()

    asyncio.run(main())
    assert node.changes == [("app", "liveness", S), ("app", "liveness", F), ("app", "liveness", S)]
    assert node.events == [("Unhealthy", "Liveness probe failed: liveness said no")] * 2


def test_initial_delay_counts_from_the_container_start():
    node = Node()

    async def main():
        prober = node.prober()
        try:
            pod = exec_pod(readiness={"initialDelaySeconds": 1000})  # 10 s in test time
            prober.update_pod(pod, running(), LOOPBACK)
            await eventually(lambda: prober.result("u1", "app", "readiness") is F)
            await asyncio.sleep(10 * SCALE)
            assert node.count("readiness") == 0
            prober.update_pod(pod, running(started_at=time.time() - 20), LOOPBACK)
            await eventually(lambda: prober.ready("u1", "app"))
        finally:
            await prober.close()

    asyncio.run(main())


def test_a_terminating_pod_is_not_restarted_by_its_probes():
    node = Node()
    node.codes["liveness"] = 1

    async def main():
        prober = node.prober()
        try:
            prober.update_pod(exec_pod(deleting=True, liveness={"failureThreshold": 1}, readiness={}),
                              running(), LOOPBACK)
            await eventually(lambda: prober.ready("u1", "app"))
            assert prober.result("u1", "app", "liveness") is None  # its worker ended quietly
            assert node.count("liveness") == 0

            prober.update_pod(exec_pod(uid="u2", liveness={"failureThreshold": 1000}), running(), LOOPBACK)
            await eventually(lambda: node.count("liveness") >= 2)
            prober.stop_liveness_and_startup("u2")
            assert prober.result("u2", "app", "liveness") is None
        finally:
            await prober.close()

    asyncio.run(main())
    assert ("app", "liveness", F) not in node.changes


def test_remove_pod_and_close_leave_no_task_behind():
    node = Node()

    async def main():
        prober = node.prober()
        prober.update_pod(exec_pod(uid="u1", liveness={}, readiness={}), running(), LOOPBACK)
        prober.update_pod(exec_pod(uid="u2", startup={}), running(), LOOPBACK)
        await eventually(lambda: prober.ready("u1", "app") and prober.started("u2", "app"))
        prober.remove_pod("u1")
        assert prober.result("u1", "app", "readiness") is None and not prober.ready("u1", "app")
        calls = node.count("readiness")
        await prober.close()
        assert node.count("readiness") == calls
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())


def test_http_readiness_warning_counts_as_success_and_errors_are_discarded():
    node = Node()

    async def main():
        async with serve(probe_routes([])) as port:
            prober = node.prober()
            container = {"name": "app", "readinessProbe": http_probe(port, "/other", periodSeconds=1)}
            broken = {"name": "side", "readinessProbe": http_probe("missing", "/", periodSeconds=1),
                      "restartPolicy": "Always"}
            pod = {"metadata": {"uid": "u1"}, "spec": {"containers": [container], "initContainers": [broken]}}
            try:
                prober.update_pod(pod, {"app": ("c1", time.time()), "side": ("c2", time.time())}, LOOPBACK)
                await eventually(lambda: prober.ready("u1", "app"))
                await eventually(lambda: any("errored" in m for _, m in node.events))
                assert not prober.ready("u1", "side")
            finally:
                await prober.close()

    asyncio.run(main())
    assert ("ProbeWarning", "Readiness probe warning: Probe terminated redirects, Response body: moved") \
        in node.events
    assert ("Unhealthy", ('Readiness probe errored and resulted in unknown state: '
                          'strconv.Atoi: parsing "missing": invalid syntax')) in node.events
    assert ("side", "readiness", S) not in node.changes


def test_runtime_exec_adapts_runc_exec():
    class Runtime:
        def __init__(self, result):
            self.result, self.calls = result, []

        def exec(self, cid, args, *, timeout=None):
            self.calls.append((cid, args, timeout))
            return self.result

    done = Runtime(ExecResult(1, b"out ", b"err"))
    assert asyncio.run(runtime_exec(done, "c1")(["check"], 2.0)) == (1, b"out err")
    assert done.calls == [("c1", ["check"], 2.0)]
    slow = runtime_exec(Runtime(ExecResult(137, b"", b"", timed_out=True)), "c1")
    assert probe({"exec": {"command": ["sleep", "9"]}}, exec_fn=slow) == (F, 'command "sleep 9" timed out')
