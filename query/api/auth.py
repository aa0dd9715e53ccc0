"""Who may read which tenant (SPEC §6), decided from request headers alone (no I/O).

Voucherify clients send `X-App-Id` + `X-App-Token`; voucher engine clients send
`Authorization: Bearer <token>` and optionally `tenant`. A token maps to one tenant name, or
to `*` (admin: any tenant, named by the headers). With no tokens configured the service is
loopback-only and trusts the tenant the headers name.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from query.api.activity import check_text
from query.api.errors import Forbidden, Unauthorized

ADMIN = "*"


class Authenticator:
    def __init__(self, tokens: Mapping[str, str]) -> None:
        # Bytes once, so each request compares without re-encoding every token.
        self._tokens = tuple((token.encode(), tenant) for token, tenant in tokens.items())

    @property
    def open(self) -> bool:
        return not self._tokens

    def tenant(self, headers: Mapping[str, str]) -> str:
        """The tenant this request may read; raises Unauthorized, Forbidden or InvalidParam."""
        app_id = _header(headers, "X-App-Id")
        tenant_header = _header(headers, "tenant")
        named = app_id or tenant_header
        if app_id and tenant_header and app_id != tenant_header:
            # One request reads one tenant; two different names are never both granted.
            raise Forbidden("X-App-Id and tenant name different tenants")
        if self.open:
            if named is None:
                raise Unauthorized("name the tenant with the X-App-Id or tenant header")
            return named
        if headers.get("x-app-token") and app_id is None:
            raise Unauthorized("X-App-Token needs X-App-Id")
        granted = self._granted(headers)
        if granted == ADMIN:
            if named is None:
                raise Unauthorized("an admin token needs the tenant (or X-App-Id) header")
            return named
        if named is not None and named != granted:
            raise Forbidden(f"this token does not grant access to tenant {named!r}")
        return granted

    def require_admin(self, headers: Mapping[str, str]) -> None:
        """Cross-tenant reads (the status page) need an admin token once tokens are configured."""
        if not self.is_admin(headers):
            raise Forbidden("this endpoint needs an admin token (tenant '*')")

    def is_admin(self, headers: Mapping[str, str]) -> bool:
        """Whether these credentials may read across tenants (with no tokens configured, anyone
        may); raises Unauthorized for missing or wrong credentials."""
        return self.open or self._granted(headers) == ADMIN

    def _granted(self, headers: Mapping[str, str]) -> str:
        presented = _presented_token(headers)
        if presented is None:
            raise Unauthorized(
                "send X-App-Id and X-App-Token, or Authorization: Bearer <token>"
            )
        candidate = presented.encode()
        granted = None
        # Every token is compared, matching or not, so timing reveals nothing about which.
        for token, tenant in self._tokens:
            if hmac.compare_digest(candidate, token) and granted is None:
                granted = tenant
        if granted is None:
            raise Unauthorized("the token is not valid")
        return granted


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else check_text(name, value)


def _presented_token(headers: Mapping[str, str]) -> str | None:
    app_token = headers.get("x-app-token")
    if app_token:
        return app_token.strip()
    authorization = headers.get("authorization")
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return token.strip()
