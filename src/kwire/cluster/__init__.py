"""A cluster's lifecycle around the API server: configuration, PKI, kubeconfig, up/down.

`config` says what a cluster is and where its files live, `pki` makes its certificates
and tokens, `kubeconfig` writes and merges kubeconfig entries, and `lifecycle` starts,
stops and inspects the detached API server.
"""
from kwire.cluster.config import ClusterConfig, ClusterError, ConfigError

__all__ = ["ClusterConfig", "ClusterError", "ConfigError"]
