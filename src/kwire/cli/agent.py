"""`kwire agent`: run a node agent in the foreground. `kwire up` starts one per
node inside the node's network namespace; on another machine it is started by
hand with the server's URL, a token and the cluster CA."""
from __future__ import annotations

import logging

import click

from kwire.cli import CLIError


@click.command("agent")
@click.option("--node", required=True, help="The Node name to register.")
@click.option("--name", "cluster", default="kwire", show_default=True,
              help="Cluster whose saved config (server URL, CA, token) to use.")
@click.option("--server", default=None, help="API server URL (instead of the saved config).")
@click.option("--token", default=None, help="Node-agent bearer token (with --server).")
@click.option("--ca", "ca_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Cluster CA certificate (with --server).")
@click.option("--backend", default="vxlan", show_default=True, type=click.Choice(["vxlan", "host-gw"]),
              help="Pod traffic between nodes (with --server; else the cluster's setting).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def agent(node: str, cluster: str, server: str | None, token: str | None, ca_file: str | None,
          backend: str, log_level: str) -> None:
    """Run a node agent (kubelet role) until SIGTERM; its pods keep running after it stops."""
    from kwire.cluster.config import ClusterConfig, cluster_dir
    from kwire.cluster.pki import load_tokens
    from kwire.daemon import run_until_signalled
    from kwire.node.agent import Agent, AgentConfig
    from kwire.node.paths import NodePaths

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if server:
        if not token or not ca_file:
            raise CLIError("--server needs --token and --ca")
        state = cluster_dir(cluster)
        config = AgentConfig(node=node, server=server, token=token, ca_file=ca_file,
                             paths=NodePaths.for_node(cluster, state, node), cluster_state_dir=state,
                             backend=backend)
    else:
        path = ClusterConfig(name=cluster).config_path
        if not path.exists():
            raise CLIError(f"no cluster named {cluster!r} on this machine (give --server, --token, --ca)")
        cc = ClusterConfig.load(path)
        config = AgentConfig(node=node, server=f"https://{cc.underlay_host_address}:{cc.api_port}",
                             token=load_tokens(cc).node_agent, ca_file=str(cc.ca_cert),
                             paths=NodePaths.for_node(cc.name, cc.state_dir, node),
                             cluster_state_dir=cc.state_dir,
                             cluster_dns=cc.cluster_dns, cluster_domain=cc.cluster_domain,
                             backend=cc.backend, cluster_cidr=cc.pod_cidr)
    run_until_signalled(lambda stop: Agent(config).run(stop))
