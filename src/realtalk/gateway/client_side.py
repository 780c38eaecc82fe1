"""The client's side of a gateway session: frames from the client, and what it is sent back.

Every client frame arrives in a callback (``FrameSink``), on the event loop, and is handled to the
end there: checked against the size limit, the event rate and the policy, then forwarded upstream
as the bytes that came (audio appends without a parse: framing.py), or answered with an ``error``
event naming the rule. Until the authoritative ``session.update`` went upstream, client frames are
held (after ``_HOLD_FRAMES``, reading pauses). Flow control: the client's send buffer over its
high-water mark pauses reading on both sides and starts the ``client_stall_s`` timer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from realtalk.errors import LocalProtocolError
from realtalk.gateway.endings import Ending
from realtalk.gateway.extension import FLUSHED, PLAYBACK, PlaybackReport, parse_playback_report
from realtalk.gateway.framing import append_audio_bytes, b64_decoded_length, readable_event_id
from realtalk.gateway.metrics import CLIENT_TO_UPSTREAM
from realtalk.gateway.policy import Refusal, SessionView, error_event, without_noops

if TYPE_CHECKING:
    from picows import WSTransport

    from realtalk.gateway.channels import ClientChannel
    from realtalk.gateway.limits import EventRateLimiter, Limits
    from realtalk.gateway.logs import SessionLog
    from realtalk.gateway.metrics import Traffic
    from realtalk.gateway.relay import SessionServices
    from realtalk.protocol import ClientProtocol

__all__ = ["ClientSide"]

_HOLD_FRAMES: Final = 8


class ClientSide:
    """``GatewaySession``'s client half (a mixin: the session's state is declared in relay.py)."""

    if TYPE_CHECKING:
        ui: bool
        last_client_s: float
        log: SessionLog
        _svc: SessionServices
        _limits: Limits
        _max_bytes: int
        _limiter: EventRateLimiter
        _client: ClientChannel | None
        _upstream: WSTransport | None
        _core: ClientProtocol
        _traffic: Traffic
        _ending: Ending | None
        _configured: bool
        _draining: bool
        _drain_refused: bool
        _held: list[tuple[bytes, float]]
        _client_paused: set[str]
        _stall_timer: asyncio.TimerHandle | None
        _view: SessionView

        def failed(self, exc: Exception) -> None: ...
        def _end(self, ending: Ending) -> None: ...
        def _limit_ending(self, code: str, limit: float) -> Ending: ...
        def _log_some(self, level: int, kind: str, msg: str, *args: object) -> None: ...
        def _upstream_send(self, data: bytes) -> None: ...
        def _client_send_bytes(self, data: bytes) -> None: ...
        def _flush_core(self) -> None: ...

    def client_text(self, data: bytes) -> None:
        if self._ending is not None:
            return
        try:
            received_s = perf_counter()
            self.last_client_s = received_s
            if len(data) > self._max_bytes:
                self._refuse(
                    Refusal(
                        "message_too_large",
                        f"Rule 'message size': this event has {len(data)} bytes; "
                        f"the limit is {self._max_bytes}.",
                    ),
                    readable_event_id(data),
                )
            elif not self._limiter.allow(received_s):
                self.refuse_rate_limited(data)
            elif self._configured:
                self._client_frame(data, received_s)
            else:
                # Held until the authoritative session.update went upstream.
                self._held.append((data, received_s))
                if len(self._held) >= _HOLD_FRAMES:
                    self._pause_client("held")
        except Exception as exc:  # a bug must end this session, not the server
            self.failed(exc)

    def refuse_rate_limited(self, data: bytes) -> None:
        """Tell the client its event (``data``, not parsed) was over the rate limit and dropped."""
        self._refuse(
            Refusal(
                "rate_limit_exceeded",
                f"Rule 'event rate': at most {self._limits.max_events_per_s:g} events per second "
                f"(bursts of {self._limits.event_burst}); this event was dropped.",
            ),
            readable_event_id(data),
        )

    def client_binary(self, data: bytes) -> None:
        if self._ending is None:
            self.last_client_s = perf_counter()
            self._refuse(Refusal("invalid_event", "Binary frames are not supported; send JSON text."), None)

    def client_closed(self, code: int, reason: str) -> None:
        self.log.info("client closed (%s)", code)
        self._end(Ending("client_closed", None, "", 1000, "client disconnected"))

    def client_writable(self, writable: bool) -> None:
        """The client's send buffer crossed its high-water mark (``False``) or drained (``True``).

        Full: nothing more is read from either side (an upstream event or an answered client event
        would only add to it), and a timer starts: a client that stays full for
        ``client_stall_s`` is not reading, and is closed (1008). So what a session holds for its
        client is bounded by ``client_buffer_bytes`` plus what one read can add."""
        upstream = self._upstream
        socket = None if upstream is None or upstream.is_disconnected else upstream.underlying_transport
        if writable:
            if self._stall_timer is not None:
                self._stall_timer.cancel()
                self._stall_timer = None
            self._resume_client("client_buffer")
            if socket is not None:
                socket.resume_reading()
        else:
            self._pause_client("client_buffer")
            if socket is not None:
                socket.pause_reading()
            if self._stall_timer is None and self._ending is None:
                self._stall_timer = asyncio.get_running_loop().call_later(
                    self._limits.client_stall_s, self._client_stalled
                )

    def _client_stalled(self) -> None:
        self._stall_timer = None
        self._svc.metrics.refused("client_not_reading")
        self._end(self._limit_ending("client_not_reading", self._limits.client_stall_s))

    def _pause_client(self, why: str) -> None:
        if not self._client_paused and self._client is not None:
            self._client.pause_reading()
        self._client_paused.add(why)

    def _resume_client(self, why: str) -> None:
        paused = self._client_paused
        if why in paused:
            paused.discard(why)
            if not paused:
                self.last_client_s = max(self.last_client_s, perf_counter())  # see _supervise
                if self._client is not None:
                    self._client.resume_reading()

    def _client_frame(self, data: bytes, received_s: float) -> None:
        audio_bytes = append_audio_bytes(data)
        if audio_bytes < 0 or self._draining:
            self._client_event(data, received_s)
            return
        # The fast path: an audio append, forwarded as the bytes that came.
        self._core.audio_appended(audio_bytes, received_s)
        self._upstream_send(data)
        self._traffic.append(len(data), perf_counter() - received_s)

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for data, received_s in held:
            if self._ending is not None:
                return
            self._client_frame(data, received_s)
        self._resume_client("held")

    def _client_event(self, data: bytes, received_s: float) -> None:
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            self._refuse(Refusal("invalid_json", "The event is not valid JSON."), None)
            return
        if not isinstance(event, dict):
            self._refuse(Refusal("invalid_event", "An event must be a JSON object with a 'type'."), None)
            return
        event_type = event.get("type")
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if self.ui and event_type in (PLAYBACK, FLUSHED):
            self._playback(event, event_id, received_s)
            return
        refusal = self._svc.policy.check(event, view=self._view)
        if refusal is None and self._draining:
            refusal = self._drain_refusal(event_type)
            if refusal is None and event_type == "input_audio_buffer.append":
                return  # dropped: the one notice about it was already sent
        if refusal is not None:
            self._refuse(refusal, event_id)
            return
        if event_type in ("session.update", "response.create") and (kept := without_noops(event, self._view)):
            data = json.dumps(kept, separators=(",", ":")).encode()  # a no-op taken out
        if event_type == "input_audio_buffer.append":
            audio_bytes = b64_decoded_length(event["audio"]) or 0
            spec = self._core.input_format
            if audio_bytes % spec.bytes_per_sample:
                # Half a sample would shift every later one by a byte: noise to the model.
                self._refuse(
                    Refusal(
                        "invalid_value",
                        f"Rule 'whole samples': {spec.name} audio has {spec.bytes_per_sample} bytes per "
                        f"sample; this append decodes to {audio_bytes} bytes.",
                        "audio",
                    ),
                    event_id,
                )
                return
            self._core.audio_appended(audio_bytes, received_s)
        self._upstream_send(data)
        traffic = self._traffic
        traffic.event(CLIENT_TO_UPSTREAM, event_type)
        traffic.bytes[0] += len(data)
        traffic.latency(0, perf_counter() - received_s)

    def _drain_refusal(self, event_type: object) -> Refusal | None:
        # While the server drains, no new turn may start; the first refusal says why, later audio
        # is dropped quietly (an error per 20 ms chunk would drown the client).
        if event_type not in ("response.create", "input_audio_buffer.append", "input_audio_buffer.commit"):
            return None
        if event_type == "input_audio_buffer.append" and self._drain_refused:
            return None
        self._drain_refused = True
        return Refusal("server_shutting_down", "The server is shutting down; no new turns are accepted.")

    def _playback(self, event: dict[str, Any], event_id: str | None, received_s: float) -> None:
        report = parse_playback_report(event)
        if isinstance(report, Refusal):
            self._refuse(report, event_id)
            return
        self._traffic.event(CLIENT_TO_UPSTREAM, event.get("type"))
        try:
            self._apply_playback(report, received_s)
        except LocalProtocolError as exc:
            self._refuse(Refusal("invalid_value", str(exc), "item_id"), event_id)
            return
        self._flush_core()

    def _apply_playback(self, report: PlaybackReport, received_s: float) -> None:
        if report.flushed:
            self._core.playback_flushed(report.item_id, report.played_samples)
            return
        # An item the core does not hold (a previous connection's) is the core's to drop and count.
        item = self._core.conversation.item(report.item_id)
        increment = report.played_samples - (item.audio_played_samples if item is not None else 0)
        if increment > 0:
            self._core.audio_played(report.item_id, increment, received_s)

    def _refuse(self, refusal: Refusal, event_id: str | None) -> None:
        self._svc.metrics.refused(refusal.code)
        self._log_some(logging.INFO, "refused " + refusal.code, "refused a client event: %s", refusal.code)
        self._send_client(error_event(refusal, event_id))

    def _send_client(self, text: str) -> None:
        self._client_send_bytes(text.encode())
