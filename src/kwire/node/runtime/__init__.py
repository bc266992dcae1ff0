"""The container runtime of the node agent, split as the kubelet is: plan purely,
then act thinly.

- spec:    pure; a pod, a container and an image config in, an OCI runtime spec out.
- rootfs:  a container's overlay root file system over the image store's layers.
- sandbox: a pod's network, UTS and IPC namespaces, shm and /etc files.
- runc:    containers with runc under kwire's own state root, watched by conmon
           (logs in the CRI format, exit codes, survival across agent restarts), exec.
"""
from kwire.node.runtime.rootfs import RootfsError, mount_rootfs, remove_rootfs
from kwire.node.runtime.runc import ContainerRuntimeError, ContainerState, ExecResult, Runc
from kwire.node.runtime.sandbox import Sandbox, SandboxError
from kwire.node.runtime.spec import Mount, SandboxPaths, SpecError, UserFiles, build_spec

__all__ = [
    "ContainerRuntimeError", "ContainerState", "ExecResult", "Mount", "RootfsError", "Runc",
    "Sandbox", "SandboxError", "SandboxPaths", "SpecError", "UserFiles", "build_spec",
    "mount_rootfs", "remove_rootfs",
]
