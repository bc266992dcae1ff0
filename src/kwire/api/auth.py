"""Authentication: bearer tokens and client certificates, as kube-apiserver does.

The user of a client certificate is its subject CN and its groups are the O
fields. Health and version endpoints are open to anyone, as they are to
system:anonymous on a real cluster (system:public-info-viewer).
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from kwire.api.errors import APIError

PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()


class Authenticator:
    def __init__(self, tokens: dict[str, User]):
        self.tokens = tokens

    def authenticate(self, request: web.Request) -> User | None:
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            given = header[7:].strip()
            for token, user in self.tokens.items():
                if hmac.compare_digest(token, given):
                    return user
            return None
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        if cert:
            cn, orgs = "", []
            for rdn in cert.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        cn = value
                    elif key == "organizationName":
                        orgs.append(value)
            if cn:
                return User(cn, tuple(orgs))
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        path = request.path.rstrip("/") or "/"
        if not path.startswith(PUBLIC_PATHS):
            user = self.authenticate(request)
            if user is None:
                raise APIError(401, "Unauthorized", "Unauthorized")
            request["user"] = user
        return await handler(request)
