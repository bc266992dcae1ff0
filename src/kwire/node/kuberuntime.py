"""The container runtime as the kubelet sees it (the CRI's RuntimeService, in
process): pod sandboxes with their network, and container instances named so a
restarted agent can tell whose they are.

A container instance's id is ``<sandbox id>-<attempt>-<container name>``; its
directory under ``<node state>/containers/<id>`` holds the overlay root, the OCI
bundle and ``meta.json`` (image, times, log path). Whether it still runs is
conmon's business: its exit file appears when the process ends. Everything
here blocks (runc, mounts, CNI plugins): the agent calls it in threads.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import time
from collections.abc import Sequence
from typing import Any
from dataclasses import asdict, dataclass
from pathlib import Path

from kwire.cni import invoke as cni
from kwire.node.images import Image, ImageStore
from kwire.node.paths import NodePaths
from kwire.node.podstatus import ContainerInfo
from kwire.node.runtime import host, rootfs, sandbox
from kwire.node.runtime.runc import ContainerRuntimeError, Runc
from kwire.node.runtime.spec import ANN_SANDBOX_ID, Mount, build_spec

log = logging.getLogger("kwire.node.kuberuntime")

ANN_ATTEMPT = "io.kubernetes.container.restartCount"
_CID = re.compile(r"^([0-9a-f]{12})-(\d+)-(.+)$")


@dataclass(frozen=True)
class PodSandbox:
    sandbox: sandbox.Sandbox
    ips: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.sandbox.id

    @property
    def pod_uid(self) -> str:
        return self.sandbox.pod_uid


def container_id(sandbox_id: str, attempt: int, name: str) -> str:
    return f"{sandbox_id}-{attempt}-{name}"


def parse_container_id(cid: str) -> tuple[str, int, str] | None:
    m = _CID.match(cid)
    return (m.group(1), int(m.group(2)), m.group(3)) if m else None


class KubeRuntime:
    def __init__(self, paths: NodePaths, images: ImageStore):
        self.paths, self.images = paths, images
        self.runc = Runc(paths.runc_root, paths.conmon_state)
        self.containers_dir = paths.state_dir / "containers"
        self.containers_dir.mkdir(parents=True, exist_ok=True)
        self.nofile = host.nofile_limit()
        self.all_caps = host.capabilities()

    # ------------------------------------------------------------ sandboxes

    def run_sandbox(self, pod: dict, hostname: str, network: cni.CniNetwork,
                    host_ips: tuple[str, ...]) -> PodSandbox:
        """Namespaces and files (see runtime/sandbox.py), then the pod network by CNI
        ADD; a hostNetwork pod shares the node's network and has its addresses."""
        meta = pod["metadata"]
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        sb = sandbox.create(hostname, root=self.paths.sandboxes, pod_uid=meta["uid"],
                            pod_name=meta["name"], pod_namespace=meta["namespace"],
                            host_network=host_network)
        added = False
        try:
            if host_network:
                data: dict[str, Any] = {}
                ips = host_ips
            else:
                result = network.add(self.attachment(sb), cni.pod_runtime_config(pod))
                added = True
                data, ips = result.data, tuple(result.pod_ips())
            (Path(sb.dir) / "network.json").write_text(json.dumps({"result": data, "ips": ips}))
        except BaseException:
            if added:
                network.delete(self.attachment(sb))
            sandbox.teardown(sb)
            raise
        return PodSandbox(sb, ips)

    def attachment(self, sb: sandbox.Sandbox) -> cni.Attachment:
        return cni.Attachment(container_id=sb.id, netns=sb.netns, pod_namespace=sb.pod_namespace,
                              pod_name=sb.pod_name, pod_uid=sb.pod_uid)

    def list_sandboxes(self) -> list[PodSandbox]:
        out = []
        for sb in sandbox.list_sandboxes(self.paths.sandboxes):
            try:
                ips = tuple(json.loads((Path(sb.dir) / "network.json").read_text())["ips"])
            except (OSError, ValueError, KeyError):
                ips = ()
            out.append(PodSandbox(sb, ips))
        return out

    def sandbox_ready(self, psb: PodSandbox) -> bool:
        """Network set up and namespace still there (else it must be made anew)."""
        return bool(psb.ips) and sandbox.netns_exists(psb.sandbox)

    def remove_sandbox(self, psb: PodSandbox, network: cni.CniNetwork | None) -> None:
        """CNI DEL (best effort: the namespace goes anyway), then the namespaces."""
        if network is not None and not psb.sandbox.host_network:
            try:
                network.delete(self.attachment(psb.sandbox))
            except (cni.CniError, OSError) as e:
                log.warning("sandbox %s: CNI DEL: %s", psb.id, e)
        sandbox.teardown(psb.sandbox)

    def write_sandbox_files(self, psb: PodSandbox, hosts: str, resolv_conf: str) -> None:
        psb.sandbox.write_files(hosts=hosts, resolv_conf=resolv_conf)

    # ------------------------------------------------------------ containers

    def container_dir(self, cid: str) -> Path:
        return self.containers_dir / cid

    def create_container(self, pod: dict, container: dict, psb: PodSandbox, attempt: int,
                         image: Image, image_ref: str, log_path: Path,
                         mounts: Sequence[Mount], env: Sequence[tuple[str, str]]) -> ContainerInfo:
        """Root filesystem, spec and a created (not yet started) runc container. runc
        failing to create the process (a missing executable) ends the instance as a
        StartError (see start_container), as the kubelet reports it; other failures
        (the image's root, the spec) raise and leave nothing behind."""
        cid = container_id(psb.id, attempt, container["name"])
        cdir = self.container_dir(cid)
        if self.runc.state(cid) is not None:
            self.runc.delete(cid, force=True)
        rootfs.remove_rootfs(cdir)
        root = rootfs.mount_rootfs(self.images.layer_dirs(image_ref), cdir)
        try:
            spec = build_spec(pod, container, image.run_config, rootfs=str(root),
                              sandbox=psb.sandbox.paths(), volumes=mounts, env=env,
                              user_files=rootfs.user_files(root), nofile=self.nofile,
                              all_capabilities=self.all_caps,
                              annotations={ANN_SANDBOX_ID: psb.id, ANN_ATTEMPT: str(attempt)})
            info = ContainerInfo(cid=cid, name=container["name"], attempt=attempt, image=image_ref,
                                 image_id=f"{image.reference.name}@{image.digest}",
                                 created_at=time.time(), log_path=str(log_path),
                                 pod_uid=psb.pod_uid)
            self._save(info)
        except BaseException:
            self.remove_container(cid)
            raise
        try:
            self.runc.create(cid, cdir / "bundle", spec, log_path)
        except ContainerRuntimeError as e:
            self._start_failed(info, e)
        return info

    def start_container(self, info: ContainerInfo) -> None:
        """Start; on failure the instance ends as a StartError (check info.exited)."""
        try:
            self.runc.start(info.cid)
        except ContainerRuntimeError as e:
            self._start_failed(info, e)
            return
        info.started_at = time.time()
        self._save(info)

    def _start_failed(self, info: ContainerInfo, error: ContainerRuntimeError) -> None:
        """Kept as a terminated instance with exit code 128, reason StartError, as
        upstream reports a process that could not start; the restart policy and the
        back-off take it from there."""
        info.exit_code, info.reason, info.message = 128, "StartError", str(error)
        info.started_at = info.finished_at = time.time()
        self._save(info)
        self.runc.delete(info.cid, force=True)

    def _save(self, info: ContainerInfo) -> None:
        path = self.container_dir(info.cid) / "meta.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(info)))
        os.replace(tmp, path)

    def load_container(self, cid: str) -> ContainerInfo | None:
        try:
            info = ContainerInfo(**json.loads((self.container_dir(cid) / "meta.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None
        self.refresh(info)
        return info

    def refresh(self, info: ContainerInfo) -> bool:
        """Pick up the exit code conmon wrote; True when the container has just been seen to end."""
        if info.exit_code is not None:
            return False
        code = self.runc.exit_code(info.cid)
        if code is None:
            if info.started_at is None or self.runc.conmon_pid(info.cid) is not None:
                return False
            state = self.runc.state(info.cid)
            if state is not None and state.status in ("running", "created", "paused"):
                return False
            code, info.reason = 255, "Unknown"
        info.exit_code = code
        info.finished_at = self.runc.finished_at(info.cid) or time.time()
        self._save(info)
        return True

    def list_containers(self) -> list[ContainerInfo]:
        out = []
        for entry in sorted(self.containers_dir.iterdir()) if self.containers_dir.exists() else []:
            info = self.load_container(entry.name)
            if info is not None:
                out.append(info)
        return out

    def stop_container(self, info: ContainerInfo, grace: float, stop_signal: str = "") -> None:
        try:
            self.runc.stop(info.cid, grace, stop_signal or signal.SIGTERM)
        except ContainerRuntimeError as e:
            log.warning("stopping %s: %s", info.cid, e)
        self.refresh(info)

    def remove_container(self, cid: str) -> None:
        """The runc container, its overlay root and its record (not its log)."""
        try:
            self.runc.delete(cid, force=True)
        except ContainerRuntimeError as e:
            log.warning("removing %s: %s", cid, e)
        rootfs.remove_rootfs(self.container_dir(cid))
