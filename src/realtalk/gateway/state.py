"""What one gateway app holds while it runs: configuration, services, open sessions, admissions.

The handlers stay glue: they ask ``GatewayState`` whether a client may connect (``admit``: Origin,
shutdown, authentication, this replica's limits, in that order; then ``reserve``: the per-user
session count shared through the ledger and the daily budgets; all before anything is opened
upstream), hand the socket to a ``GatewaySession``, and give its slot back. A WebRTC or SIP call
goes through the same admission and reservation, then to a ``CallSession`` (``call_session``,
``serve_call``; ``calls`` finds it by call id). ``drain`` is the graceful shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy.exc import DBAPIError
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from realtalk.client.tools import Tool
from realtalk.errors import ConfigError
from realtalk.gateway.auth import (
    REFUSAL,
    Authenticator,
    AuthFailure,
    Principal,
    origin_allowed,
    pick_subprotocol,
)
from realtalk.gateway.budgets import DailySpend, seconds_to_midnight
from realtalk.gateway.call_control import CallControl
from realtalk.gateway.calls import CallSession, CallTransport
from realtalk.gateway.config import GatewayConfig
from realtalk.gateway.limits import Admissions, per_user_refusal
from realtalk.gateway.metrics import GatewayMetrics
from realtalk.gateway.policy import ClientEventPolicy, Refusal
from realtalk.gateway.relay import SHUTDOWN_SENTENCE, Ending, GatewaySession, SessionServices
from realtalk.gateway.tool_side import SessionTools, session_tools
from realtalk.gateway.upstream import ReadinessProbe, Upstream
from realtalk.ledger import Ledger
from realtalk.ledger.leases import Lease, LeaseUnavailable, SessionLeases
from realtalk.protocol.session_config import AudioFormatName

__all__ = ["Admission", "GatewayState", "HandshakeRefusal", "Reservation"]

logger = logging.getLogger("realtalk.gateway")

_ENDED_CALL_KEPT_S: Final = 60.0


@dataclass(frozen=True)
class Admission:
    """A client that may connect: who it is, the subprotocol to answer with, UI extensions or not."""

    principal: Principal
    subprotocol: str | None
    ui: bool
    session_id: str = field(default_factory=lambda: "gw_" + secrets.token_hex(8))


@dataclass(frozen=True)
class Reservation:
    """What ``reserve`` took for an admitted client: its shared lease and today's spend."""

    lease: Lease | None = None
    daily: DailySpend | None = None


@dataclass(frozen=True)
class HandshakeRefusal:
    """An HTTP answer to a refused WebSocket upgrade (nothing was opened upstream)."""

    status: int
    code: str
    message: str
    retry_after_s: int | None = None


