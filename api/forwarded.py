"""Which proxies' X-Forwarded-For the server believes: none, unless configured.

The rate limit keys on the client address. uvicorn, left to its defaults, believes the
X-Forwarded-For of any connection from 127.0.0.1, so anything that can reach the port
from the same host (a sidecar, a local user, another container sharing the network) picks
a fresh address per request and is never limited. Only the operator knows whether a
reverse proxy sits in front and where it is, so the header is believed only from the
addresses in `api.trusted_proxies`.
"""

from __future__ import annotations

from collections.abc import Sequence


def uvicorn_proxy_options(trusted_proxies: Sequence[str]) -> dict[str, object]:
    """The uvicorn.run / uvicorn.Config keyword arguments for these trusted proxies."""
    if not trusted_proxies:
        # forwarded_allow_ips is set too, so FORWARDED_ALLOW_IPS in the environment
        # cannot widen the trust behind the settings' back.
        return {"proxy_headers": False, "forwarded_allow_ips": []}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted_proxies)}
