"""kwire: a Kubernetes-compatible cluster in Python whose networking is real."""

KUBE_VERSION = "v1.32.4"
__version__ = "0.1.0"
