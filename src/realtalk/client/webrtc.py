"""``WebRTCSession``: a ``RealtimeSession`` whose audio travels over WebRTC instead of JSON events.

The same app-facing surface as the WebSocket session (``on_event``, ``events()``, ``append_audio``,
``send_text``, ``interrupt``, tools, costs, latency, reconnects, ``close``), so ``VoiceLoop``,
``realtalk talk --transport webrtc`` and users' code work unchanged. Two ways to open a call:

* **Directly** (Azure, the OpenAI platform, the emulator; protocol reference §4.1, §4.2): the
  server credential mints a short-lived ``ek_`` client secret with the session configuration
  (``POST {base}/realtime/client_secrets``), and the SDP offer is posted with that secret
  (``POST {base}/realtime/calls``, ``application/sdp``) → ``201``, the SDP answer, and the call id
  in ``Location``. ``WebRTCSession(endpoint, credential, profile=...)``.
* **Through a realtalk gateway**: the offer is posted to ``{gateway}/api/realtime/webrtc`` with the
  gateway's bearer token; the gateway mints the secret, posts the offer and watches the call
  itself (its profile's instructions, tools and voice apply). ``WebRTCSession.via_gateway(url, token)``.

Then an aiortc peer connection carries the microphone (``webrtc_media.MicrophoneTrack``, 24 kHz
in, 48 kHz Opus out, paced in real time), the agent's voice (the remote track, back to 24 kHz,
handed out as ``AudioChunk`` events exactly like WebSocket audio deltas), and the events on the
``oai-events`` data channel (JSON text both ways), which feed the same sans-I/O ``ClientProtocol``.

What differs from the WebSocket session, by the protocol (§2.5 E, last bullet; §4):

* There are no ``response.output_audio.delta`` events: reply audio arrives on the track, in real
  time, and is attributed to its response by ``webrtc_media.ReplyAttribution``.
* The server tracks playback and truncates by itself on a barge-in (``output_audio_buffer.cleared``,
  then ``conversation.item.truncated``). The client stops its local playback at once on
  ``speech_started`` and ``cleared`` (``FlushPlayback``), and never sends
  ``conversation.item.truncate`` (the core's truncate is dropped here). ``interrupt()`` also sends
  ``output_audio_buffer.clear`` when the server is playing, so the server's queue stops too.
* ``append_audio`` feeds the microphone track (24 kHz PCM16 only; the track always sends, silence
  when nothing is pushed). Audio cannot be sent faster than real time: more than
  ``max_queued_audio_s`` ahead is dropped (``dropped_audio_bytes`` counts it).
* A reconnect is a new call (a new server session, the conversation replayed as text).
* ``close()`` hangs the call up (``POST .../calls/{id}/hangup`` directly, ``DELETE
  /api/realtime/calls/{id}`` through a gateway) and closes the peer connection.

Errors: setting the call up raises ``HandshakeRejected`` for an HTTP refusal (401, 404, ...; the
reason says which request and what to check) and ``CallSetupFailed`` (a ``ConnectionClosed``) for
everything else (unreachable server, not an SDP answer, no media connection), naming the step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, Protocol
from urllib.parse import quote, urlsplit

import httpx
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from realtalk.client.credentials import ApiKeyCredential, Credential
from realtalk.client.handshake import describe_refusal
from realtalk.client.session import ConnectionStatus, RealtimeSession
from realtalk.client.tools import ToolRunner
from realtalk.client.webrtc_media import MicrophoneTrack, RemoteAudio, ReplyAttribution
from realtalk.errors import ConfigError, ConnectionClosed, HandshakeRejected, LocalProtocolError
from realtalk.protocol import AgentProfile, Prices
from realtalk.protocol.app_events import AudioChunk, FlushPlayback
from realtalk.protocol.client import DEFAULT_TOOL_FILLER
from realtalk.protocol.endpoint import ResolvedEndpoint, is_loopback_host

__all__ = ["DATA_CHANNEL_LABEL", "CallSetupFailed", "SetupStep", "WebRTCSession"]

logger = logging.getLogger(__name__)

DATA_CHANNEL_LABEL: Final = "oai-events"
# The minted secret only has to start the call posted right after it (§4.1: 10..7200 s).
CLIENT_SECRET_TTL_S: Final = 60
_MAX_ANSWER_BYTES: Final = 256 * 1024
_HANGUP_TIMEOUT_S: Final = 5.0
_INBOX_SIZE: Final = 4096
_SAMPLES_PER_AUDIO_TOKEN: Final = 24_000 // 20  # assistant audio: 1 token per 50 ms (§3.3)

SetupStep = Literal["credentials", "client_secret", "offer", "answer", "connect"]


class CallSetupFailed(ConnectionClosed):
    """Setting up a WebRTC call failed before it could be used; ``step`` says where:
    ``credentials``, ``client_secret`` (minting the ``ek_`` key), ``offer`` (posting the SDP offer),
    ``answer`` (the SDP answer was unusable) or ``connect`` (ICE/DTLS or the data channel)."""

    def __init__(self, step: SetupStep, reason: str) -> None:
        self.step = step
        super().__init__(None, reason)


# -- signaling: who mints, where the offer goes, how to hang up -------------------------------------


class _Signaling(Protocol):
    host: str

    async def start_call(self, http: httpx.AsyncClient, offer_sdp: str) -> tuple[str, str]:
        """Post the offer; ``(answer SDP, call id)``."""
        ...

    async def hangup(self, http: httpx.AsyncClient, call_id: str) -> None: ...


def _refused(what: str, response: httpx.Response, endpoint: ResolvedEndpoint) -> HandshakeRejected:
    reason = describe_refusal(
        response.status_code, response.content, response.headers.get("apim-request-id"), endpoint
    )
    return HandshakeRejected(response.status_code, response.text[:2000], f"{what}: {reason}")


async def _post(
    http: httpx.AsyncClient, step: SetupStep, what: str, url: str, host: str, **kwargs: Any
) -> httpx.Response:
    try:
        return await http.post(url, **kwargs)
    except httpx.TimeoutException:
        raise CallSetupFailed(step, f"{what}: {host} did not answer in time") from None
    except httpx.ConnectError as exc:
        raise CallSetupFailed(
            step,
            f"{what}: cannot connect to {host} ({exc}): nothing listens there, or the address is wrong",
        ) from None
    except httpx.HTTPError as exc:
        raise CallSetupFailed(
            step, f"{what}: the request to {host} failed: {type(exc).__name__}: {exc}"
        ) from None


def _answer_of(what: str, response: httpx.Response, host: str) -> tuple[str, str]:
    answer = response.text
    if len(response.content) > _MAX_ANSWER_BYTES or not answer.lstrip().startswith("v=0"):
        shown = " ".join(answer.split())[:80]
        raise CallSetupFailed(
            "answer",
            f"{what}: {host} answered HTTP {response.status_code} without an SDP answer (the body "
            f"starts {shown!r}): is this a Realtime endpoint that takes WebRTC calls?",
        )
    call_id = response.headers.get("location", "").rstrip("/").rsplit("/", 1)[-1]
    if not call_id:
        raise CallSetupFailed(
            "answer", f"{what}: {host} sent no Location header, so the call id (for hanging up) is unknown"
        )
    return answer, call_id


class _DirectSignaling:
    """§4.1 + §4.2: mint an ``ek_`` with the server credential, post the offer with it."""

    def __init__(self, endpoint: ResolvedEndpoint, credential: Credential, session: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self.credential = credential
        self.session = session
        self.host = endpoint.host
        self._base = endpoint.rest_base_url

    async def _headers(self) -> dict[str, str]:
        try:
            return await self.credential.headers()
        except ConfigError as exc:
            raise CallSetupFailed("credentials", str(exc)) from None

    async def start_call(self, http: httpx.AsyncClient, offer_sdp: str) -> tuple[str, str]:
        what = "minting a client secret (POST /realtime/client_secrets)"
        body = {
            "expires_after": {"anchor": "created_at", "seconds": CLIENT_SECRET_TTL_S},
            "session": self.session,
        }
        response = await _post(
            http,
            "client_secret",
            what,
            f"{self._base}/realtime/client_secrets",
            self.host,
            json=body,
            headers=await self._headers(),
        )
        if response.status_code != 200:
            raise _refused(what, response, self.endpoint)
        try:
            secret = response.json()["value"]
        except (ValueError, KeyError, TypeError):
            secret = None
        if not isinstance(secret, str) or not secret:
            raise CallSetupFailed("client_secret", f"{what}: {self.host} answered without a secret ('value')")
        what = "posting the SDP offer (POST /realtime/calls)"
        response = await _post(
            http,
            "offer",
            what,
            f"{self._base}/realtime/calls",
            self.host,
            content=offer_sdp.encode(),
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/sdp"},
        )
        if response.status_code in (404, 405):
            raise HandshakeRejected(
                response.status_code,
                response.text[:2000],
                f"{what}: HTTP {response.status_code}: {self.host} does not take WebRTC calls; use the "
                "WebSocket transport, or check AZURE_OPENAI_ENDPOINT",
            )
        if response.status_code not in (200, 201):
            raise _refused(what, response, self.endpoint)
        return _answer_of(what, response, self.host)

    async def hangup(self, http: httpx.AsyncClient, call_id: str) -> None:
        url = f"{self._base}/realtime/calls/{quote(call_id, safe='')}/hangup"
        response = await http.post(url, headers=await self._headers(), timeout=_HANGUP_TIMEOUT_S)
        if response.status_code not in (200, 204, 404):  # 404: the call had already ended
            logger.warning("hanging up %s: %s answered HTTP %d", call_id, self.host, response.status_code)


class _GatewaySignaling:
    """A realtalk gateway's ``POST /api/realtime/webrtc`` (same shape as §4.2) and ``DELETE`` to hang up."""

    def __init__(self, base_url: str, credential: Credential, endpoint: ResolvedEndpoint) -> None:
        self.base_url = base_url.rstrip("/")
        self.credential = credential
        self.endpoint = endpoint
        self.host = endpoint.host

    async def start_call(self, http: httpx.AsyncClient, offer_sdp: str) -> tuple[str, str]:
        what = "posting the SDP offer to the gateway (POST /api/realtime/webrtc)"
        headers = {**await self.credential.headers(), "Content-Type": "application/sdp"}
        response = await _post(
            http,
            "offer",
            what,
            f"{self.base_url}/api/realtime/webrtc",
            self.host,
            content=offer_sdp.encode(),
            headers=headers,
        )
        if response.status_code in (200, 201):
            return _answer_of(what, response, self.host)
        said = _gateway_message(response)
        hints = {
            401: "the gateway refused the token: check the token you passed",
            403: "the gateway refused this client (origin or policy)",
            404: "no WebRTC route there: is this a realtalk gateway, and the URL its base?",
            501: "the service behind the gateway does not take WebRTC calls: use the WebSocket",
        }
        hint = hints.get(response.status_code, "the gateway refused the call")
        raise HandshakeRejected(
            response.status_code, response.text[:2000], f"{what}: HTTP {response.status_code}: {hint}{said}"
        )

    async def hangup(self, http: httpx.AsyncClient, call_id: str) -> None:
        url = f"{self.base_url}/api/realtime/calls/{quote(call_id, safe='')}"
        response = await http.delete(url, headers=await self.credential.headers(), timeout=_HANGUP_TIMEOUT_S)
        if response.status_code not in (200, 204, 404):
            logger.warning("hanging up %s: the gateway answered HTTP %d", call_id, response.status_code)


