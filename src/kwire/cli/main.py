"""`kwire`: the click group and the cluster verbs (up, down, status, server).

Verbs that live in other modules of kwire.cli are plain click commands, registered
below the group with one `main.add_command(...)` line each. They report expected
failures by raising kwire.cli.CLIError; a kwire.cluster.ClusterError escaping any verb
is printed the same way.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kwire import __version__
from kwire.cli import CLIError
from kwire.cli.agent import agent
from kwire.cli.apply import apply
from kwire.cli.create import create
from kwire.cli.delete import delete
from kwire.cli.describe import describe
from kwire.cli.exec import exec_command
from kwire.cli.get import get
from kwire.cli.images import images
from kwire.cli.logs import logs
from kwire.cli.node import node_group
from kwire.cli.portforward import port_forward
from kwire.cluster import lifecycle
from kwire.cluster.config import ClusterConfig, ClusterError, load_settings


class KwireGroup(click.Group):
    """Turns expected cluster errors from any verb into CLIError (stderr, exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClusterError as e:
            raise CLIError(str(e)) from None


@click.group(cls=KwireGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kwire")
def main() -> None:
    """kwire: a Kubernetes-compatible cluster whose networking is real."""


@main.command()
@click.option("--name", help="Cluster name [default: kwire, or the name in --config].")
@click.option("--config", "config_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML file of ClusterConfig settings; options given here take precedence.")
@click.option("--api-port", "api_port", type=click.IntRange(0, 65535),
              help="API server port on 127.0.0.1 [default: a free one].")
@click.option("--underlay-cidr", "underlay_cidr",
              help="Node network [the first free /24 of 172.30.0.0/16].")
@click.option("--pod-cidr", "pod_cidr",
              help="Pod addresses, a /24 per node [the first free /16 from 10.244.0.0/16].")
@click.option("--service-cidr", "service_cidr",
              help="ClusterIP range [the first free /16 of 10.96.0.0/12].")
@click.option("--node-port-range", "node_port_range", help="NodePort range [30000-32767].")
@click.option("--cluster-dns", "cluster_dns",
              help="Cluster DNS Service IP [the service range's tenth address, 10.96.0.10].")
@click.option("--cluster-domain", "cluster_domain", help="Cluster DNS domain [cluster.local].")
@click.option("--lb-pool", "load_balancer_pool",
              help="Addresses for LoadBalancer Services [the top /26 of the underlay].")
@click.option("--backend", "backend", type=click.Choice(["vxlan", "host-gw"]),
              help="Pod traffic between nodes: a VXLAN overlay or host-gw routes [vxlan].")
@click.option("--compaction-interval", "compaction_interval_seconds", type=click.IntRange(min=1),
              help="Seconds between store compactions [300].")
@click.option("--nodes", type=click.IntRange(min=0),
              help="Worker nodes [default: 2 for a new cluster, else as many as it has]. "
                   "Only adds nodes; `kwire node rm NODE` removes one. Each node keeps its "
                   "name and address.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds to wait for the API server, then for the nodes, to be ready.")
def up(name: str | None, config_file: Path | None, nodes: int | None, timeout: float,
       **options: Any) -> None:
    """Start a cluster (creating it if new) and its nodes; make it the kubectl context."""
    settings = load_settings(config_file) if config_file else {}
    settings.update({k: v for k, v in options.items() if v is not None})
    name = name or settings.get("name") or ClusterConfig.name
    settings["name"] = name
    # An existing cluster starts from its saved settings, so only what is given
    # explicitly here can differ from them (and lifecycle.up refuses that).
    base = lifecycle.saved_config(name) or ClusterConfig(name=name)
    config = dataclasses.replace(base, **settings)

    out = Console(highlight=False, soft_wrap=True)
    with out.status(f"Starting cluster [bold]{escape(name)}[/] ..."):
        result = lifecycle.up(config, nodes=nodes, timeout=timeout,
                              pick=[key for key in lifecycle.PICKABLE if key not in settings])
    st = result.status
    if result.started:
        out.print(f"[green]✓[/] Cluster [bold]{escape(st.name)}[/] is up: "
                  f"API server {st.url} (pid {st.pid})")
    else:
        out.print(f"Cluster [bold]{escape(st.name)}[/] is already running: "
                  f"API server {st.url} (pid {st.pid})")
    for node in st.nodes:
        how = "agent started" if node.name in result.agents_started else "agent running"
        out.print(f"[green]✓[/] Node [bold]{escape(node.name)}[/] is Ready: {node.address} "
                  f"({how}, pid {node.agent_pid})")
    out.print(f"[green]✓[/] kubectl context [bold]{result.context}[/] is current in "
              f"{escape(str(result.user_kubeconfig))}")
    out.print(f"  Try: kubectl --context {result.context} get namespaces")


@main.command()
@click.option("--name", help="Cluster to delete [default: kwire].")
@click.option("--all", "all_clusters", is_flag=True, help="Delete every kwire cluster.")
def down(name: str | None, all_clusters: bool) -> None:
    """Stop a cluster and its nodes; delete its data, namespaces and kubeconfig entries."""
    if name and all_clusters:
        raise CLIError("give --name or --all, not both")
    names = lifecycle.list_clusters() if all_clusters else [name or ClusterConfig.name]
    out = Console(highlight=False, soft_wrap=True)
    if not names:
        out.print("No kwire clusters.")
    for n in names:
        if lifecycle.down(n):
            out.print(f"[green]✓[/] Deleted cluster [bold]{escape(n)}[/]")
        else:
            out.print(f"No cluster named [bold]{escape(n)}[/]; nothing to delete.")


@main.command()
@click.option("--name", help="Show only this cluster [default: all].")
def status(name: str | None) -> None:
    """Show the clusters, whether their API servers are ready, and their nodes' agents."""
    statuses = [lifecycle.status(name)] if name else \
        [lifecycle.status(n) for n in lifecycle.list_clusters()]
    out = Console(highlight=False, soft_wrap=True)
    if not statuses:
        out.print("No kwire clusters. Start one with `kwire up`.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "STATE", "API SERVER", "PID", "KUBECONFIG"):
        table.add_column(column)
    for st in statuses:
        state = ("[green]ready[/]" if st.ready else "[yellow]not ready[/]") if st.running \
            else "[red]stopped[/]"
        table.add_row(escape(st.name), state, st.url, str(st.pid or "-"),
                      escape(str(st.kubeconfig_path)))
    out.print(table)
    nodes = [(st.name, node) for st in statuses for node in st.nodes]
    if nodes:
        table = Table(box=None, header_style="bold")
        for column in ("CLUSTER", "NODE", "ADDRESS", "AGENT", "PID"):
            table.add_column(column)
        for cluster, node in nodes:
            table.add_row(escape(cluster), escape(node.name), node.address,
                          "[green]running[/]" if node.running else "[red]stopped[/]",
                          str(node.agent_pid or "-"))
        out.print()
        out.print(table)


def _process_options(command):
    """--config and --log-level, for the processes a cluster runs (server, controller
    manager, DNS)."""
    command = click.option("--log-level", default="info", show_default=True,
                           type=click.Choice(["debug", "info", "warning", "error"]))(command)
    return click.option("--config", "config_path", required=True,
                        type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        help="The cluster's config.yaml (written by `kwire up`).")(command)


@main.command()
@_process_options
def server(config_path: Path, log_level: str) -> None:
    """Run a cluster's API server in the foreground (until SIGTERM).

    `kwire up` runs this detached, with output going to the cluster's server.log.
    """
    config = ClusterConfig.load(config_path)
    config.validate()
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kwire.api.server import serve  # keeps aiohttp & co. out of every other verb

    serve(config)


def _child_config(config_path: Path, log_level: str) -> ClusterConfig:
    """The cluster config a process the API server starts runs with, logging set up."""
    config = ClusterConfig.load(config_path)
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return config


@main.command("controller-manager")
@_process_options
def controller_manager(config_path: Path, log_level: str) -> None:
    """Run a cluster's controllers (the API server starts this itself)."""
    from kwire.controllers.process import serve

    serve(_child_config(config_path, log_level))


@main.command()
@_process_options
def dns(config_path: Path, log_level: str) -> None:
    """Serve a cluster's DNS on its underlay host address (the API server starts this itself)."""
    from kwire.dns.server import serve

    serve(_child_config(config_path, log_level))


main.add_command(agent)
main.add_command(get)
main.add_command(describe)
main.add_command(apply)
main.add_command(create)
main.add_command(delete)
main.add_command(logs)
main.add_command(exec_command)
main.add_command(images)
main.add_command(node_group)
main.add_command(port_forward)

if __name__ == "__main__":
    main()
