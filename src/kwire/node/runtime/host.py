"""Facts about the machine that bound what a container may get: build_spec takes
them as arguments so it stays pure.

A container cannot hold more than its creator: runc fails with EPERM when the spec
asks for a capability outside the agent's bounding set or an RLIMIT_NOFILE above
the agent's hard limit (sandboxed machines, like the VMs kwire is tested in, lack
CAP_SYS_RESOURCE and cap files at 20000). containerd sizes privileged containers
from its own capabilities for the same reason.
"""
from __future__ import annotations

import resource
from pathlib import Path

from kwire.node.runtime.spec import ALL_CAPABILITIES, NOFILE


def capabilities(status: str | None = None) -> list[str]:
    """The capabilities in this process's bounding set (of those runc knows; they
    are listed in bit order), for privileged containers and ``add: [ALL]``."""
    if status is None:
        status = Path("/proc/self/status").read_text()
    mask = 0
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split()[1], 16)
    return [cap for bit, cap in enumerate(ALL_CAPABILITIES) if mask >> bit & 1]


def nofile_limit() -> int:
    """RLIMIT_NOFILE for containers: Kubernetes' usual 1048576, or this process's
    hard limit when that is lower."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
