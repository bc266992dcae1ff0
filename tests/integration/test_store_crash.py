"""Every write the store acknowledged survives SIGKILL of the process that made it."""
import asyncio
import os
import signal
import subprocess
import sys

from kwire.store import SQLiteStore

# Writes creates (and an update of every tenth key) forever, printing
# "<revision> <key>" after each write returns.
WRITER = r"""
import asyncio, sys
from kwire.store import SQLiteStore

async def main(path, tag):
    store = SQLiteStore(path)
    i = 0
    while True:
        key = f"/registry/things/{tag}/t{i:06}"
        obj = await store.create(key, {"metadata": {"name": f"t{i}"}, "n": i})
        if i % 10 == 0:
            obj = await store.update(key, {**obj, "n": -i})
        sys.stdout.write(f"{obj['metadata']['resourceVersion']} {key}\n")
        sys.stdout.flush()
        i += 1

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def write_until_killed(path, tag, acks_before_kill):
    """Run a writer, SIGKILL it after some acks, and return every ack it printed."""
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while len(lines) < acks_before_kill:
            line = child.stdout.readline()
            assert line, f"writer exited early: {child.stderr.read()}"
            lines.append(line)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        lines += child.stdout.read().splitlines(keepends=True)  # acks still in the pipe
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    acks = {}
    for line in lines:
        if line.endswith("\n"):  # the last one may be cut off by the kill
            rev, key = line.split()
            acks[key] = int(rev)
    return acks


def test_acknowledged_writes_survive_sigkill(tmp_path):
    path = tmp_path / "kwire.db"
    acks = write_until_killed(path, "first", 400)
    acks.update(write_until_killed(path, "second", 300))  # restarts after a crash
    assert len(acks) >= 700

    async def check():
        store = SQLiteStore(path)
        try:
            assert store.revision >= max(acks.values())
            for key, rev in acks.items():
                obj = await store.get(key)
                assert obj is not None, key
                assert int(obj["metadata"]["resourceVersion"]) == rev, key
            items, _, _ = await store.list("/registry/things/")
            revs = sorted(int(i["metadata"]["resourceVersion"]) for i in items)
            assert len(set(revs)) == len(revs)  # no revision was handed out twice
            after = await store.create("/registry/things/after", {"metadata": {"name": "after"}})
            assert int(after["metadata"]["resourceVersion"]) == store.revision > max(revs)
        finally:
            await store.close()

    asyncio.run(check())
