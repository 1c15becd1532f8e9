"""uvicorn's server, told to stop the ingests shortly before its graceful period ends.

After SIGTERM uvicorn lets requests run for `timeout_graceful_shutdown` seconds, then
cancels the tasks still running and answers them with a plain-text 500. An upload whose
parse outlasts the period would end that way. One second before the period ends the
ingests in flight are cancelled instead (`Lectern.stop_ingests`), so the upload returns
the API's own JSON saying its file failed because the server is shutting down, and
uvicorn finds nothing left to cancel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from lectern.optional import require

_BEFORE_END_S = 1.0


def graceful_server(config: Any, stop_ingests: Callable[[], None]) -> Any:
    """A uvicorn.Server for `config` that calls `stop_ingests` before its period ends."""
    uvicorn = require("uvicorn", "api")

    class GracefulServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit:  # the first signal; a second one forces the exit
                grace = self.config.timeout_graceful_shutdown or 0.0
                timer = threading.Timer(max(0.0, grace - _BEFORE_END_S), stop_ingests)
                timer.daemon = True
                timer.start()
            super().handle_exit(sig, frame)

    return GracefulServer(config)