class GatewayState:
    """The state of one gateway app (one per ``create_app``; nothing is process-global)."""

    def __init__(self, config: GatewayConfig, static_dir: Path) -> None:
        self.config = config
        self.static_dir = static_dir
        self.metrics = GatewayMetrics()
        self.policy = ClientEventPolicy(config.profile.client_adjustable)
        self.auth = Authenticator(
            static_tokens=config.static_tokens,
            # Without a configured secret, cookies and minted tokens are signed with a key that
            # lives as long as the process (one replica; they end with a restart).
            secret=config.secret or secrets.token_bytes(32),
            signed_tokens_configured=config.secret is not None,
            trust_principal_header=config.trust_principal_header,
            token_ttl_s=config.token_ttl_s,
            previous_secrets=(config.previous_secret,) if config.previous_secret else (),
        )
        self.admissions = Admissions(config.limits.max_sessions, config.limits.max_sessions_per_user)
        self.sessions: set[GatewaySession] = set()
        self.draining = False
        self._services: SessionServices | None = None
        self.tools: SessionTools | None = None
        self.ledger: Ledger | None = None
        self.leases: SessionLeases | None = None
        self.probe: ReadinessProbe | None = None
        self.call_control: CallControl | None = None
        self.calls: dict[str, CallSession] = {}  # WebRTC and SIP calls by call id, live or just ended
        # Sessions relay audio through the compiled fast path where it was built; tests switch it
        # off to run the same sessions on the Python path.
        self.compiled_fast_path = True

    def set_upstream(self, upstream: Upstream, ledger: Ledger | None = None) -> None:
        """Called by the lifespan once the upstream (Azure or the embedded emulator) is known."""
        self.tools = session_tools(self.config.profile, upstream)
        self.ledger = ledger
        if ledger is not None:
            self.leases = SessionLeases(ledger.engine, ttl_s=self.config.limits.session_lease_s)
            self.leases.start()
        self.metrics.watch_ledger(ledger, self.leases)
        self._services = SessionServices(
            self.config,
            upstream,
            self.policy,
            self.metrics,
            compiled=self.compiled_fast_path,
            tools=self.tools,
            ledger=ledger,
        )
        self.call_control = CallControl(upstream, timeout_s=self.config.connect_timeout_s)
        self.probe = ReadinessProbe(
            upstream, cache_s=self.config.ready_cache_s, timeout_s=self.config.connect_timeout_s
        )

    async def aclose(self) -> None:
        """Release what sessions shared (the delegation tool's HTTP client, the session leases)."""
        if self.call_control is not None:
            await self.call_control.aclose()
        if self.leases is not None:
            await self.leases.aclose()
        if self.tools is not None:
            await self.tools.aclose()

    @property
    def services(self) -> SessionServices | None:
        """What sessions share, once the upstream is known."""
        return self._services

    @property
    def upstream(self) -> Upstream | None:
        return self._services.upstream if self._services is not None else None

    # -- requests ---------------------------------------------------------------------------------

    def origin_ok(self, connection: HTTPConnection) -> bool:
        return origin_allowed(
            connection.headers.get("origin"), connection.headers.get("host"), self.config.origins
        )

    def authenticate(
        self, connection: HTTPConnection, subprotocols: list[str] | None = None
    ) -> Principal | AuthFailure:
        client = connection.client.host if connection.client is not None else "unknown"
        return self.auth.authenticate(
            headers=connection.headers,
            cookies=connection.cookies,
            subprotocols=subprotocols or (),
            client_host=client,
            now_s=time.time(),
        )

    def log_refusal(self, connection: HTTPConnection, failure: AuthFailure) -> None:
        """One log line on why a client was refused (the client is only told ``REFUSAL``)."""
        client = connection.client.host if connection.client is not None else "unknown"
        logger.info("refused a client from %s on %s: %s", client, connection.url.path, failure.reason)

    def admit(self, websocket: WebSocket) -> Admission | HandshakeRefusal:
        """Decide on a WebSocket upgrade; an ``Admission`` holds a session slot until ``release``."""
        offered = list(websocket.scope.get("subprotocols") or [])
        ui = websocket.query_params.get("realtalk_ui") == "1"
        return self.admit_connection(websocket, offered, ui=ui)

    def admit_connection(
        self, connection: HTTPConnection, offered: list[str] | None = None, *, ui: bool
    ) -> Admission | HandshakeRefusal:
        """Decide on a client's request for a session (a WebSocket upgrade, or the offer of a
        WebRTC call): origin, credentials, the gateway's own session limits."""
        if not self.origin_ok(connection):
            return HandshakeRefusal(403, "origin_not_allowed", "this web origin may not use the gateway")
        if self.draining or self._services is None:
            return HandshakeRefusal(503, "shutting_down", "the gateway is shutting down; reconnect shortly")
        principal = self.authenticate(connection, offered)
        if isinstance(principal, AuthFailure):
            self.log_refusal(connection, principal)
            return HandshakeRefusal(401, "unauthorized", REFUSAL)
        return self.admit_principal(principal, pick_subprotocol(offered or []), ui=ui)

    def admit_principal(
        self, principal: Principal, subprotocol: str | None = None, *, ui: bool = False
    ) -> Admission | HandshakeRefusal:
        """The gateway's own limits for an authenticated caller (a SIP call's is the gateway's)."""
        if self.draining or self._services is None:
            return HandshakeRefusal(503, "shutting_down", "the gateway is shutting down; reconnect shortly")
        refused = self.admissions.admit(principal.subject)
        if refused is not None:
            return HandshakeRefusal(429, "too_many_sessions", refused)
        return Admission(principal, subprotocol, ui)

    async def reserve(self, admission: Admission) -> Reservation | HandshakeRefusal:
        """The checks that ask the ledger database, so that they hold across replicas: the user's
        open sessions (a lease, HTTP 429 ``too_many_sessions`` when at the limit) and today's spend
        (HTTP 429 ``daily_budget_exceeded``). A database that cannot be asked refuses with 503: no
        session goes unmetered. On a refusal everything taken is given back."""
        user = admission.principal.subject
        lease: Lease | None = None
        try:
            if self.leases is not None:
                limit = self.config.limits.max_sessions_per_user
                lease = await self.leases.acquire(session_id=admission.session_id, user=user, limit=limit)
                if lease is None:
                    self.admissions.release(user)
                    logger.info("refused %s: %d open sessions on the gateway's replicas", user, limit)
                    return HandshakeRefusal(429, "too_many_sessions", per_user_refusal(limit))
            daily = await self._daily_spend(user)
        except (LeaseUnavailable, ConfigError) as exc:
            await self._give_back(user, lease)
            logger.error("refused %s: %s", user, exc)
            return HandshakeRefusal(
                503, "ledger_unavailable", "usage accounting is unavailable; try again shortly", 5
            )
        except BaseException:
            await self._give_back(user, lease)
            raise
        if isinstance(daily, HandshakeRefusal):
            await self._give_back(user, lease)
            return daily
        return Reservation(lease, daily)

    async def _give_back(self, user: str, lease: Lease | None) -> None:
        self.admissions.release(user)
        if lease is not None and self.leases is not None:
            await self.leases.release(lease)

    async def _daily_spend(self, user: str) -> DailySpend | HandshakeRefusal | None:
        """Today's spend of every capped scope (``None``: no daily caps); a refusal when a cap is
        already reached."""
        budgets = self.config.daily_budgets
        if not budgets.configured or self.ledger is None or self._services is None:
            return None
        now = datetime.now(UTC)
        try:
            spend = await budgets.spend_today(
                self.ledger, user=user, deployment=self._services.upstream.endpoint.deployment, now=now
            )
        except (OSError, DBAPIError) as exc:
            raise LeaseUnavailable(
                f"could not read today's spend from the ledger: {type(exc).__name__}"
            ) from None
        scope = spend.exceeded()
        if scope is None:
            return spend
        logger.info("refused %s: the daily budget of %s is reached", user, scope.name)
        return HandshakeRefusal(429, "daily_budget_exceeded", spend.sentence(scope), seconds_to_midnight(now))

    def call_session(
        self,
        call_id: str,
        admission: Admission,
        reservation: Reservation,
        *,
        transport: CallTransport,
        caller: str | None = None,
        call_tools: Sequence[Tool] = (),
        audio_format: AudioFormatName | None = None,
    ) -> CallSession:
        """The session that will watch call ``call_id`` (run it with ``serve_call``); findable
        by its id in ``calls`` from now on."""
        assert self._services is not None and self.call_control is not None
        session = CallSession(
            self._services,
            call_id,
            admission.principal.subject,
            control=self.call_control,
            transport=transport,
            daily=reservation.daily,
            session_id=admission.session_id,
            caller=caller,
            call_tools=call_tools,
            audio_format=audio_format,
        )
        self.track_call(session)
        return session

    def track_call(self, session: CallSession) -> None:
        """Make ``session`` findable by its call id (``calls``) until a minute after it ends; for a
        ``CallSession`` subclass built outside ``call_session`` (a SIP call's)."""
        self.calls[session.call_id] = session

    async def serve_call(self, session: CallSession, admission: Admission, reservation: Reservation) -> None:
        """Run one call's session to its end, then give its slot (and lease) back. The call stays
        findable in ``calls`` for a minute after (a page reading how it ended)."""
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            await self._give_back(admission.principal.subject, reservation.lease)
            asyncio.get_running_loop().call_later(_ENDED_CALL_KEPT_S, self._forget_call, session)

    def _forget_call(self, session: CallSession) -> None:
        if self.calls.get(session.call_id) is session:
            del self.calls[session.call_id]

    async def give_back(self, admission: Admission, reservation: Reservation | None) -> None:
        """Return what ``admit_*`` and ``reserve`` took, for a session that never started."""
        await self._give_back(admission.principal.subject, reservation.lease if reservation else None)

    async def serve(
        self, websocket: WebSocket, admission: Admission, reservation: Reservation | None = None
    ) -> None:
        """Run one admitted session to its end, then give its slot (and lease) back."""
        assert self._services is not None
        reservation = reservation or Reservation()
        session = GatewaySession(
            self._services,
            websocket,
            admission.principal.subject,
            ui=admission.ui,
            daily=reservation.daily,
            session_id=admission.session_id,
        )
        self.sessions.add(session)
        try:
            await session.run(admission.subprotocol)
        finally:
            self.sessions.discard(session)
            await self._give_back(admission.principal.subject, reservation.lease)

    # -- shutdown ---------------------------------------------------------------------------------

    async def drain(self, bound_s: float | None = None) -> None:
        """Graceful shutdown: refuse new clients, tell connected ones, let in-flight responses
        finish for up to ``bound_s`` (``REALTALK_GATEWAY_DRAIN_S``), then close every session with
        1001 and ``SHUTDOWN_SENTENCE`` (an ``error`` event with it first)."""
        self.draining = True
        bound = self.config.drain_s if bound_s is None else bound_s
        sessions = [session for session in self.sessions if not session.ending]
        if not sessions:
            return
        logger.warning(
            "shutting down: %d open sessions get up to %g s to finish their replies", len(sessions), bound
        )
        for session in sessions:
            await session.begin_drain()
        waiters = [asyncio.create_task(session.wait_response_idle()) for session in sessions]
        try:
            await asyncio.wait(waiters, timeout=bound)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        for session in sessions:
            session.end(
                # Every client gets an `error` event first (begin_drain warned only the UI, which
                # understands realtalk.notice; an SDK may take an early `error` as fatal).
                Ending(
                    "shutdown",
                    1001,
                    SHUTDOWN_SENTENCE,
                    1000,
                    "gateway shutting down",
                    error=Refusal("server_shutting_down", SHUTDOWN_SENTENCE),
                )
            )
        closers = [asyncio.create_task(session.closed.wait()) for session in sessions]
        try:
            await asyncio.wait(closers, timeout=5.0)
        finally:
            for closer in closers:
                closer.cancel()
            await asyncio.gather(*closers, return_exceptions=True)
