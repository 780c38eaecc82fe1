"""The gateway's side of a WebRTC or SIP call: the sideband (issue 17; §4.3, §5.5).

On these two doors the audio and the client's events go straight between the caller and the
upstream (the browser's peer connection and data channel, or the phone network); the gateway is
not on the media path, which is the point (no relay hop). It keeps the server's hands on the call
through the **sideband**: a WebSocket to the same upstream session (``?call_id=``), opened with
the server's credential. Over it a ``CallSession`` runs what a WebSocket session runs:

* the profile's authoritative ``session.update`` (the call also *starts* with it: the minted
  secret or the SIP ``accept`` carry the same session), the tools the gateway runs (and a call's
  own, such as SIP's ``transfer_to_human``), pricing per turn, the session and daily budgets, the
  ledger (transport ``webrtc``/``sip``), metrics and logs: all of it is ``GatewaySession``'s code,
  with a ``CallFeed`` in the place of the client's socket;
* **the locked session**: the client can send ``session.update`` over its data channel, and the
  gateway cannot stop the frame. It sees the ``session.updated`` that follows, and when the
  instructions, tools, tool choice (or a setting the profile does not make adjustable) differ from
  the profile's, it undoes the change at once with its own ``session.update``, cancels a response
  started meanwhile, and tells the page; a client that keeps trying is hung up on;
* **the end**: whatever ends the session (a budget, a limit, the policy, a shutdown, a lost
  sideband) hangs up the call through the REST API. A call the gateway cannot watch is a call
  it cannot meter, so it does not go on.

The page cannot get the gateway's ``realtalk.*`` messages in-band (the data channel is the
upstream's), so ``CallFeed`` keeps them for ``GET /api/realtime/calls/{id}/events`` (server-sent
events): the same messages the WebSocket relay sends, plus a last ``realtalk.ended``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncGenerator, Mapping, Sequence
from decimal import Decimal
from time import perf_counter
from typing import Any, Final, Literal

from realtalk.client.tools import Tool, tool_definition
from realtalk.gateway import extension
from realtalk.gateway.budgets import DailySpend
from realtalk.gateway.call_control import CallControl, CallControlError
from realtalk.gateway.channels import UpstreamListener
from realtalk.gateway.endings import Ending
from realtalk.gateway.policy import Refusal
from realtalk.gateway.relay import GatewaySession, SessionServices
from realtalk.gateway.upstream import UPSTREAM_ERRORS
from realtalk.protocol import ResponseState
from realtalk.protocol.session_config import AUDIO_FORMATS, AudioFormatName

__all__ = ["CallFeed", "CallSession", "CallTransport", "call_session_config"]

logger = logging.getLogger("realtalk.gateway.calls")

CallTransport = Literal["webrtc", "sip"]

# A client that changes the locked session this many times is hung up on (the first ones may be
# an SDK's default update; each one is undone anyway).
MAX_LOCKED_CHANGES: Final = 3
LOCKED_SENTENCE: Final = "The agent's instructions and tools are set by the server; the change was undone."
_FEED_BACKLOG: Final = 64
_SUBSCRIBER_QUEUE: Final = 256
_EXTENSION_PREFIX: Final = b'{"type":"realtalk.'


def call_session_config(
    services: SessionServices,
    *,
    call_tools: Sequence[Tool] = (),
    audio_format: AudioFormatName | None = None,
) -> dict[str, Any]:
    """The session a call starts with (the minted secret's, or the SIP ``accept`` body): the
    profile's authoritative session, the call's own tools added, on the gateway's deployment."""
    agent = services.config.profile.agent
    session: dict[str, Any] = dict(agent.to_session())
    if call_tools:
        session["tools"] = [*session["tools"], *(tool_definition(tool) for tool in call_tools)]
    if audio_format is not None:
        fmt = AUDIO_FORMATS[audio_format].wire
        session["audio"] = {
            "input": {**session["audio"]["input"], "format": dict(fmt)},
            "output": {**session["audio"]["output"], "format": dict(fmt)},
        }
    session["model"] = services.upstream.endpoint.deployment
    return session


class CallFeed:
    """What the session would send its client, for a client that is not on a gateway socket.

    It keeps only the gateway's own ``realtalk.*`` messages (the client gets the upstream's events
    on its own channel): the last ``_FEED_BACKLOG`` for a page that subscribes late, and each new
    one for every subscriber. A subscriber that does not read loses its oldest messages, never
    holds the session up. ``close`` adds ``realtalk.ended`` and ends every subscription.
    """

    def __init__(self) -> None:
        self._backlog: deque[str] = deque(maxlen=_FEED_BACKLOG)
        self._subscribers: set[asyncio.Queue[str | None]] = set()
        self._closed = False
        self.ended: dict[str, Any] | None = None

    # -- ClientChannel ------------------------------------------------------------------------------

    def send_text(self, data: bytes) -> None:
        if self._closed or not data.startswith(_EXTENSION_PREFIX):
            return
        self._publish(data.decode())

    def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self.ended = {"type": "realtalk.ended", "code": code, "reason": reason}
        self._publish(json.dumps(self.ended, separators=(",", ":")))
        self._closed = True
        for queue in self._subscribers:
            self._put(queue, None)

    def pause_reading(self) -> None:
        """Nothing to pause: the client sends the gateway nothing."""

    def resume_reading(self) -> None:
        """Nothing to resume."""

    @property
    def closed(self) -> bool:
        return self._closed

    # -- subscribers --------------------------------------------------------------------------------

    def _publish(self, text: str) -> None:
        self._backlog.append(text)
        for queue in self._subscribers:
            self._put(queue, text)

    @staticmethod
    def _put(queue: asyncio.Queue[str | None], item: str | None) -> None:
        if queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
        queue.put_nowait(item)

    async def subscribe(self, keepalive_s: float | None = None) -> AsyncGenerator[str | None, None]:
        """The messages so far, then each new one, until the call ends; ``None`` after
        ``keepalive_s`` without a message (a stream that must not stay silent says so)."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(_SUBSCRIBER_QUEUE)
        for text in self._backlog:
            self._put(queue, text)
        if self._closed:
            self._put(queue, None)
        self._subscribers.add(queue)
        try:
            while True:
                try:
                    async with asyncio.timeout(keepalive_s):
                        item = await queue.get()
                except TimeoutError:
                    yield None
                    continue
                if item is None:
                    return
                yield item
        finally:
            self._subscribers.discard(queue)


class CallSession(GatewaySession):
    """One WebRTC or SIP call, watched and metered over its sideband; ``await run()`` to the end."""

    def __init__(
        self,
        services: SessionServices,
        call_id: str,
        subject: str,
        *,
        control: CallControl,
        transport: CallTransport,
        daily: DailySpend | None = None,
        session_id: str | None = None,
        caller: str | None = None,
        call_tools: Sequence[Tool] = (),
        audio_format: AudioFormatName | None = None,
    ) -> None:
        super().__init__(
            services,
            None,
            subject,
            ui=True,
            daily=daily,
            session_id=session_id,
            transport=transport,
            extra_tools=call_tools,
            audio_format=audio_format,
        )
        self.call_id = call_id
        self.transport: CallTransport = transport
        self.caller = caller  # masked (SIP): for the log only
        self.feed = CallFeed()
        self._control = control
        self._created_session: Mapping[str, Any] | None = None
        self.locked_changes = 0

    @property
    def cost_usd(self) -> Decimal:
        """What the call has cost so far (every priced turn)."""
        return self._core.costs.total_usd

    async def run(self, subprotocol: str | None = None) -> None:
        """Attach to the call, watch it until it ends, and hang it up if it is still going."""
        metrics = self._svc.metrics
        self._client = self.feed
        metrics.sessions.inc()
        metrics.sessions_active.inc()
        metrics.calls.labels(self.transport).inc()
        self.log.info(
            "call %s attached (%s%s)",
            self.call_id,
            self.transport,
            f", from {self.caller}" if self.caller else "",
        )
        try:
            try:
                await self._svc.upstream.connect(
                    lambda: UpstreamListener(self), self._svc.config.connect_timeout_s, call_id=self.call_id
                )
            except UPSTREAM_ERRORS as exc:
                self._upstream_unavailable(f"the call's sideband: {exc}")
            else:
                await self._supervise()
        finally:
            await self._close()
            await self._hang_up()
            metrics.close_traffic(self._traffic)
            metrics.sessions_active.dec()
            self.closed.set()

    async def _hang_up(self) -> None:
        try:
            await self._control.hangup(self.call_id)
        except CallControlError as exc:
            # Usually the call had already ended (the caller hung up, so the sideband closed).
            self.log.info("hangup of call %s: %s", self.call_id, exc.detail)

    # -- the upstream's events ----------------------------------------------------------------------

    def upstream_text(self, data: bytes) -> None:
        # No client frames reach the gateway on a call: the call's own events are its activity
        # (the idle limit hangs up a call where nothing happens at all).
        self.last_client_s = perf_counter()
        super().upstream_text(data)

    def _upstream_event(self, data: bytes, received_s: float) -> None:
        before = self._view.current
        super()._upstream_event(data, received_s)
        session = self._view.current  # replaced by each session.created / session.updated
        if session is before or session is None:
            return
        if self._created_session is None:
            self._created_session = session
        elif self._ending is None and (changed := self._locked_changes(session)):
            self._undo(changed)

    def _expected(self) -> dict[str, Any]:
        """The locked settings' values: the profile's, and for what it leaves unset, the call's start."""
        authoritative: dict[str, Any] = dict(self.agent.to_session())
        created = self._created_session or {}
        adjustable = self._svc.config.profile.client_adjustable
        expected: dict[str, Any] = {
            "instructions": authoritative.get("instructions", created.get("instructions")),
            "tools": sorted(str(tool.get("name")) for tool in authoritative["tools"]),
            "tool_choice": authoritative["tool_choice"],
        }
        if "voice" not in adjustable:
            expected["voice"] = authoritative["audio"]["output"]["voice"]
        return expected

    def _locked_changes(self, session: Mapping[str, Any]) -> list[str]:
        expected = self._expected()
        tools = session.get("tools")
        actual: dict[str, Any] = {
            "instructions": session.get("instructions"),
            "tools": sorted(str(tool.get("name")) for tool in tools if isinstance(tool, dict))
            if isinstance(tools, list)
            else None,
            "tool_choice": session.get("tool_choice"),
        }
        if "voice" in expected:
            audio = session.get("audio")
            output = audio.get("output") if isinstance(audio, dict) else None
            actual["voice"] = output.get("voice") if isinstance(output, dict) else None
        return [name for name, value in expected.items() if actual[name] != value]

    def _undo(self, changed: list[str]) -> None:
        """Put the locked settings back, stop a response that may have used them, tell the page."""
        self.locked_changes += 1
        self._svc.metrics.refused("locked_session")
        self._log_some(
            logging.WARNING,
            "locked session changed",
            "the client changed %s on call %s; undone",
            ", ".join(changed),
            self.call_id,
        )
        authoritative: dict[str, Any] = dict(self.agent.to_session())
        expected = self._expected()
        restore: dict[str, Any] = {
            "type": "realtime",
            "instructions": expected["instructions"] or "",
            "tools": authoritative["tools"],
            "tool_choice": authoritative["tool_choice"],
        }
        if "voice" in expected:
            restore["audio"] = {"output": {"voice": expected["voice"]}}
        self._upstream_send(json.dumps({"type": "session.update", "session": restore}).encode())
        if self._core.conversation.response_state is not ResponseState.IDLE:
            self._upstream_send(b'{"type":"response.cancel"}')
        self._send_client(extension.notice_message("warning", "session_locked", LOCKED_SENTENCE))
        if self.locked_changes >= MAX_LOCKED_CHANGES:
            text = (
                "the call was ended: the client changed the agent's locked settings "
                f"{self.locked_changes} times"
            )
            self.log.warning("%s", text)
            self._end(
                Ending(
                    "policy",
                    1008,
                    text,
                    1000,
                    "policy",
                    error=Refusal("session_locked", text),
                    notice=("error", "session_locked", text[0].upper() + text[1:] + "."),
                )
            )
