"""The port-forward dialler for real: a socket made inside a network namespace
the test creates reaches a server bound to that namespace's 127.0.0.1 only,
which the test's own namespace cannot see; a closed port gives containerd's
wording; the dialling thread is back in the test's namespace afterwards. The
namespace and its server go in a finally, pass or fail."""
import asyncio
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from kwire.node.portforward import NetnsDialer, PodTarget, PortForwardError

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="missing ip: apt-get install iproute2"),
]

PORT = 18099
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"from the namespace: " + c.recv(100))
    c.close()
"""


@pytest.fixture
def netns():
    name = f"kwire-pftest-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    server = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", SERVER,
                                   str(PORT)], stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
        yield f"/run/netns/{name}"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_dial_inside_the_namespace(netns):
    async def main():
        dialer = NetnsDialer()
        try:
            target = PodTarget("sandbox1", netns)
            reader, writer = await dialer.dial(target, PORT)
            writer.write(b"hello")
            assert await reader.read() == b"from the namespace: hello"
            writer.close()
            with pytest.raises(PortForwardError) as e:
                await dialer.dial(target, PORT + 1)
            assert str(e.value).startswith(
                f'failed to connect to localhost:{PORT + 1} inside namespace "sandbox1", '
                f"IPv4: dial tcp4 127.0.0.1:{PORT + 1}: connect: connection refused IPv6 dial "
                f"tcp6 [::1]:{PORT + 1}: connect: ")
            with pytest.raises(PortForwardError, match="network namespace"):
                await dialer.dial(PodTarget("gone", netns + "-missing"), PORT)

            def own_netns():
                return os.readlink("/proc/thread-self/ns/net")
            # the dialling thread went back to this process's namespace
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(dialer._thread, own_netns) == \
                os.readlink("/proc/self/ns/net")
        finally:
            dialer.close()
        # and from here, the namespace's loopback server is not reachable
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", PORT)

    asyncio.run(main())
