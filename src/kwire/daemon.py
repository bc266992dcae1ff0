"""How kwire's long-running processes (server, controller manager, later the node
agent) run: one asyncio loop until SIGTERM or SIGINT asks them to stop cleanly."""
from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run main(stop) on a new loop; SIGTERM and SIGINT set stop."""
    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(wrapper())