def _gateway_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    message = error.get("message") if isinstance(error, dict) else None
    return f" (the gateway said: {message})" if isinstance(message, str) and message else ""


# -- one call: the peer connection, its tracks and its data channel ---------------------------------


class _Call:
    """One WebRTC call; ``open`` sets it up, the session's pump runs it, ``end`` hangs it up."""

    def __init__(
        self,
        signaling: _Signaling,
        http: httpx.AsyncClient,
        microphone: MicrophoneTrack,
        ice_servers: list[RTCIceServer],
    ) -> None:
        self.signaling = signaling
        self.http = http
        self.microphone = microphone
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))
        self.pc.addTrack(microphone)
        self.channel = self.pc.createDataChannel(DATA_CHANNEL_LABEL)
        self.call_id: str | None = None
        self.remote: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        # Messages and the end (None), in arrival order. Bounded: past it the call is ended rather
        # than events silently lost.
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue(_INBOX_SIZE)
        self.opened = asyncio.Event()
        self.end_reason: ConnectionClosed | None = None
        self._ending: asyncio.Future[None] | None = None
        self.channel.on("open", self.opened.set)
        self.channel.on("message", self._on_message)
        self.channel.on(
            "close", lambda: self._ended(ConnectionClosed(1000, "the call ended (data channel closed)"))
        )
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_message(self, message: str | bytes) -> None:
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        try:
            self.inbox.put_nowait(text)
        except asyncio.QueueFull:
            self._ended(ConnectionClosed(1011, "events arrived faster than they could be handled"))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not self.remote.done():
            self.remote.set_result(track)

    def _on_state(self) -> None:
        if self.pc.connectionState == "failed":
            self._ended(ConnectionClosed(1006, "the WebRTC connection failed (ICE or DTLS)"))
        elif self.pc.connectionState == "closed":
            self._ended(ConnectionClosed(1000, "the call ended (peer connection closed)"))

    def _ended(self, reason: ConnectionClosed) -> None:
        if self.end_reason is not None:
            return
        self.end_reason = reason
        with contextlib.suppress(asyncio.QueueFull):
            self.inbox.put_nowait(None)
        if self.inbox.full():  # make room for the end marker: the call is over anyway
            with contextlib.suppress(asyncio.QueueEmpty, asyncio.QueueFull):
                self.inbox.get_nowait()
                self.inbox.put_nowait(None)

    async def open(self, timeout_s: float) -> None:
        """Offer, post, answer, and wait until the data channel is open."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer, self.call_id = await self.signaling.start_call(self.http, self.pc.localDescription.sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except Exception as exc:  # aiortc raises ValueError and others for an answer it cannot use
            raise CallSetupFailed(
                "answer",
                f"the SDP answer from {self.signaling.host} could not be used: {type(exc).__name__}: {exc}",
            ) from None
        try:
            async with asyncio.timeout(timeout_s):
                await self.opened.wait()
        except TimeoutError:
            raise CallSetupFailed(
                "connect",
                f"the WebRTC connection to {self.signaling.host} did not come up within {timeout_s:g} s "
                f"(ICE state {self.pc.iceConnectionState}): UDP may be blocked by a firewall; use the "
                "WebSocket transport there",
            ) from None

    def send(self, text: str) -> None:
        if self.channel.readyState == "open":
            self.channel.send(text)

    async def end(self) -> None:
        """Hang up (once; failures are logged) and close the peer connection. Callers that come
        while it runs wait for the same hang-up: the pump, which closes the HTTP client after,
        must not close it under a hang-up still on the wire (that failed it, now and then)."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._end())
        await asyncio.shield(self._ending)

    async def _end(self) -> None:
        if self.call_id is not None:
            for attempt in (1, 2):
                try:
                    await self.signaling.hangup(self.http, self.call_id)
                except httpx.TransportError as exc:
                    # A pooled connection the server closed while idle (its keep-alive ran out
                    # as the request left): hanging up is idempotent, so once more.
                    if attempt == 1 and not isinstance(exc, httpx.TimeoutException):
                        continue
                    logger.warning("could not hang up call %s: %r", self.call_id, exc)
                except (httpx.HTTPError, ConfigError) as exc:
                    logger.warning("could not hang up call %s: %r", self.call_id, exc)
                break
        self.microphone.stop()
        try:
            await self.pc.close()
        finally:
            await self.http.aclose()  # nothing more goes to this call's server


