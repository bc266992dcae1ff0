"""Controllers: loops that drive the cluster towards what its objects ask for.

They run inside the API server process (see manager.run) but, like any other
client, reach the server only over HTTPS through kwire.client, reading shared
informers and writing through the REST API.
"""
