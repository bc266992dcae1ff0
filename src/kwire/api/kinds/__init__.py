"""One module per API group; importing them registers their kinds."""
from kwire.api.kinds import core, apps, discovery, networking, coordination  # noqa: F401
