"""The controller manager as its own process, as kube-controller-manager is: it
talks to the API server over HTTPS like any other client, and its informers'
decoding work runs on the other core instead of on the API server's loop."""
from __future__ import annotations

import asyncio
import logging

from kwire.client import Client
from kwire.cluster.config import ClusterConfig
from kwire.cluster.nodes import bridge_name
from kwire.cluster.pki import load_tokens
from kwire.controllers import manager
from kwire.controllers.nodeipam import node_ipam
from kwire.controllers.perns import root_ca_publisher
from kwire.controllers.loadbalancer import load_balancer_controller
from kwire.controllers.routes import ClusterRanges, route_controller
from kwire.daemon import run_until_signalled

log = logging.getLogger("kwire.controller-manager")


async def run(config: ClusterConfig, stop: asyncio.Event) -> None:
    client = Client(f"https://127.0.0.1:{config.api_port}", token=load_tokens(config).admin,
                    ca_file=str(config.ca_cert))
    try:
        await manager.run(client, stop, manager.CONTROLLERS + (
            ("root-ca-cert-publisher", root_ca_publisher(config.ca_cert.read_text())),
            ("nodeipam", node_ipam(config.pod_cidr)),
            ("route", route_controller(bridge_name(config.name), ClusterRanges.of(config))),
            ("service-lb", load_balancer_controller(config.load_balancer_cidr,
                                                    config.underlay_cidr)),))
    finally:
        await client.close()


def serve(config: ClusterConfig) -> None:
    """Run until SIGTERM or SIGINT."""
    run_until_signalled(lambda stop: run(config, stop))
