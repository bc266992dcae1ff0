"""One module per API group; importing them registers their kinds."""
from kwire.api.kinds import (apps, authorization, coordination, core, discovery,  # noqa: F401
                              networking)
