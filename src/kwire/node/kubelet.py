"""The kubelet's pod sync: make the pods bound to this node run, and report them.

One informer watches the pods with spec.nodeName = this node. A work queue keyed
by pod UID runs `sync` for a pod whenever its object changes, one of its
containers ends (the PLEG loop notices conmon's exit files), a back-off expires
or a periodic resync comes round; the queue never runs one pod twice at once.

`sync` follows upstream's SyncPod: terminate what is being deleted; otherwise
make the sandbox (namespaces + CNI), the volumes, then the init containers one
by one and the app containers, restarting per restartPolicy with the
CrashLoopBackOff back-off (0 s, then 10 s doubling to 5 min); then write the
status (podstatus.py) when it changed. What to start or kill is decided by the
pure `compute_actions`; the rest only carries it out.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kwire.client import ApiError, Client, Informer, WorkQueue, run_workers
from kwire.client.events import EventRecorder
from kwire.cni import invoke as cni
from kwire.cni import netconf
from kwire.node import envvars, probes, volumes
from kwire.node.images import (ImageError, ImageStore, MissingPackages, ensure_builtin_images, is_builtin,
                               parse_reference)
from kwire.node.images.registry import Puller, RegistryUnreachable, registries_for
from kwire.node.kuberuntime import KubeRuntime, PodSandbox, parse_container_id
from kwire.node.podactions import BACKOFF_INITIAL, Backoff, Start, compute_actions
from kwire.node.podstatus import ContainerInfo, PodFacts, latest, pod_status, status_patch
from kwire.node.portforward import PodTarget
from kwire.node.runtime.runc import ContainerRuntimeError
from kwire.node.runtime.sandbox import SandboxError
from kwire.node.runtime.spec import SpecError, cluster_first_resolv_conf, hosts_file, pod_hostname, resolv_conf
from kwire.node.server import ContainerHandle, ContainerUnavailable, KubeletServer

if TYPE_CHECKING:
    from kwire.node.agent import AgentConfig

log = logging.getLogger("kwire.node.kubelet")

WORKERS = 4
PLEG_PERIOD = 0.2
RESYNC_PERIOD = 10.0
DEFAULT_GRACE = 30
ORPHAN_GRACE = 2
MIN_STOP_GRACE = 2.0
"""Seconds the stop signal always gets after a preStop hook (upstream's minimumGracePeriodInSeconds)."""
KEEP_INSTANCES = 2


@dataclass
class PodState:
    """What the agent knows of one pod beyond its API object."""

    uid: str
    sandbox: PodSandbox | None = None
    containers: dict[str, list[ContainerInfo]] = field(default_factory=dict)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    start_time: float | None = None
    namespace: str = ""
    name: str = ""

    def all_containers(self) -> list[ContainerInfo]:
        return [c for instances in self.containers.values() for c in instances]

    def running(self) -> list[ContainerInfo]:
        return [c for c in self.all_containers() if c.running]


class Kubelet:
    def __init__(self, client: Client, config: AgentConfig, node_ip: str, runtime: KubeRuntime,
                 images: ImageStore):
        self.client, self.config, self.node_ip = client, config, node_ip
        self.runtime, self.images = runtime, images
        self.node = config.node
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.2, max_delay=30.0)
        self.pods: dict[str, dict] = {}
        self.states: dict[str, PodState] = {}
        self.restart_backoff = Backoff()
        self.pull_backoff = Backoff()
        self.unhealthy: dict[str, dict[str, tuple[str, str]]] = {}
        """Failed liveness/startup verdicts: pod UID -> name -> (container ID, why)."""
        self.finished: set[str] = set()
        """Pods whose termination is complete (the final delete was sent): never synced
        again, as upstream's pod workers remember finished pods."""
        self.events = EventRecorder(client, "kubelet", config.node)
        self.pod_cidr: str | None = None
        self.allocatable: dict[str, str] | None = None
        """The Node's status.allocatable, for unset limits in resourceFieldRef."""
        self.network: cni.CniNetwork | None = None
        self.network_stamp: tuple = ()
        self.informer = Informer(client, "v1", "pods", field_selector=f"spec.nodeName={config.node}")
        self.service_informer = Informer(client, "v1", "services")
        self.prober = probes.Prober(self._on_probe, self._exec_for, on_event=self._on_probe_event)
        self.server = KubeletServer(self.locate, runtime.runc, config.token, self.locate_pod)
        self.puller = Puller(images, registries_for(config.cluster_state_dir))

    # ------------------------------------------------------------ wiring

    def set_pod_cidr(self, cidr: str | None, mtu: int = 1500) -> None:
        """Write the node's network configuration once the pod subnet is known."""
        if not cidr or cidr == self.pod_cidr:
            return
        self.pod_cidr = cidr
        netconf.write_node_config(self.config.paths.cni, cidr, mtu)
        self.reload_network()
        for uid in self.pods:
            self.queue.add(uid)

    def reload_network(self) -> None:
        """Use the lexically first conflist of net.d as it is now: one dropped in or
        changed by the user serves the next pods, as containerd reloads its CNI config.
        A broken one is reported and the previous network kept."""
        cni_dir = self.config.paths.cni
        conf_dir = cni_dir / netconf.CONF_DIR
        try:
            stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in conf_dir.iterdir()))
        except OSError:
            return
        if stamp == self.network_stamp:
            return
        self.network_stamp = stamp
        try:
            self.network = cni.CniNetwork.load(conf_dir, cni.default_bin_dirs(),
                                               cni_dir / netconf.CACHE_DIR)
            log.info("CNI network %r", self.network)
        except (cni.CniError, OSError, ValueError) as e:
            log.warning("CNI config in %s: %s; keeping the previous network", conf_dir, e)

    async def run(self) -> None:
        try:
            await asyncio.to_thread(ensure_builtin_images, self.images)
        except MissingPackages as e:
            log.warning("no built-in images: %s", e)
        await asyncio.to_thread(self.adopt)
        self.informer.add_handler(self._on_pod)
        self.informer.start()
        self.service_informer.start()
        await self.server.start(self.node_ip, self.config.kubelet_port,
                                self.config.paths.state_dir / "pki")
        try:
            await self.informer.wait_synced()
            for uid in list(self.states):
                self.queue.add(uid)
            await asyncio.gather(run_workers(self.queue, self.sync, WORKERS, "kubelet"),
                                 self.pleg_loop(), self.resync_loop())
        finally:
            await self.informer.stop()
            await self.service_informer.stop()

    async def close(self) -> None:
        await self.puller.close()
        await self.prober.close()
        await self.server.stop()

    def adopt(self) -> None:
        """Find the sandboxes and containers a previous agent left running."""
        for psb in self.runtime.list_sandboxes():
            st = self.states.setdefault(psb.pod_uid, PodState(psb.pod_uid))
            st.sandbox, st.namespace, st.name = psb, psb.sandbox.pod_namespace, psb.sandbox.pod_name
        by_sandbox = {st.sandbox.id: st for st in self.states.values() if st.sandbox}
        for info in self.runtime.list_containers():
            parsed = parse_container_id(info.cid)
            st = by_sandbox.get(parsed[0]) if parsed else None
            if st is None and info.pod_uid:
                # a finished pod's containers outlive its sandbox (status, logs)
                st = self.states.setdefault(info.pod_uid, PodState(info.pod_uid))
            if st is None:
                self.runtime.remove_container(info.cid)
                continue
            st.containers.setdefault(info.name, []).append(info)
        for st in self.states.values():
            for instances in st.containers.values():
                instances.sort(key=lambda c: c.attempt)
        log.info("adopted %d pods", len(self.states))

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        uid = pod["metadata"]["uid"]
        if etype == "DELETED":
            self.pods.pop(uid, None)
            self.finished.discard(uid)
        else:
            self.pods[uid] = pod
            if old is not None and not _desired_changed(old, pod):
                return  # a status write (often our own): nothing to do, as upstream's pod config
        self.queue.add(uid)

    async def pleg_loop(self) -> None:
        """Notice containers that ended (conmon writes an exit file) and resync their pods."""
        exit_dir = self.runtime.runc.exit_dir
        while True:
            await asyncio.sleep(PLEG_PERIOD)
            for uid, st in list(self.states.items()):
                if any((exit_dir / c.cid).exists() for c in st.running()):
                    self.queue.add(uid)

    async def resync_loop(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_PERIOD)
            for uid in list(self.pods):
                self.queue.add(uid)
            await self.network_gc()

    async def network_gc(self) -> None:
        """CNI GC: release the attachments of sandboxes that no longer exist (a pod
        removed while the agent was down, a crash half-way through a teardown)."""
        if self.network is None:
            return
        valid = [self.runtime.attachment(st.sandbox.sandbox) for st in self.states.values()
                 if st.sandbox is not None and not st.sandbox.sandbox.host_network]
        try:
            removed = await asyncio.to_thread(self.network.gc, valid)
        except cni.CniError as e:
            log.warning("CNI GC: %s", e)
            return
        for cached in removed:
            log.info("CNI GC released %s", cached.container_id)

    # ------------------------------------------------------------ sync

    async def sync(self, uid: str) -> bool:
        if uid in self.finished:
            return True
        pod = self.pods.get(uid)
        st = self.states.get(uid)
        if pod is None:
            if st is not None:
                await self.kill_pod(st, None, ORPHAN_GRACE)
                await self.remove_pod(st)
            return True
        if st is None:
            st = self.states[uid] = PodState(uid, namespace=pod["metadata"]["namespace"],
                                             name=pod["metadata"]["name"], start_time=time.time())
        if st.start_time is None:
            st.start_time = time.time()
        st.namespace, st.name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        for info in st.running():
            await asyncio.to_thread(self.runtime.refresh, info)
        if pod["metadata"].get("deletionTimestamp"):
            return await self.terminate(pod, st)
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            await self.kill_pod(st, pod, _grace(pod))
            await self.remove_sandbox(st)
            await self.write_status(pod, st)
            return True
        retry = await self.sync_running(pod, st)
        status = await self.write_status(pod, st)
        if status and status.get("phase") in ("Succeeded", "Failed"):
            self.queue.add(uid)
        if retry is not None:
            self.queue.add_after(uid, retry)
        return True

    async def sync_running(self, pod: dict, st: PodState) -> float | None:
        """Sandbox, volumes, containers; returns when to look again (None: on the next event)."""
        if self.network is None and not (pod.get("spec") or {}).get("hostNetwork"):
            return None  # the network plugin is not ready; hostNetwork pods do not need it
        if st.sandbox is not None and not await asyncio.to_thread(self.runtime.sandbox_ready, st.sandbox):
            await self.events.event(pod, "Normal", "SandboxChanged",
                                    "Pod sandbox changed, it will be killed and re-created.")
            await self.kill_pod(st, pod, _grace(pod))
            await self.remove_sandbox(st)
        if st.sandbox is None:
            if self.network is not None:
                self.reload_network()
            try:
                st.sandbox = await asyncio.to_thread(
                    self.runtime.run_sandbox, pod, self.hostname(pod), self.network, (self.node_ip,))
            except (SandboxError, cni.CniError, OSError) as e:
                await self.events.event(pod, "Warning", "FailedCreatePodSandBox",
                                        f"Failed to create pod sandbox: {e}")
                return 2.0
            await asyncio.to_thread(self.runtime.write_sandbox_files, st.sandbox,
                                    self.hosts(pod, st.sandbox.ips), self.resolv_conf(pod))
        try:
            volume_paths = await volumes.setup_volumes(pod, self.config.paths.pod_dir(st.uid),
                                                       self.get_object, allocatable=self.allocatable)
        except volumes.VolumeError as e:
            for message in e.messages:
                await self.events.event(pod, "Warning", "FailedMount", message)
            return 2.0
        facts = self.facts(pod, st)
        actions = compute_actions(pod, facts, self.unhealthy.get(st.uid, {}),
                                  self.restart_backoff, time.time())
        st.waiting = dict(actions.waiting)
        retry = actions.retry_after
        for name, why in actions.kill:
            self.unhealthy.get(st.uid, {}).pop(name, None)
            await self.stop_one(pod, st, latest(facts, name), _grace(pod), why)
            retry = 0.0
        for start in actions.start:
            wait = await self.start_container(pod, st, start, volume_paths)
            if wait is not None:
                retry = wait if retry is None else min(retry, wait)
            if start.init:
                break
        self.prober.update_pod(pod, {c.name: (c.cid, c.started_at) for c in st.running()},
                               st.sandbox.ips[0] if st.sandbox.ips else "")
        return retry

    async def start_container(self, pod: dict, st: PodState, start: Start,
                              volume_paths: dict[str, str]) -> float | None:
        """Pull, create, start; a failure leaves the container waiting with upstream's
        reason and returns the seconds until the next try."""
        spec = pod["spec"]
        container = next(c for c in (spec.get("initContainers") or []) + spec["containers"]
                         if c["name"] == start.name)
        image_ref, image, wait = await self.ensure_image(pod, st, container)
        if image is None:
            return wait
        try:
            env = await envvars.resolve_env(pod, container, self.get_object,
                                            pod_ip=st.sandbox.ips[0] if st.sandbox.ips else "",
                                            host_ip=self.node_ip,
                                            services=await self.services(pod),
                                            allocatable=self.allocatable)
        except envvars.EnvError as e:
            st.waiting[start.name] = ("CreateContainerConfigError", str(e))
            await self.events.event(pod, "Warning", "Failed", f"Error: {e}")
            return 2.0
        meta = pod["metadata"]
        log_path = self.config.paths.container_log(meta["namespace"], meta["name"], st.uid,
                                                   start.name, start.attempt)
        try:
            mounts = volumes.container_mounts(pod, container, volume_paths, env)
            info = await asyncio.to_thread(self.runtime.create_container, pod, container,
                                           st.sandbox, start.attempt, image, image_ref, log_path,
                                           mounts, env)
        except (ContainerRuntimeError, SpecError, volumes.VolumeError, OSError) as e:
            st.waiting[start.name] = ("CreateContainerConfigError" if isinstance(e, SpecError)
                                      else "CreateContainerError", str(e))
            await self.events.event(pod, "Warning", "Failed", f"Error: {e}")
            return BACKOFF_INITIAL
        st.containers.setdefault(start.name, []).append(info)
        if not info.exited:
            await self.events.event(pod, "Normal", "Created", f"Created container {start.name}")
            await asyncio.to_thread(self.runtime.start_container, info)
        if info.exited:
            await self.events.event(pod, "Warning", "Failed", f"Error: {info.message}")
            return 0.0  # look again at once: the restart policy decides what comes next
        st.waiting.pop(start.name, None)
        await self.events.event(pod, "Normal", "Started", f"Started container {start.name}")
        await self.remove_dead_instances(st, start.name)
        hook = (container.get("lifecycle") or {}).get("postStart")
        if hook:
            error = await probes.run_handler(hook, pod_ip=st.sandbox.ips[0] if st.sandbox.ips else "",
                                             container=container, exec_fn=self._exec_for(info.cid),
                                             pod=pod)
            if error:
                await self.events.event(pod, "Warning", "FailedPostStartHook", error)
                await asyncio.to_thread(self.runtime.stop_container, info, 0)
        return None

    async def ensure_image(self, pod: dict, st: PodState, container: dict
                           ) -> tuple[str, object, float | None]:
        """The image per imagePullPolicy, or (ref, None, retry) with the container
        waiting on ErrImagePull / ImagePullBackOff / ErrImageNeverPull."""
        name = container["name"]
        try:
            ref = str(parse_reference(container["image"]))
        except ImageError as e:
            st.waiting[name] = ("InvalidImageName", f'Failed to apply default image tag "{container["image"]}": {e}')
            return container["image"], None, None
        st.images[name] = ref
        policy = container.get("imagePullPolicy") or "IfNotPresent"
        present = await asyncio.to_thread(self._resolve, ref)
        if policy == "Never" and present is None:
            st.waiting[name] = ("ErrImageNeverPull", f'Container image "{container["image"]}" is not '
                                                     "present with pull policy of Never")
            return ref, None, None
        if present is not None and (policy != "Always" or is_builtin(present)):
            if not st.containers.get(name):
                await self.events.event(pod, "Normal", "Pulled", f'Container image "{container["image"]}" '
                                                                   "already present on machine")
            return ref, present, None
        key = (st.uid, name, ref)
        wait = self.pull_backoff.remaining(key, time.time())
        if wait > 0:
            st.waiting[name] = ("ImagePullBackOff", f'Back-off pulling image "{container["image"]}"')
            return ref, None, wait
        await self.events.event(pod, "Normal", "Pulling", f'Pulling image "{container["image"]}"')
        started = time.monotonic()
        try:
            image = await self.puller.pull(ref)
        except ImageError as e:
            if present is not None and isinstance(e, RegistryUnreachable):
                # offline, as kwire's machines are: Always falls back to the local copy
                return ref, present, None
            self.pull_backoff.next(key, time.time())
            message = str(e)
            st.waiting[name] = ("ErrImagePull", message)
            await self.events.event(pod, "Warning", "Failed", f'Failed to pull image "{container["image"]}": {message}')
            await self.events.event(pod, "Warning", "Failed", "Error: ErrImagePull")
            return ref, None, 1.0  # the next sync shows ImagePullBackOff until the back-off ends
        self.pull_backoff.forget_pod(st.uid)
        await self.events.event(pod, "Normal", "Pulled",
                                f'Successfully pulled image "{container["image"]}" in '
                                f"{time.monotonic() - started:.3f}s")
        return ref, image, None

    def _resolve(self, ref: str):
        try:
            return self.images.resolve(ref)
        except ImageError:
            return None

    async def remove_dead_instances(self, st: PodState, name: str) -> None:
        """Keep the newest instance and the one before it (`kubectl logs --previous`);
        older ones go with their overlay roots and logs (upstream's container GC keeps
        one dead instance per container by default, the same thing once one runs)."""
        instances = st.containers.get(name) or []
        for old in instances[:-KEEP_INSTANCES]:
            await asyncio.to_thread(self.runtime.remove_container, old.cid)
            Path(old.log_path).unlink(missing_ok=True)
        st.containers[name] = instances[-KEEP_INSTANCES:]

    # ------------------------------------------------------------ termination

    async def terminate(self, pod: dict, st: PodState) -> bool:
        """Graceful deletion: preStop hooks and the stop signal, SIGKILL after the
        grace period, then the sandbox and volumes go and the API object is
        deleted for good (the kubelet's final delete with grace 0)."""
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        self.prober.stop_liveness_and_startup(st.uid)
        await self.kill_pod(st, pod, DEFAULT_GRACE if grace is None else grace)
        await self.write_status(pod, st, terminated=True)
        await self.remove_pod(st)
        self.finished.add(st.uid)
        meta = pod["metadata"]
        try:
            await self.client.delete("v1", "pods", meta["name"], meta["namespace"],
                                     grace_period_seconds=0, preconditions={"uid": st.uid})
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        return True

    async def kill_pod(self, st: PodState, pod: dict | None, grace: float) -> None:
        await asyncio.gather(*(self.stop_one(pod, st, info, grace) for info in st.running()))

    async def stop_one(self, pod: dict | None, st: PodState, info: ContainerInfo, grace: float,
                       why: str = "") -> None:
        """upstream killContainer: the Killing event, the preStop hook within the grace
        period, then the stop signal with what is left (at least 2 s) and SIGKILL."""
        spec = (pod or {}).get("spec") or {}
        container = next((c for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
                          if c["name"] == info.name), {})
        deadline = time.monotonic() + grace
        if pod is not None:
            await self.events.event(pod, "Normal", "Killing", why or f"Stopping container {info.name}")
        hook = (container.get("lifecycle") or {}).get("preStop")
        if hook and grace > 0:
            try:
                await asyncio.wait_for(
                    probes.run_handler(hook, pod_ip=st.sandbox.ips[0] if st.sandbox and st.sandbox.ips else "",
                                       container=container, exec_fn=self._exec_for(info.cid), pod=pod),
                    timeout=grace)
            except asyncio.TimeoutError:
                pass
        remaining = max(deadline - time.monotonic(), min(grace, MIN_STOP_GRACE))
        await asyncio.to_thread(self.runtime.stop_container, info, remaining, self._stop_signal(info))

    def _stop_signal(self, info: ContainerInfo) -> str:
        image = self._resolve(info.image)
        return image.stop_signal if image is not None else ""

    async def remove_sandbox(self, st: PodState) -> None:
        if st.sandbox is not None:
            await asyncio.to_thread(self.runtime.remove_sandbox, st.sandbox, self.network)
            st.sandbox = None

    async def remove_pod(self, st: PodState) -> None:
        """Everything of the pod on this node: containers, sandbox, volumes, logs."""
        self.prober.remove_pod(st.uid)
        for info in st.all_containers():
            await asyncio.to_thread(self.runtime.remove_container, info.cid)
        await self.remove_sandbox(st)
        pod_dir = self.config.paths.pod_dir(st.uid)
        await asyncio.to_thread(volumes.teardown_volumes, pod_dir)
        shutil.rmtree(pod_dir, ignore_errors=True)
        if st.namespace:
            shutil.rmtree(self.config.paths.pod_log_dir(st.namespace, st.name, st.uid),
                          ignore_errors=True)
        self.states.pop(st.uid, None)
        self.unhealthy.pop(st.uid, None)
        self.restart_backoff.forget_pod(st.uid)
        self.pull_backoff.forget_pod(st.uid)
        self.events.forget(st.uid)

    # ------------------------------------------------------------ status

    def facts(self, pod: dict, st: PodState) -> PodFacts:
        uid = st.uid
        return PodFacts(containers=st.containers, waiting=st.waiting,
                        ready={c.name: self.prober.ready(uid, c.name) for c in st.running()},
                        started={c.name: self.prober.started(uid, c.name) for c in st.running()},
                        sandbox_ready=st.sandbox is not None,
                        pod_ips=list(st.sandbox.ips) if st.sandbox else
                        [i["ip"] for i in (pod.get("status") or {}).get("podIPs") or []],
                        host_ip=self.node_ip, start_time=st.start_time, images=st.images)

    async def write_status(self, pod: dict, st: PodState, terminated: bool = False) -> dict | None:
        status = pod_status(pod, self.facts(pod, st), time.time(), terminated=terminated)
        patch = status_patch(pod.get("status") or {}, status)
        if patch is None:
            return status
        meta = pod["metadata"]
        try:
            updated = await self.client.patch("v1", "pods", meta["name"], {"status": patch},
                                              meta["namespace"], subresource="status")
        except ApiError as e:
            if e.code in (404, 409):
                return None
            raise
        current = self.pods.get(st.uid)
        if current is not None and _rv(updated) > _rv(current):
            self.pods[st.uid] = updated  # never over a newer object the watch brought
        return status

    # ------------------------------------------------------------ probes

    def _on_probe(self, uid: str, container: str, probe_type: probes.ProbeType,
                  result: probes.ProbeResult) -> None:
        st = self.states.get(uid)
        running = next((c for c in st.running() if c.name == container), None) if st else None
        if (running is not None and probe_type in (probes.ProbeType.liveness, probes.ProbeType.startup)
                and result == probes.ProbeResult.Failure):
            self.unhealthy.setdefault(uid, {})[container] = (
                running.cid, f"Container {container} failed {probe_type.value} probe, will be restarted")
        self.queue.add(uid)

    async def _on_probe_event(self, uid: str, container: str, reason: str, message: str) -> None:
        pod = self.pods.get(uid)
        if pod is not None:
            await self.events.event(pod, "Warning", reason, message)

    def _exec_for(self, cid: str) -> probes.ExecFn:
        return probes.runtime_exec(self.runtime.runc, cid)

    # ------------------------------------------------------------ pod files and lookups

    def hostname(self, pod: dict) -> str:
        """A hostNetwork pod has the node's name as hostname, as on a real node."""
        return self.node if (pod.get("spec") or {}).get("hostNetwork") else pod_hostname(pod)

    def hosts(self, pod: dict, ips: tuple[str, ...]) -> str:
        """/etc/hosts as the kubelet writes it (for hostNetwork pods: the node's own)."""
        spec = pod.get("spec") or {}
        if spec.get("hostNetwork"):
            try:
                return Path("/etc/hosts").read_text()
            except OSError:
                return hosts_file(self.node)
        hostname = pod_hostname(pod)
        fqdn = None
        if spec.get("subdomain"):
            fqdn = (f"{hostname}.{spec['subdomain']}.{pod['metadata']['namespace']}.svc."
                    f"{self.config.cluster_domain}")
        return hosts_file(hostname, ips, spec.get("hostAliases") or [], fqdn)

    def resolv_conf(self, pod: dict) -> str:
        """resolv.conf per dnsPolicy and dnsConfig, as the kubelet writes it."""
        spec = pod.get("spec") or {}
        policy = spec.get("dnsPolicy") or "ClusterFirst"
        if policy == "ClusterFirst" and spec.get("hostNetwork"):
            policy = "Default"  # upstream: only ClusterFirstWithHostNet gives these pods the cluster DNS
        cfg = spec.get("dnsConfig") or {}
        if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
            base = cluster_first_resolv_conf(pod["metadata"]["namespace"], self.config.cluster_dns,
                                             self.config.cluster_domain)
        elif policy == "Default":
            try:
                base = Path("/etc/resolv.conf").read_text()
            except OSError:
                base = ""
        else:
            base = ""
        servers, searches, options = [], [], []
        for line in base.splitlines():
            parts = line.split()
            if parts and parts[0] == "nameserver":
                servers += parts[1:2]
            elif parts and parts[0] == "search":
                searches += parts[1:]
            elif parts and parts[0] == "options":
                options += parts[1:]
        servers += [s for s in cfg.get("nameservers") or [] if s not in servers]
        searches += [s for s in cfg.get("searches") or [] if s not in searches]
        opts = {o.split(":")[0]: o for o in options}
        for o in cfg.get("options") or []:
            opts[o["name"]] = f"{o['name']}:{o['value']}" if o.get("value") is not None else o["name"]
        return resolv_conf(servers, searches, list(opts.values()))

    async def get_object(self, plural: str, namespace: str, name: str) -> dict | None:
        try:
            return await self.client.get("v1", plural, name, namespace)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def services(self, pod: dict) -> list[dict]:
        """The Services whose variables a container may get (envvars picks)."""
        await self.service_informer.wait_synced()
        out = []
        for ns in sorted({pod["metadata"]["namespace"], "default"}):
            out += self.service_informer.store.list(ns)
        return out

    def locate(self, namespace: str, name: str, container: str, previous: bool) -> ContainerHandle:
        """The container behind a logs or exec request (KubeletServer's Locator)."""
        st = next((s for s in self.states.values()
                   if s.namespace == namespace and s.name == name), None)
        pod = next((p for p in self.pods.values() if p["metadata"]["namespace"] == namespace
                    and p["metadata"]["name"] == name), None)
        if st is None or pod is None:
            raise ContainerUnavailable(404, f'pod "{name}" not found on node "{self.node}"')
        instances = st.containers.get(container) or []
        if previous:
            # while a crashed container waits to restart, its latest instance is the previous one
            candidates = instances[:-1] if instances and instances[-1].running else instances
            older = [c for c in candidates if c.exited]
            if not older:
                raise ContainerUnavailable(
                    400, f'previous terminated container "{container}" in pod "{name}" not found')
            info = older[-1]
        else:
            if not instances:
                reason = (st.waiting.get(container) or ("ContainerCreating", ""))[0]
                raise ContainerUnavailable(
                    400, f'container "{container}" in pod "{name}" is waiting to start: {reason}')
            info = instances[-1]
        return ContainerHandle(cid=info.cid, log_path=Path(info.log_path), running=info.running)

    def locate_pod(self, namespace: str, name: str) -> PodTarget:
        """The network namespace behind a port-forward request (KubeletServer's PodLocator)."""
        st = next((s for s in self.states.values()
                   if s.namespace == namespace and s.name == name), None)
        if st is None:
            raise ContainerUnavailable(404, f'pod "{name}" not found on node "{self.node}"')
        if st.sandbox is None:
            raise ContainerUnavailable(400, f'pod "{name}" has no sandbox yet: it is not running')
        return PodTarget(st.sandbox.id, st.sandbox.sandbox.netns)


def _rv(obj: Mapping) -> int:
    return int((obj.get("metadata") or {}).get("resourceVersion") or 0)


def _desired_changed(old: Mapping, new: Mapping) -> bool:
    """Whether what the kubelet acts on changed: spec, labels, annotations, deletion."""
    keys = ("labels", "annotations", "deletionTimestamp", "deletionGracePeriodSeconds")
    return (old.get("spec") != new.get("spec")
            or any(old["metadata"].get(k) != new["metadata"].get(k) for k in keys))


def _grace(pod: Mapping) -> float:
    spec = pod.get("spec") or {}
    value = spec.get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE if value is None else value
