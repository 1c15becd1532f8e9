"""Admin authentication and the per-client rate limit for the public routes."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path

from fastapi import Request

from lectern.errors import RateLimitedError, UnauthorizedError


def admin_token(configured: str | None, data_dir: Path) -> str:
    """The configured token, or one generated once and kept (mode 600) in the data dir."""
    if configured:
        return configured
    path = data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token)
    return token


class BearerAuth:
    """Checks `Authorization: Bearer <token>` in constant time; `name` is what the token is
    called in the refusals (the admin token, the OpenAI routes' API key)."""

    def __init__(self, token: str, name: str = "admin token", routes: str = "admin routes") -> None:
        self._token = token.encode()
        self._name = name
        self._routes = routes

    def __call__(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise UnauthorizedError(f"{self._routes} need 'Authorization: Bearer <{self._name}>'")
        if not hmac.compare_digest(given.strip().encode(), self._token):
            raise UnauthorizedError(f"the {self._name} is wrong")


class RateLimiter:
    """A sliding one-minute window per client address, for at most `max_clients` clients.

    Clients are kept in the order of their last request, so those idle for a whole
    window sit at the front and are dropped there, a few per request; past `max_clients`
    the least recently seen are dropped too, even within their window. Memory stays
    bounded under a flood of addresses and each request does constant work on average.
    """

    def __init__(self, per_minute: int, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        if max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, got {max_clients}")
        self.per_minute = per_minute
        self.window_s = window_s
        self.max_clients = max_clients
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def tracked_clients(self) -> int:
        """How many client addresses the limiter holds hits for."""
        with self._lock:
            return len(self._hits)

    def __call__(self, request: Request) -> None:
        if self.per_minute <= 0:
            return
        client = request.client.host if request.client else "unknown"
        now = time.monotonic()
        with self._lock:
            hits = self._hits.get(client)
            if hits is None:
                hits = self._hits[client] = deque()
            else:
                self._hits.move_to_end(client)
            while hits and now - hits[0] >= self.window_s:
                hits.popleft()
            if len(hits) >= self.per_minute:
                raise RateLimitedError(self.window_s - (now - hits[0]))
            hits.append(now)
            self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop clients from the front: idle for a window, or beyond max_clients."""
        while self._hits:
            oldest = next(iter(self._hits.values()))
            idle = not oldest or now - oldest[-1] >= self.window_s
            if not idle and len(self._hits) <= self.max_clients:
                return
            self._hits.popitem(last=False)
