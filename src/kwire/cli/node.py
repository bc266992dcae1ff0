"""`kwire node add|rm`: grow a cluster by one worker node, or take one out for good.

Nodes keep their names and underlay addresses for life, so `add` always makes a new node
(at the next name and address, as `kwire up --nodes N+1` does) and `rm` leaves the
removed node's address unused (see kwire.cluster.lifecycle.remove_node).
"""
from __future__ import annotations

import click
from rich.console import Console
from rich.markup import escape

from kwire.cli import CLIError
from kwire.cluster import lifecycle
from kwire.cluster.config import ClusterConfig

NAME_HELP = f"Cluster [default: {ClusterConfig.name}]."


@click.group("node")
def node_group() -> None:
    """Add or remove a cluster's worker nodes."""


@node_group.command()
@click.option("--name", default=ClusterConfig.name, help=NAME_HELP)
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds to wait for the API server, then for the node, to be ready.")
def add(name: str, timeout: float) -> None:
    """Add a worker node to a cluster (starting the cluster if it is stopped)."""
    config = lifecycle.saved_config(name)
    if config is None:
        raise CLIError(f"no cluster named {name!r}: start one with `kwire up --name {name}`")
    before = set(lifecycle.node_names(config))
    out = Console(highlight=False, soft_wrap=True)
    with out.status(f"Adding a node to cluster [bold]{escape(name)}[/] ..."):
        result = lifecycle.up(config, nodes=len(before) + 1, timeout=timeout)
    for n in result.status.nodes:
        if n.name not in before:
            out.print(f"[green]✓[/] Node [bold]{escape(n.name)}[/] is Ready: {n.address} "
                      f"(agent started, pid {n.agent_pid})")


@node_group.command("rm")
@click.argument("node_name", metavar="NODE")
@click.option("--name", default=ClusterConfig.name, help=NAME_HELP)
def rm(node_name: str, name: str) -> None:
    """Remove worker node NODE: its agent, containers, Node, pods and namespace."""
    out = Console(highlight=False, soft_wrap=True)
    with out.status(f"Removing node [bold]{escape(node_name)}[/] ..."):
        was_live = lifecycle.remove_node(name, node_name)
    done = "Removed" if was_live else "Finished removing"
    out.print(f"[green]✓[/] {done} node [bold]{escape(node_name)}[/] from cluster "
              f"[bold]{escape(name)}[/]")
