"""The network configuration list a node writes for itself: the reference
``bridge`` plugin (a ``cni0`` bridge in the node's namespace, the node's
gateway) with ``host-local`` IPAM over the node's pod subnet. The CNI issue replaces
bridge with kwire's own plugin and adds portmap for hostPorts."""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

CNI_VERSION = "1.0.0"
NETWORK_NAME = "kwire"
BRIDGE = "cni0"


def default_conflist(pod_cidr: str, ipam_dir: Path, mtu: int = 1500) -> dict[str, Any]:
    net = ipaddress.ip_network(pod_cidr)
    return {
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
             "hairpinMode": True, "mtu": mtu,
             "ipam": {"type": "host-local", "dataDir": str(ipam_dir),
                      "ranges": [[{"subnet": str(net), "gateway": str(net.network_address + 1)}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}}
        ],
    }
