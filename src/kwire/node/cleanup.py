"""Removing everything a node made on this machine, for `kwire down` and
`kwire node rm`: its containers (and their conmon monitors), every mount under
its directories (overlay roots, volume tmpfs, pinned namespaces), its pod
network namespaces and its runtime directory. Works on half-made state and
when run twice; the node's agent must be stopped first."""
from __future__ import annotations

import logging
import os
import shutil

from kwire.node.paths import NodePaths
from kwire.node.runtime import rootfs, sandbox
from kwire.node.runtime.runc import ContainerRuntimeError, Runc

log = logging.getLogger("kwire.node.cleanup")


def purge_node(paths: NodePaths) -> None:
    if paths.runc_root.exists():
        runc = Runc(paths.runc_root, paths.conmon_state)
        for state in runc.list():
            try:
                runc.delete(state.id, force=True)
            except ContainerRuntimeError as e:
                log.warning("deleting container %s: %s", state.id, e)
    for sb in sandbox.list_sandboxes(paths.sandboxes):
        sandbox.teardown(sb)
    for root in (paths.state_dir, paths.run_dir):
        prefix = os.path.realpath(root) + "/"
        for point in sorted((p for p in rootfs.mount_points() if p.startswith(prefix)),
                            key=len, reverse=True):
            rootfs.unmount(point)
    shutil.rmtree(paths.run_dir, ignore_errors=True)
