"""Who may read a tenant's KPIs and who may write its events: bearer tokens.

Two kinds of token open a tenant: the operator's (``SALESPULSE_READ_TOKEN``,
``SALESPULSE_INGEST_TOKEN``) open every tenant; a tenant's own (``tokens.read`` and
``tokens.ingest`` in the tenants file) open that tenant only. Like the wall's screen
tokens they are kept as SHA-256 digests (the file may hold only the digest) and compared
in constant time. A request's token is compared with every digest, whatever tenant it
asks for, so an unknown tenant and a wrong token take the same path to the same 401.

Beyond loopback nothing is open by default: a process that would serve an open ingest or
open reads on another interface refuses to start (``refuse_open_exposure``).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from typing import Final, Literal

from salespulse.core.errors import InvalidEventError, SalesPulseError
from salespulse.core.settings import MIN_TOKEN_LENGTH, Settings
from salespulse.core.tenants import TenantDirectory, TenantsFileError, token_digest

# The scope of an operator token: every tenant.
ANY_TENANT: Final = "*"

Kind = Literal["read", "ingest"]


class UnsafeExposureError(SalesPulseError):
    """The process would serve open data or an open door beyond loopback; names the fix."""


class TokenTable:
    """Token digests of one kind, each bound to one tenant or (the operator's) to all."""

    def __init__(self, operator: str | None, by_tenant: Iterable[tuple[str, str, bytes]]) -> None:
        self._operator = token_digest(operator) if operator else None
        self._bound: list[tuple[bytes, str]] = []
        for tenant, where, digest in by_tenant:
            # One token, one tenant: otherwise which tenant a writer may write is a guess.
            taken = [known for known, _ in self._bound]
            if self._operator is not None:
                taken.append(self._operator)
            if any(hmac.compare_digest(digest, known) for known in taken):
                raise TenantsFileError(f"{where}: token used by another tenant or the operator")
            self._bound.append((digest, tenant))

    @classmethod
    def of(cls, kind: Kind, tenants: TenantDirectory, operator: str | None) -> TokenTable:
        """The operator's token of this kind and every tenant's (their secrets read now)."""
        found = []
        for tenant in tenants.names():
            tokens = tenants.get(tenant).tokens
            refs = tokens.read if kind == "read" else tokens.ingest
            for name, ref in refs.items():
                where = f"tenants.{tenant}.tokens.{kind}.{name}"
                secret = ref.token.reveal().get_secret_value() if ref.token else None
                if secret is not None and len(secret.strip()) < MIN_TOKEN_LENGTH:
                    raise TenantsFileError(f"{where}: at least {MIN_TOKEN_LENGTH} characters")
                found.append((tenant, where, ref.digest()))
        return cls(operator, found)

    @property
    def enforced(self) -> bool:
        """False when no token of this kind exists at all: then nothing is asked for."""
        return self._operator is not None or bool(self._bound)

    def scope(self, token: str | None) -> str | None:
        """ANY_TENANT for the operator's token, the bound tenant for a tenant's, else None."""
        offered = token_digest(token or "")
        found: str | None = None
        # Every digest is compared, without stopping at a match: the time taken tells nothing.
        if self._operator is not None and hmac.compare_digest(self._operator, offered):
            found = ANY_TENANT
        for digest, tenant in self._bound:
            if hmac.compare_digest(digest, offered) and found is None:
                found = tenant
        return found if token else None

    def opens(self, tenant: str, token: str | None) -> bool:
        scope = self.scope(token)
        return scope is not None and scope in (ANY_TENANT, tenant)


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def check_scope(tenants: Iterable[str], scope: str) -> None:
    """A tenant's ingest token writes its own tenant's events only: raise naming the others."""
    if scope == ANY_TENANT:
        return
    problems: list[dict[str, object]] = [
        {
            "index": index,
            "field": "tenant",
            "problem": f"this token writes only tenant {scope!r}'s events",
        }
        for index, tenant in enumerate(tenants)
        if tenant != scope
    ]
    if problems:
        raise InvalidEventError("tenant_forbidden", problems)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or "": may be any interface


def refuse_open_exposure(
    host: str,
    *,
    open_ingest: bool,
    ingest_behind_proxy: bool,
    open_reads: bool,
    reads_behind_proxy: bool,
) -> None:
    """Raise, naming the settings, if an open door would listen beyond loopback."""
    if is_loopback(host):
        return
    if open_ingest and not ingest_behind_proxy:
        raise UnsafeExposureError(
            f"POST /v1/events would be open to anyone on {host!r} (SALESPULSE_HTTP_HOST): "
            "set SALESPULSE_INGEST_TOKEN (or a tenant's tokens.ingest), or "
            "SALESPULSE_INGEST_BEHIND_AUTH_PROXY=true if a proxy authenticates every sender"
        )
    if open_reads and not reads_behind_proxy:
        raise UnsafeExposureError(
            f"/v1/kpis and /v1/waiting would show every tenant to anyone on {host!r} "
            "(SALESPULSE_HTTP_HOST): set SALESPULSE_READ_TOKEN (or a tenant's tokens.read), "
            "or SALESPULSE_READS_BEHIND_AUTH_PROXY=true if a proxy authenticates every reader"
        )


def refuse_open_doors(
    settings: Settings, tenants: TenantDirectory, *, serves_ingest: bool, serves_reads: bool
) -> None:
    """What a process checks before it listens: raise if its ingest (``serves_ingest``) or
    its JSON reads (``serves_reads``) would be open beyond loopback."""
    # Each table only for a door this process serves: its secrets may exist only there.
    open_ingest = serves_ingest and not (
        TokenTable.of("ingest", tenants, settings.ingest_token_value()).enforced
    )
    open_reads = serves_reads and not (
        TokenTable.of("read", tenants, settings.read_token_value()).enforced
    )
    refuse_open_exposure(
        settings.http_host,
        open_ingest=open_ingest,
        ingest_behind_proxy=settings.ingest_behind_auth_proxy,
        open_reads=open_reads,
        reads_behind_proxy=settings.reads_behind_auth_proxy,
    )
