"""The Kubernetes REST API: kinds as data, admission, handlers."""