# -- the session ---------------------------------------------------------------------------------------


class WebRTCSession(RealtimeSession):
    """A ``RealtimeSession`` over WebRTC; ``async with WebRTCSession(endpoint, credential, ...) as s``.

    Takes the arguments of ``RealtimeSession`` (see there), plus:

    Args:
        max_queued_audio_s: microphone audio queued beyond this is dropped (the track sends in real time).
        ice_servers: STUN/TURN servers (default none: the client offers its host candidates, which
            reach Azure's and the emulator's servers; add a TURN server behind a strict firewall).

    See the module docstring for what differs from the WebSocket session. ``call_id`` is the
    current call's id (``None`` before the first call is set up).
    """

    def __init__(
        self,
        endpoint: ResolvedEndpoint,
        credential: Credential,
        *,
        profile: AgentProfile | None = None,
        prices: Prices | None = None,
        reconnect: bool = True,
        max_reconnect_attempts: int = 6,
        connect_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        event_queue_size: int = 1024,
        tools: ToolRunner | None = None,
        tool_filler: str | None = DEFAULT_TOOL_FILLER,
        tool_filler_after_s: float = 1.0,
        max_queued_audio_s: float = 2.0,
        ice_servers: list[RTCIceServer] | None = None,
        gateway_url: str | None = None,
    ) -> None:
        if profile is not None and (profile.input_format != "pcm24k" or profile.output_format != "pcm24k"):
            raise LocalProtocolError(
                "over WebRTC the audio is Opus on the media tracks, handed to the app as 24 kHz PCM16: "
                "leave the profile's input_format and output_format at 'pcm24k'"
            )
        super().__init__(
            endpoint,
            credential,
            profile=profile,
            prices=prices,
            reconnect=reconnect,
            max_reconnect_attempts=max_reconnect_attempts,
            connect_timeout_s=connect_timeout_s,
            clock=clock,
            event_queue_size=event_queue_size,
            tools=tools,
            tool_filler=tool_filler,
            tool_filler_after_s=tool_filler_after_s,
        )
        self._signaling: _Signaling
        if gateway_url is not None:
            self._signaling = _GatewaySignaling(gateway_url, credential, endpoint)
        else:
            session: dict[str, Any] = (
                dict(profile.to_session()) if profile is not None else {"type": "realtime"}
            )
            session["model"] = endpoint.deployment
            self._signaling = _DirectSignaling(endpoint, credential, session)
        self._max_queued_audio_s = max_queued_audio_s
        self._ice_servers = list(ice_servers or [])
        self._local = is_loopback_host(urlsplit(endpoint.rest_base_url).hostname or "")
        self._call: _Call | None = None
        self._attribution = ReplyAttribution()
        self._extra_out: deque[str] = deque()
        self._profile_interrupts = profile.interrupt_response if profile is not None else True
        self.call_id: str | None = None
        self._flushes_seen: set[str] = set()
        self._reply_samples: dict[str, int] = {}  # by response: its whole audio, from usage
        self.on_event(self._note_flush)  # first handler: sees the core's flushes before the app does
        self.truncates_dropped = 0
        """``conversation.item.truncate`` events the core asked for and this transport did not send."""

    @classmethod
    def via_gateway(
        cls,
        gateway_url: str,
        token: str,
        *,
        profile: AgentProfile | None = None,
        **options: Any,
    ) -> WebRTCSession:
        """A session through a realtalk gateway at ``gateway_url`` (``https://host[:port]``),
        authenticated by the gateway's bearer ``token``.

        The gateway's profile decides instructions, tools and voice; ``profile`` is normally left
        ``None`` (a ``session.update`` changing locked fields is reverted by the gateway).
        ``options`` are the constructor's keyword arguments.
        """
        parts = urlsplit(gateway_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"the gateway URL {gateway_url!r} is not an http(s) URL", example="https://voice.example.com"
            )
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ConfigError(
                f"the gateway URL {gateway_url!r} uses http:// on a public host; use https://",
                example=f"https://{parts.netloc}",
            )
        base = f"{parts.scheme}://{parts.netloc}"
        endpoint = ResolvedEndpoint(
            url=f"{base}/api/realtime/webrtc",
            websocket_base_url=f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}/openai/v1",
            host=parts.netloc,
            deployment="(the gateway's)",
            provider="local" if is_loopback_host(parts.hostname) else "azure",
        )
        credential = ApiKeyCredential(token, style="bearer", source="the gateway token")
        return cls(endpoint, credential, profile=profile, gateway_url=base, **options)

    # -- app actions that differ ------------------------------------------------------------------

    def append_audio(self, pcm: bytes) -> None:
        """Queue microphone audio (24 kHz PCM16) on the outgoing track; it is sent in real time."""
        call = self._call
        if self.status.state != "connected" or call is None:
            self.dropped_audio_bytes += len(pcm)
            return
        before = call.microphone.dropped_samples
        call.microphone.push(pcm)
        # Dropped 48 kHz samples, counted as the 24 kHz bytes they came from.
        self.dropped_audio_bytes += call.microphone.dropped_samples - before

    def interrupt(self) -> None:
        """Local barge-in: flush local playback, cancel the response, and clear the server's queue
        (§2.5 E: over WebRTC, ``response.cancel`` then ``output_audio_buffer.clear``)."""
        playing = bool(self._attribution.playing_on_server)
        audible = self._cut_target(self._attribution.audible)
        self._attribution.interrupted()
        self._flushes_seen.clear()
        super().interrupt()
        if audible is not None and audible not in self._flushes_seen:
            self._flush_reply(audible)
        if playing:
            self._send_raw({"type": "output_audio_buffer.clear"})

    async def close(self, reason: str = "closed by the application") -> None:
        """Hang the call up, close the peer connection, and stop reconnecting."""
        self._closing = True
        call = self._call
        if call is not None:
            await call.end()
        await super().close(reason)

    # -- the connection loop's two hooks (RealtimeSession._run calls them) -------------------------

    async def _connect(self) -> _Call:  # type: ignore[override]  # a call instead of a WebSocket
        http = httpx.AsyncClient(timeout=self._timeout_s, trust_env=not self._local, follow_redirects=False)
        microphone = MicrophoneTrack(
            max_queued_s=self._max_queued_audio_s, on_frame_sent=self._frame_sent, clock=self._clock
        )
        call = _Call(self._signaling, http, microphone, self._ice_servers)
        try:
            await call.open(self._timeout_s)
        except BaseException:
            await call.end()
            raise
        self.connections += 1
        self.call_id = call.call_id
        logger.info("WebRTC call %s with %s", call.call_id, self._signaling.host)
        return call

    async def _pump(self, call: _Call) -> BaseException:  # type: ignore[override]  # see _connect
        """Run the call until it ends; return why it ended."""
        self._call = call
        self._attribution = ReplyAttribution()
        self._wake.set()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._call_reader(call), name="realtalk-webrtc-events")
                group.create_task(self._call_writer(call), name="realtalk-webrtc-writer")
                group.create_task(self._call_audio(call), name="realtalk-webrtc-audio")
        except* _CallEnded:
            pass
        finally:
            self._call = None
            await call.end()  # also closes the call's HTTP client, once its hang-up is answered
            if self.status.state == "connected":
                self._set_status(ConnectionStatus("reconnecting", "connection lost"))
        return call.end_reason or ConnectionClosed(None, "the call ended")

    # -- the pump's tasks ----------------------------------------------------------------------------

    async def _call_reader(self, call: _Call) -> None:
        while True:
            text = await call.inbox.get()
            if text is None:
                raise _CallEnded
            for hook in self._frame_hooks:
                hook("in", text)
            data = _decode(text)
            audible = self._before_core(data) if data is not None else None
            self._flushes_seen.clear()
            self.protocol.receive_message(text, self._clock())
            self._deliver()
            if audible is not None and audible not in self._flushes_seen:
                self._flush_reply(audible)
            self._wake.set()

    async def _call_writer(self, call: _Call) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for frame in [*self.protocol.messages_to_send(), *self._drain_extra()]:
                if _event_type(frame) == "conversation.item.truncate":
                    # §2.5 E: over WebRTC the server truncates at what it played itself.
                    self.truncates_dropped += 1
                    continue
                call.send(frame)
                for hook in self._frame_hooks:
                    hook("out", frame)

    async def _call_audio(self, call: _Call) -> None:
        track = await call.remote
        remote = RemoteAudio()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                call._ended(ConnectionClosed(1000, "the call ended (the remote track stopped)"))
                return
            if not isinstance(frame, AudioFrame):
                continue
            pcm = remote.convert(frame)
            response_id = self._attribution.classify(pcm)
            if response_id is None:
                continue
            item_id = self._reply_item(response_id)
            if item_id is None:
                continue
            samples = len(pcm) // 2
            if self.protocol.receive_audio_delta(item_id, response_id, len(pcm), self._clock()):
                self._emit(AudioChunk(item_id, response_id, pcm, samples, 24_000))

    # -- WebRTC-specific event handling ----------------------------------------------------------------

    def _before_core(self, data: dict[str, Any]) -> str | None:
        """Route the playout events to the attribution; returns the reply item to flush, if any."""
        kind = data.get("type")
        response_id = data.get("response_id")
        if kind == "input_audio_buffer.speech_started":
            # Stop at once: the interrupted reply's audio still in the jitter buffer must not play.
            audible = self._attribution.audible
            if self._attribution.playing_on_server and not self._profile_interrupts:
                self._extra_out.append(json.dumps({"type": "output_audio_buffer.clear"}))
            self._attribution.interrupted()
            return self._cut_target(audible)
        if kind == "output_audio_buffer.cleared":
            # After speech_started this is the server's half of the same barge-in (nothing is
            # audible any more); on its own (a sideband or the gateway cleared), it stops the reply.
            audible = self._attribution.audible
            self._attribution.cleared(response_id if isinstance(response_id, str) else None)
            return self._cut_target(audible)
        if kind == "response.done":
            self._note_reply_length(data)
        elif kind == "response.created":
            created = _nested_id(data, "response")
            if created is not None:
                self._attribution.response_created(created)
        elif kind == "output_audio_buffer.started" and isinstance(response_id, str):
            self._attribution.started(response_id)
        elif kind == "output_audio_buffer.stopped" and isinstance(response_id, str):
            self._attribution.stopped(response_id)
        return None

    def _cut_target(self, response_id: str | None) -> str | None:
        """The item of the reply being cut, its audio length completed first (see below)."""
        item_id = self._reply_item(response_id) if response_id is not None else None
        if item_id is not None and response_id is not None:
            self._complete_reply_audio(item_id, response_id)
        return item_id

    def _note_reply_length(self, data: dict[str, Any]) -> None:
        # Over WebRTC a reply's audio is counted as it is played (real time), so at a barge-in the
        # core would think the reply ends where playback stopped, and keep all of its transcript.
        # Its whole length comes from the usage instead (§3.3: assistant audio is 20 tokens a second).
        response = data.get("response")
        response_id = response.get("id") if isinstance(response, dict) else None
        usage = response.get("usage") if isinstance(response, dict) else None
        details = usage.get("output_token_details") if isinstance(usage, dict) else None
        tokens = details.get("audio_tokens") if isinstance(details, dict) else None
        if not isinstance(response_id, str) or not isinstance(tokens, int) or tokens <= 0:
            return
        self._reply_samples[response_id] = tokens * _SAMPLES_PER_AUDIO_TOKEN
        while len(self._reply_samples) > 16:
            self._reply_samples.pop(next(iter(self._reply_samples)))
        item_id = self._reply_item(response_id)
        if item_id is not None and self.protocol.conversation.is_cut(item_id):
            self._complete_reply_audio(item_id, response_id)  # cut before its response was done

    def _complete_reply_audio(self, item_id: str, response_id: str) -> None:
        # Only for a reply being cut: none of its remaining audio will be counted any more.
        expected = self._reply_samples.get(response_id)
        item = self.protocol.conversation.item(item_id)
        if expected is not None and item is not None and expected > item.audio_received_samples:
            self.protocol.conversation.audio_received(
                item_id,
                expected - item.audio_received_samples,
                sample_rate_hz=24_000,
                response_id=response_id,
            )

    def _flush_reply(self, item_id: str) -> None:
        # The core flushes on speech_started only while it counts the item as unheard; over WebRTC
        # the whole reply is "received" (response.output_audio.done) long before it is played, so
        # between two frames it can count as heard to its end. The speaker must stop all the same.
        item = self.protocol.conversation.item(item_id)
        if item is not None and not item.cut:
            self._emit(FlushPlayback(item_id))

    def _note_flush(self, event: object) -> None:
        if isinstance(event, FlushPlayback):
            self._flushes_seen.add(event.item_id)

    def _reply_item(self, response_id: str) -> str | None:
        for item in self.protocol.conversation.items_of_response(response_id):
            if item.type == "message" and item.role == "assistant":
                return item.item_id
        return None

    def _frame_sent(self, pcm24_bytes: int) -> None:
        # The server counts audio_end_ms over all the track carried, from the call's first frame
        # (before the session is ready too): the latency timeline must count the same audio.
        self.protocol.audio_appended(pcm24_bytes, self._clock())

    def _send_raw(self, event: Mapping[str, Any]) -> None:
        self._extra_out.append(json.dumps(dict(event)))
        self._wake.set()

    def _drain_extra(self) -> list[str]:
        frames = list(self._extra_out)
        self._extra_out.clear()
        return frames


class _CallEnded(Exception):
    """Raised by the reader to end the pump's TaskGroup once the call ended."""


def _decode(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _event_type(frame: str) -> str | None:
    data = _decode(frame)
    kind = data.get("type") if data is not None else None
    return kind if isinstance(kind, str) else None


def _nested_id(data: dict[str, Any], key: str) -> str | None:
    inner = data.get(key)
    value = inner.get("id") if isinstance(inner, dict) else None
    return value if isinstance(value, str) else None
