"""A streamed answer that gives back its place among the answers in flight when the
client goes away.

Starlette iterates a sync body in a worker thread and, when the client disconnects,
stops asking for more without closing the iterator; the answer's generator then stays
suspended, holding its admission slot (and its place in the decoding batch), until the
garbage collector happens to find it. `AnswerStream` closes it when the response ends,
however it ends.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
CLOSE_WAIT_S = 0.01  # between tries while a worker thread is still inside the stream


def _close(stream: Generator) -> bool:
    """Close `stream`; False while another thread is still running it."""
    try:
        stream.close()
    except ValueError:  # "generator already executing": its next() has not returned yet
        return False
    return True


class AnswerStream(StreamingResponse):
    """Server-sent events from `events`, whose generator `events` is closed at the end."""

    def __init__(self, events: Generator[str, None, None] | Iterator[str]) -> None:
        super().__init__(events, media_type="text/event-stream", headers=SSE_HEADERS)
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if isinstance(self._events, Generator):
                # Shielded: a disconnect may arrive as a cancellation of this very task.
                with anyio.CancelScope(shield=True):
                    # The thread serving the last next() finishes it at its next token.
                    while not await run_in_threadpool(_close, self._events):
                        await anyio.sleep(CLOSE_WAIT_S)
