"""The embedded controller manager.

`run` starts every controller on the caller's loop, all sharing one Informers
factory (so a resource is watched once however many controllers read it), and
supervises them: a controller whose run() fails unexpectedly is logged and
started again, fresh, after a backoff. When `stop` is set every controller and
informer is cancelled and awaited before run returns. The Client belongs to
the caller, who closes it.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from kwire.client import Backoff, Client, Informers
from kwire.controllers.daemonset import DaemonSetController
from kwire.controllers.deployment import DeploymentController
from kwire.controllers.endpoints import EndpointsController
from kwire.controllers.endpointslice import EndpointSliceController
from kwire.controllers.garbagecollector import GarbageCollector
from kwire.controllers.namespace import NamespaceController
from kwire.controllers.nodelifecycle import NodeLifecycleController
from kwire.controllers.perns import service_accounts
from kwire.controllers.replicaset import ReplicaSetController
from kwire.controllers.scheduler import Scheduler

log = logging.getLogger("kwire.controllers")


class Controller(Protocol):
    def run(self) -> Awaitable[None]: ...


RESTART_DELAY = (1.0, 60.0)  # first and longest wait before restarting a failed controller

ControllerFactory = Callable[[Client, Informers], Controller]

CONTROLLERS: tuple[tuple[str, ControllerFactory], ...] = (
    ("namespace", NamespaceController),
    ("garbagecollector", GarbageCollector),
    ("serviceaccount", service_accounts),
    ("scheduler", Scheduler),
    ("nodelifecycle", NodeLifecycleController),
    ("replicaset", ReplicaSetController),
    ("deployment", DeploymentController),
    ("daemonset", DaemonSetController),
    ("endpoints", EndpointsController),
    ("endpointslice", EndpointSliceController),
)


async def _supervise(name: str, factory: ControllerFactory, client: Client,
                     informers: Informers) -> None:
    backoff = Backoff(*RESTART_DELAY)
    while True:
        try:
            await factory(client, informers).run()
            log.warning("controller %s returned; restarting it", name)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one broken controller must not stop the others
            log.exception("controller %s failed; restarting it", name)
        await asyncio.sleep(backoff.next())


async def run(client: Client, stop: asyncio.Event,
              controllers: tuple[tuple[str, ControllerFactory], ...] = CONTROLLERS) -> None:
    """Run the controllers until stop is set."""
    informers = Informers(client)
    tasks = [asyncio.create_task(_supervise(name, factory, client, informers),
                                 name=f"controller-{name}")
             for name, factory in controllers]
    log.info("controllers started: %s", ", ".join(name for name, _ in controllers))
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await informers.stop()
        log.info("controllers stopped")
