"""The node agent: kubelet role (pod sandboxes, containers, images)."""
