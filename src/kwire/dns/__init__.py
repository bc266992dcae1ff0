"""Cluster DNS, served as Service kube-system/kube-dns: records.py (pure) and server.py."""
