"""Makes the kernel of the network namespace the agent runs in hold the service proxy
that proxy.py computes: one `nft -f -` transaction per sync, as kube-proxy's nftables
proxier does.

The first sync after start (and any sync after a failed one) replaces the whole
``ip kwire-proxy`` table; later ones send only proxy.diff's changes between the before
and after of what changed (proxy.Tracker). When a UDP
endpoint goes away its conntrack entries are deleted, or the flow would keep going to
the old endpoint for as long as packets keep coming (DNS clients reuse ports).
"""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from kwire.net.proxy import State, diff, render, stale_udp

log = logging.getLogger("kwire.net.proxy")

Runner = Callable[..., subprocess.CompletedProcess]


class ProxyError(Exception):
    """nft refused the rules even on a full resync."""


@dataclass(frozen=True)
class Synced:
    full: bool
    """The whole table was replaced (start, or after a failed partial sync)."""
    size: int
    """Characters sent to nft (0: nothing changed)."""
    flushed: int
    """Stale UDP conntrack entries deleted."""


class ProxyApplier:
    def __init__(self, run: Runner = subprocess.run):
        self._run = run
        self.in_sync = False
        """The kernel holds what the last replace/patch said; False forces a replace."""

    def replace(self, state: State) -> Synced:
        """The whole table in one transaction (the old one, if any, goes with it)."""
        self.in_sync = False
        text = render(state)
        self._nft(text)
        self.in_sync = True
        return Synced(True, len(text), 0)

    def patch(self, before: State, after: State) -> Synced:
        """Only the changes from ``before`` to ``after`` (the parts of the table they
        cover), then the UDP flows whose endpoint went away."""
        text = diff(before, after)
        if text:
            try:
                self._nft(text)
            except ProxyError:
                self.in_sync = False
                raise
        flushed = sum(self._flush(*flow) for flow in sorted(stale_udp(before, after)))
        return Synced(False, len(text), flushed)

    def _nft(self, text: str) -> None:
        r = self._run(["nft", "-f", "-"], input=text, capture_output=True, text=True,
                      check=False)
        if r.returncode != 0:
            raise ProxyError((r.stderr or r.stdout).strip()[:2000])

    def _flush(self, frontend: str, port: int, endpoint: str) -> int:
        """conntrack -D for one stale UDP flow; 0 when none matched (or no conntrack)."""
        if not shutil.which("conntrack"):
            log.warning("conntrack is not installed: stale UDP flows to %s:%d stay", frontend,
                        port)
            return 0
        r = self._run(["conntrack", "-D", "-p", "udp", "--orig-dst", frontend,
                       "--orig-port-dst", str(port), "--reply-src", endpoint],
                      capture_output=True, text=True, check=False)
        # exit 1 when nothing matched; "N flow entries have been deleted." on stderr
        found = re.search(r"(\d+) flow entries have been deleted", r.stderr or "")
        return int(found.group(1)) if found else 0
