"""The only way kwire components talk to the API server (DESIGN rule 1): a REST
client, and the informer + work queue every controller and agent loop uses."""
from kwire.client.informer import (Backoff, Informer, Informers, Store, WorkQueue, labels_match,
                                   object_key, run_controller, run_workers)
from kwire.client.rest import (TRANSPORT_ERRORS, ApiError, ApiResource, Client, KubeconfigError, group_of,
                               resource_path, ssl_context)

__all__ = ["TRANSPORT_ERRORS", "ApiError", "ApiResource", "Backoff", "Client", "Informer", "Informers",
           "KubeconfigError", "Store", "WorkQueue", "group_of", "labels_match", "object_key",
           "resource_path", "run_controller", "run_workers", "ssl_context"]
